"""Mutation fuzzing of every reader: seed files built on the spot, mutated, read to the end.

Shared by tests/test_fuzz.py (hypothesis draws the mutations, a fixed number per reader) and
scripts/fuzz_campaign.py (a seeded random generator draws them, 100k per reader). A mutation is
a list of ``(op, a, b)`` integer triples, so hypothesis can shrink a failure to the smallest
list and the campaign can replay one from its three numbers per step.

Binary operations (bit flips, interesting integers at any offset, truncation, chunk deletion
and duplication) apply to every format; structured ones rewrite a field of the format's own
structure (a safetensors header key, a GGUF dimension or type id, a pickle opcode inside a
zip ``.pt``, a JSON value in an index or recipe) and re-frame the file so the damage reaches
the checks behind the framing.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --- interesting values ---------------------------------------------------------------------

U32S = (0, 1, 2, 4, 9, 15, 41, 0x7F, 0x80, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
U64S = (0, 1, 8, 0x80, 0x180, 1 << 31, 1 << 32, 1 << 40, (1 << 62) + 1, (1 << 63) - 1, 1 << 63,
        (1 << 64) - 1)
BIG_DIGITS = "1" + "0" * 5000  # beyond Python's 4300-digit int-conversion limit
NAMES = (
    "model.layers.99999999999999999.self_attn.q_proj.weight",
    "model.layers." + "9" * 5000 + ".mlp.up_proj.weight",
    "blk.4294967295.attn_q.weight",
    "blk.99999999999.ffn_up.weight",
    "model.layers.\u00b2\u00b3.self_attn.k_proj.weight",  # superscript digits
    "model.layers.\u0663.mlp.down_proj.weight",  # Arabic-Indic three
    "", ".", "..", "a..b", "x" * 70000, "__metadata__", "model.layers.0",
)
# JSON texts spliced in verbatim (some cannot be produced by json.dumps)
JSON_VALUES = (
    "0", "-1", "1", "2147483648", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", BIG_DIGITS, "-" + BIG_DIGITS, "1e400", "NaN", "Infinity", "1.5",
    "true", "null", '""', '"F8_E4M3"', '"Q8_K"', '"BF16"', '"I64"', "[]", "{}", "[0]",
    "[0, 0]", "[1, 0]", "[4294967296, 4294967296, 4294967296]", "[" + BIG_DIGITS + "]",
    "[9223372036854775807, 2]", "[-1, 4]", "[0, 9223372036854775807]",
    "[" * 5000 + "]" * 5000, '"' + "z" * 100000 + '"', '{"a": {"b": {"c": []}}}',
)


def _pick(seq, a: int):
    return seq[a % len(seq)]


# --- binary mutations -----------------------------------------------------------------------

N_OPS = 9  # 0..7 binary, 8 structured


def _binary(data: bytearray, op: int, a: int, b: int) -> bytearray:
    n = len(data)
    if n == 0:
        return bytearray(struct.pack("<Q", _pick(U64S, a)))
    pos = a % n
    if op == 0:
        data[pos] ^= 1 << (b % 8)
    elif op == 1:
        data[pos] = b % 256
    elif op == 2:
        data[pos:pos + 4] = struct.pack("<I", _pick(U32S, b))
    elif op == 3:
        data[pos:pos + 8] = struct.pack("<Q", _pick(U64S, b))
    elif op == 4:
        del data[pos:]
    elif op == 5:
        del data[pos:pos + 1 + b % 64]
    elif op == 6:
        chunk = data[pos:pos + 1 + b % 64]
        at = b % n
        data[at:at] = chunk
    else:  # op 7: an interesting value of a random width
        width = (1, 2, 4, 8)[b % 4]
        v = _pick(U64S, b >> 2) & ((1 << (8 * width)) - 1)
        data[pos:pos + width] = v.to_bytes(width, "little")
    return data


def apply_binary(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for op, a, b in ops:
        out = _binary(out, op % 8, a, b)
    return bytes(out)


# --- JSON mutations -------------------------------------------------------------------------

def _json_paths(doc, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_json_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_json_paths(v, (*prefix, i)))
    return out


_MARK = "\u0000qtstudio-fuzz\u0000"


def mutate_json(text: str, a: int, b: int) -> str:
    """Replace one value (or rename one key) of a JSON document with an interesting one."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return text
    paths = _json_paths(doc)
    path = _pick(paths, a)
    if not path:
        return _pick(JSON_VALUES, b)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if isinstance(parent, dict) and b % 3 == 0:
        parent[_pick(NAMES, b // 3)] = parent.pop(key)  # rename the key
        return json.dumps(doc)
    if isinstance(parent, dict) and b % 7 == 1:
        parent.pop(key)  # drop a field
        return json.dumps(doc)
    parent[key] = _MARK
    return json.dumps(doc).replace(json.dumps(_MARK), _pick(JSON_VALUES, b), 1)


# --- per-format seeds and structured mutations -----------------------------------------------

@dataclass(frozen=True)
class Seed:
    """A set of files; ``mutable`` is mutated, ``entry`` is handed to the reader."""

    files: dict[str, bytes]
    mutable: str
    entry: str


def _safetensors_bytes(tensors: dict[str, np.ndarray], header_pad: int = 0) -> bytes:
    from safetensors.numpy import save

    blob = save(tensors)
    if not header_pad:
        return blob
    (n,) = struct.unpack("<Q", blob[:8])
    header = blob[8:8 + n] + b" " * header_pad
    return struct.pack("<Q", len(header)) + header + blob[8 + n:]


def _split_safetensors(data: bytes) -> tuple[str, bytes] | None:
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        return None
    try:
        return data[8:8 + n].decode("utf-8"), data[8 + n:]
    except UnicodeDecodeError:
        return None


def _frame_safetensors(header: str, body: bytes, align128: bool) -> bytes:
    raw = header.encode("utf-8")
    if align128:  # a header length that is 128 mod 256: its first byte is 0x80
        raw += b" " * ((128 - len(raw)) % 256)
    return struct.pack("<Q", len(raw)) + raw + body


def safetensors_structured(data: bytes, a: int, b: int) -> bytes:
    parts = _split_safetensors(data)
    if parts is None:
        return data
    header, body = parts
    if b % 11 == 0:
        return _frame_safetensors(header, body, align128=True)
    return _frame_safetensors(mutate_json(header, a, b), body, align128=b % 5 == 0)


def _tiny_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "model.embed_tokens.weight": rng.standard_normal((8, 32)).astype(np.float16),
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((4, 32)).astype(np.float32),
        "model.layers.1.mlp.up_proj.weight": rng.standard_normal((2, 32)).astype(np.float32),
        "model.layers.1.input_layernorm.weight": np.ones(32, np.float32),
        "model.position_ids": np.arange(8, dtype=np.int64),
    }


def seed_safetensors() -> Seed:
    rng = np.random.default_rng(0)
    cfg = json.dumps({"model_type": "llama", "hidden_size": 32}).encode()
    return Seed({"model.safetensors": _safetensors_bytes(_tiny_tensors(rng)),
                 "config.json": cfg}, "model.safetensors", "model.safetensors")


def seed_shard_index() -> Seed:
    rng = np.random.default_rng(1)
    t = _tiny_tensors(rng)
    names = list(t)
    first, second = dict(list(t.items())[:2]), dict(list(t.items())[2:])
    index = {"metadata": {"total_size": 1234},
             "weight_map": {n: ("model-00001-of-00002.safetensors" if n in first
                                else "model-00002-of-00002.safetensors") for n in names}}
    return Seed({"model.safetensors.index.json": json.dumps(index).encode(),
                 "model-00001-of-00002.safetensors": _safetensors_bytes(first),
                 "model-00002-of-00002.safetensors": _safetensors_bytes(second),
                 "config.json": b'{"model_type": "llama"}'},
                "model.safetensors.index.json", "model.safetensors.index.json")


def json_structured(data: bytes, a: int, b: int) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return mutate_json(text, a, b).encode("utf-8", errors="surrogatepass")


# A GGUF header is rebuilt from its fields, so a structured mutation changes one field and
# keeps every other length and offset consistent.

def _gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _read_gguf_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """The string :func:`_gguf_string` wrote at ``pos``, and the position after it."""
    (n,) = struct.unpack_from("<Q", data, pos)
    end = pos + 8 + n
    if end > len(data):
        raise ValueError
    return data[pos + 8:end], end


@dataclass
class _GGUFSpec:
    kvs: list[tuple[bytes, int, bytes]]  # key, value type, encoded value
    tensors: list[list]  # [name, dims (ggml order), type id, offset]
    data: bytes
    alignment: int = 32

    def encode(self) -> bytes:
        head = [b"GGUF", struct.pack("<IQQ", 3, len(self.tensors), len(self.kvs))]
        for key, vt, val in self.kvs:
            head.append(_gguf_string(key) + struct.pack("<i", vt) + val)
        for name, dims, tid, off in self.tensors:
            head.append(_gguf_string(name) + struct.pack("<I", len(dims))
                        + b"".join(struct.pack("<Q", d & ((1 << 64) - 1)) for d in dims)
                        + struct.pack("<iQ", tid, off))
        out = b"".join(head)
        out += b"\0" * ((-len(out)) % self.alignment)
        return out + self.data


def _gguf_seed_spec(imatrix: bool = False) -> _GGUFSpec:
    from qtstudio import kernels

    rng = np.random.default_rng(2)
    kvs: list[tuple[bytes, int, bytes]] = []
    tensors: list[list] = []
    data = bytearray()

    def add(name: str, arr_bytes: bytes, dims: list[int], tid: int) -> None:
        tensors.append([name.encode(), dims, tid, len(data)])
        data.extend(arr_bytes)
        data.extend(b"\0" * ((-len(data)) % 32))

    if imatrix:
        kvs.append((b"general.type", 8, _gguf_string(b"imatrix")))
        kvs.append((b"imatrix.datasets", 9, struct.pack("<iQ", 8, 1) + _gguf_string(b"w.txt")))
        kvs.append((b"imatrix.chunk_count", 4, struct.pack("<I", 10)))
        kvs.append((b"imatrix.chunk_size", 4, struct.pack("<I", 512)))
        s = rng.random((2, 32)).astype("<f4")
        add("blk.0.ffn_up.weight.in_sum2", s.tobytes(), [32, 2], 0)
        add("blk.0.ffn_up.weight.counts", np.array([[3.0], [0.0]], "<f4").tobytes(), [1, 2], 0)
        return _GGUFSpec(kvs, tensors, bytes(data))
    kvs.append((b"general.architecture", 8, _gguf_string(b"llama")))
    kvs.append((b"llama.block_count", 4, struct.pack("<I", 2)))
    kvs.append((b"tokenizer.ggml.tokens", 9,
                struct.pack("<iQ", 8, 3) + b"".join(_gguf_string(t) for t in (b"a", b"b", b"c"))))
    kvs.append((b"tokenizer.ggml.scores", 9, struct.pack("<iQ", 6, 3) + b"\0" * 12))
    x = rng.standard_normal((2, 256)).astype(np.float32)
    add("token_embd.weight", x.astype("<f2").tobytes(), [256, 2], 1)
    add("blk.0.attn_q.weight", kernels.quantize_rows(8, x).tobytes(), [256, 2], 8)
    add("blk.1.ffn_up.weight", kernels.quantize_rows(12, x).tobytes(), [256, 2], 12)
    add("blk.1.attn_norm.weight", x[0].tobytes(), [256], 0)
    return _GGUFSpec(kvs, tensors, bytes(data))


def _parse_gguf_spec(data: bytes) -> _GGUFSpec | None:
    """Our own seeds only: a strict, simple parse that gives up on anything unexpected."""
    try:
        if data[:4] != b"GGUF":
            return None
        _, nt, nkv = struct.unpack_from("<IQQ", data, 4)
        if nt > 64 or nkv > 64:
            return None
        pos = 24
        kvs = []
        for _ in range(nkv):
            key, pos = _read_gguf_string(data, pos)
            (vt,) = struct.unpack_from("<i", data, pos)
            pos += 4
            start = pos
            pos = _skip_value(data, pos, vt)
            kvs.append((key, vt, data[start:pos]))
        tensors = []
        for _ in range(nt):
            name, pos = _read_gguf_string(data, pos)
            (nd,) = struct.unpack_from("<I", data, pos)
            if nd > 4:
                return None
            dims = list(struct.unpack_from(f"<{nd}Q", data, pos + 4))
            pos += 4 + 8 * nd
            tid, off = struct.unpack_from("<iQ", data, pos)
            pos += 12
            tensors.append([name, dims, tid, off])
        pos += (-pos) % 32
        return _GGUFSpec(kvs, tensors, data[pos:])
    except (struct.error, ValueError, OverflowError):
        return None


_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: bytes, pos: int, vt: int) -> int:
    if vt in _SIZES:
        return pos + _SIZES[vt]
    if vt == 8:
        return _read_gguf_string(data, pos)[1]
    if vt == 9:
        it, n = struct.unpack_from("<iQ", data, pos)
        pos += 12
        if n > 1 << 16:
            raise ValueError
        for _ in range(n):
            pos = _skip_value(data, pos, it)
        return pos
    raise ValueError


_GGML_TYPES = (0, 1, 8, 9, 12, 14, 15, 16, 20, 24, 27, 28, 30, 39, 40, 41, 999, -1)


def gguf_structured(data: bytes, a: int, b: int) -> bytes:
    spec = _parse_gguf_spec(data)
    if spec is None:
        return data
    choice = b % 6
    if choice in (0, 1, 2) and spec.tensors:
        t = _pick(spec.tensors, a)
        if choice == 0:  # a dimension
            dims = t[1]
            if dims:
                dims[(a // 7) % len(dims)] = _pick((0, 1, 32, 256, 1 << 32, 1 << 62, 1 << 63,
                                                    (1 << 64) - 1, 1 << 40), b // 6)
            if (b // 6) % 5 == 4:
                dims.append(_pick((0, 1, 1 << 62), b // 30))
        elif choice == 1:  # the type id
            t[2] = _pick(_GGML_TYPES, b // 6)
        else:  # the name
            t[0] = _pick(NAMES, b // 6).encode("utf-8")
    elif choice == 3 and spec.kvs:
        i = a % len(spec.kvs)
        key = spec.kvs[i][0]
        opts = (
            (4, struct.pack("<I", _pick(U32S, b // 6))),
            (10, struct.pack("<Q", _pick(U64S, b // 6))),
            (8, _gguf_string(BIG_DIGITS.encode())),
            (9, struct.pack("<iQ", 9, 1) + struct.pack("<iQ", 9, 1) + struct.pack("<iQ", 4, 0)),
            (9, struct.pack("<iQ", 4, 2) + b"\xff" * 8),
        )
        nvt, val = _pick(opts, a // 3)
        spec.kvs[i] = (key, nvt, val)
    elif choice == 4 and spec.tensors:
        t = _pick(spec.tensors, a)
        t[3] = _pick((*U64S, 32, 64, 96), b // 6)
    else:  # a new metadata entry
        spec.kvs.append((_pick((b"general.alignment", b"llama.block_count",
                                b"general.architecture"), a),
                         4, struct.pack("<I", _pick(U32S, b // 6))))
    return spec.encode()


def seed_gguf() -> Seed:
    return Seed({"model.gguf": _gguf_seed_spec().encode()}, "model.gguf", "model.gguf")


def seed_imatrix_gguf() -> Seed:
    return Seed({"imatrix.gguf": _gguf_seed_spec(imatrix=True).encode()},
                "imatrix.gguf", "imatrix.gguf")


def seed_imatrix_dat() -> Seed:
    out = struct.pack("<i", 2)
    for name, ncall, vals in (("blk.0.attn_q.weight", 4, [4.0, 8.0, 2.0, 1.0]),
                              ("output.weight", 0, [3.0, 5.0])):
        raw = name.encode()
        out += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, len(vals))
        out += np.asarray(vals, "<f4").tobytes()
    out += struct.pack("<ii", 12, 8) + b"wiki.txt"
    return Seed({"imatrix.dat": out}, "imatrix.dat", "imatrix.dat")


def _torch_state() -> dict:
    import torch

    g = torch.Generator().manual_seed(3)
    return {"model.layers.0.self_attn.q_proj.weight": torch.randn(4, 32, generator=g),
            "model.layers.0.mlp.up_proj.weight": torch.randn(2, 32, generator=g).half(),
            "model.norm.weight": torch.ones(32, dtype=torch.bfloat16),
            "step": torch.tensor(3)}


def seed_torch_zip() -> Seed:
    import torch

    buf = io.BytesIO()
    torch.save(_torch_state(), buf)
    return Seed({"model.pt": buf.getvalue()}, "model.pt", "model.pt")


def seed_torch_legacy() -> Seed:
    import torch

    buf = io.BytesIO()
    torch.save(_torch_state(), buf, _use_new_zipfile_serialization=False)
    return Seed({"pytorch_model.bin": buf.getvalue()}, "pytorch_model.bin", "pytorch_model.bin")


def torch_zip_structured(data: bytes, a: int, b: int) -> bytes:
    """Mutate the pickle (or a record header) inside the zip and re-zip with valid CRCs."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(i, zf.read(i)) for i in zf.infolist()]
    except Exception:  # a file already damaged by earlier steps
        return data
    if not members:
        return data
    pkl = [k for k, (i, _) in enumerate(members) if i.filename.endswith("data.pkl")]
    k = pkl[0] if pkl and b % 4 else a % len(members)
    info, payload = members[k]
    ops = [((b >> 2) % 8, a, b >> 5), ((b >> 5) % 8, a >> 3, b >> 8)][: 1 + b % 2]
    members[k] = (info, apply_binary(payload, ops))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i, p in members:
            zf.writestr(i, p)
    return out.getvalue()


def seed_recipe() -> Seed:
    doc = {"format": "qtstudio-recipe", "version": 1, "preset": "Q4_K_M",
           "rules": [{"pattern": "attn_v", "encoding": "Q8_0", "syntax": "regex",
                      "target": "gguf_name"},
                     {"pattern": "*.mlp.*", "encoding": "Q5_K", "syntax": "glob",
                      "target": "name"}],
           "overrides": {"lm_head.weight": "Q6_K"}, "float_encoding": "F16",
           "default_encoding": None, "output_tensor_type": "Q8_0",
           "token_embedding_type": None, "pure": False, "notes": "n"}
    return Seed({"recipe.json": json.dumps(doc).encode()}, "recipe.json", "recipe.json")


# --- readers ---------------------------------------------------------------------------------

def read_model(path: Path) -> int:
    """Open, build the tree, read every tensor both ways; returns the tensor count."""
    from qtstudio.formats import open_model

    with open_model(path) as m:
        _ = m.n_blocks, sum(1 for _ in m.tree.walk())
        from qtstudio.formats.errors import ModelFormatError

        for t in m.tensors:
            for load in (m.load_raw, m.load):
                try:
                    load(t.name)
                except ModelFormatError:
                    if getattr(t, "unreadable", None) is None and load is m.load:
                        raise
        return len(m.tensors)


def read_imatrix(path: Path) -> int:
    from qtstudio.formats.imatrix import load_imatrix

    im = load_imatrix(path)
    for name in im.entries:
        im.weights_for(name, 4)
    return len(im)


def read_recipe(path: Path) -> int:
    from qtstudio.core.recipe import Recipe

    r = Recipe.load(path)
    r.to_json()
    return len(r.rules)


@dataclass(frozen=True)
class Reader:
    name: str
    seed: Callable[[], Seed]
    read: Callable[[Path], int]
    structured: Callable[[bytes, int, int], bytes] | None


READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("gguf", seed_gguf, read_model, gguf_structured),
    Reader("safetensors", seed_safetensors, read_model, safetensors_structured),
    Reader("shard_index", seed_shard_index, read_model, json_structured),
    Reader("torch_zip", seed_torch_zip, read_model, torch_zip_structured),
    Reader("torch_legacy", seed_torch_legacy, read_model, None),
    Reader("imatrix_dat", seed_imatrix_dat, read_imatrix, None),
    Reader("imatrix_gguf", seed_imatrix_gguf, read_imatrix, gguf_structured),
    Reader("recipe", seed_recipe, read_recipe, json_structured),
)}


def mutate(reader: Reader, data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    for op, a, b in ops:
        if op % N_OPS == 8 and reader.structured is not None:
            data = reader.structured(data, a, b)
        else:
            data = apply_binary(data, [(op, a, b)])
    return data


def our_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a reader may raise for a bad file: ours, each naming the file."""
    from qtstudio.core.recipe import RecipeError
    from qtstudio.formats.errors import ModelFormatError

    return (ModelFormatError, RecipeError)


def write_case(folder: Path, seed: Seed, data: bytes) -> Path:
    for rel, content in seed.files.items():
        (folder / rel).write_bytes(data if rel == seed.mutable else content)
    return folder / seed.entry


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_kib(field: str = "VmHWM") -> int:
    """VmHWM (peak) or VmRSS (now) of this process in KiB, from /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def scratch_dir() -> Path:
    """A RAM-backed folder when there is one: each case writes its files afresh."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")
