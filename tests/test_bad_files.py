"""Damaged and hostile files: each class a user met, each a ModelFormatError naming the file,
the tensor and the problem, or one unreadable tensor in an otherwise usable model."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zipfile

import gguf
import numpy as np
import pytest
import torch

from qtstudio import kernels
from qtstudio.core.qtensor import QTensor
from qtstudio.core.recipe import Recipe, RecipeError
from qtstudio.core.roles import MAX_BLOCKS, block_index
from qtstudio.formats import ModelFormatError, open_model
from qtstudio.formats.gguf_writer import GGUFStreamWriter
from qtstudio.formats.imatrix import ImatrixError, load_imatrix
from tests.helpers.fuzz_targets import _gguf_string, _GGUFSpec

Q = gguf.GGMLQuantizationType


def _write_gguf(path, tensors, kv=None, arch="llama"):
    """tensors: (name, numpy-order shape, ggml type, raw bytes) written by our own writer."""
    with open(path, "wb") as f:
        w = GGUFStreamWriter(f)
        w.add_kv("general.architecture", arch)
        for k, v in (kv or {}).items():
            w.add_kv(k, v)
        for name, shape, qt, _ in tensors:
            w.add_tensor_info(name, shape, qt)
        w.write_header()
        for name, _, _, raw in tensors:
            w.write_tensor_data(name, raw)
        w.finish()
    return path


def _f32(rows, cols, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def _safetensors(path, header: str, body: bytes):
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


# --- GGUF ------------------------------------------------------------------------------------

@pytest.mark.parametrize("qt", [Q.Q8_K, Q.Q8_1])
def test_gguf_type_nobody_decodes_is_one_unreadable_tensor(tmp_path, qt):
    x = _f32(2, 256)
    blk, size = gguf.GGML_QUANT_SIZES[qt]
    junk = np.zeros(2 * 256 // blk * size, np.uint8).tobytes()
    p = _write_gguf(tmp_path / "m.gguf", [
        ("blk.0.attn_q.weight", (2, 256), Q.Q8_0, kernels.quantize_rows(8, x).tobytes()),
        ("blk.0.attn_k.weight", (2, 256), qt, junk)])
    with open_model(p) as m:
        bad = m.tensor("blk.0.attn_k.weight")
        assert bad.dtype == qt.name and not bad.quantizable
        assert f"{qt.name} data cannot be decoded" in bad.unreadable
        assert m.unreadable == [bad]
        with pytest.raises(ModelFormatError) as info:
            m.load(bad.name)
        assert info.value.path == p and info.value.tensor == bad.name
        assert str(info.value).startswith(f"{p}, tensor 'blk.0.attn_k.weight': {qt.name} data")
        # the raw bytes are still there (a GGUF re-export can copy them), and the rest decodes
        assert m.load_raw(bad.name).nbytes == len(junk)
        ref = gguf.GGUFReader(p).tensors[0]
        np.testing.assert_array_equal(m.load("blk.0.attn_q.weight"),
                                      gguf.quants.dequantize(ref.data, Q.Q8_0))


def _raw_gguf(tmp_path, tensors, kvs=()):
    """A GGUF written field by field, for headers our writer refuses to produce."""
    data = bytearray()
    infos = []
    for name, ne, tid, nbytes in tensors:
        infos.append([name.encode(), ne, tid, len(data)])
        data.extend(b"\0" * nbytes)
        data.extend(b"\0" * ((-len(data)) % 32))
    p = tmp_path / "raw.gguf"
    p.write_bytes(_GGUFSpec(list(kvs), infos, bytes(data)).encode())
    return p


def test_gguf_zero_dimension_is_unreadable_and_the_rest_loads(tmp_path):
    p = _raw_gguf(tmp_path, [("empty.weight", [0, 4], 8, 0), ("ok.weight", [4], 0, 16)])
    with open_model(p) as m:
        assert "zero dimension (ne=[0, 4])" in m.tensor("empty.weight").unreadable
        with pytest.raises(ModelFormatError, match=r"tensor 'empty.weight': has a zero dim"):
            m.load("empty.weight")
        assert m.load("ok.weight").tolist() == [0.0] * 4


@pytest.mark.parametrize("ne", [[1 << 32, 1 << 32, 4], [(1 << 63) - 1, 2], [0, 1 << 62, 8]])
def test_gguf_dimensions_whose_product_overflows(tmp_path, ne):
    p = _raw_gguf(tmp_path, [("w", ne, 0, 0)])
    with pytest.raises(ModelFormatError, match=r"raw\.gguf, tensor 'w': dimensions .* multiply"):
        open_model(p)


def test_gguf_absurd_block_numbers_and_count(tmp_path, monkeypatch):
    built = []
    real = gguf.get_tensor_name_map
    monkeypatch.setattr(gguf, "get_tensor_name_map",
                        lambda arch, n: built.append(n) or real(arch, n))
    kvs = [(b"general.architecture", 8, _gguf_string(b"llama")),
           (b"llama.block_count", 4, struct.pack("<I", 0xFFFFFFFF))]
    p = _raw_gguf(tmp_path, [("blk.4294967295.attn_q.weight", [32, 2], 0, 256),
                             ("blk." + "9" * 5000 + ".ffn_up.weight", [32], 0, 128),
                             ("blk.3.ffn_up.weight", [32], 0, 128)], kvs)
    with open_model(p) as m:
        assert m.n_blocks == 4  # the absurd declared count is passed over for the names
        assert [t.block_index for t in m.tensors] == [None, None, 3]
        # numeric order in the tree, compared as digits (a 5000-digit int() would raise)
        assert [c.name[:12] for c in m.tree.find("blk").children] == [
            "3", "4294967295", "999999999999"]
    # nothing is ever sized from a block number
    assert not built or max(built) <= 64


def test_hf_names_with_absurd_block_numbers(tmp_path, monkeypatch):
    built = []
    real = gguf.get_tensor_name_map
    monkeypatch.setattr(gguf, "get_tensor_name_map",
                        lambda arch, n: built.append(n) or real(arch, n))
    names = ["model.layers.99999999999.self_attn.q_proj.weight",
             "model.layers." + "7" * 5000 + ".mlp.up_proj.weight",
             "model.layers.70000.mlp.up_proj.weight",
             "model.layers.200.mlp.up_proj.weight",
             "model.layers.2.mlp.up_proj.weight"]
    header = {n: {"dtype": "F32", "shape": [32], "data_offsets": [128 * i, 128 * (i + 1)]}
              for i, n in enumerate(names)}
    p = _safetensors(tmp_path / "model.safetensors", json.dumps(header), b"\0" * 128 * len(names))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama",
                                                      "num_hidden_layers": 10**12}))
    with open_model(p) as m:
        assert m.n_blocks == 201
        assert [t.block_index for t in m.tensors] == [None, None, None, 200, 2]
        # deep blocks still get their GGUF names, without a 201-block name map
        assert m.tensor(names[3]).gguf_name == "blk.200.ffn_up.weight"
        assert m.tensor(names[2]).gguf_name == "blk.70000.ffn_up.weight"
        layers = m.tree.find("model.layers")
        assert [c.name[:11] for c in layers.children] == [
            "2", "200", "70000", "99999999999", "77777777777"]
    assert max(built) <= 64
    assert block_index(f"layers.{MAX_BLOCKS - 1}.x") == MAX_BLOCKS - 1
    assert block_index(f"layers.{MAX_BLOCKS}.x") is None
    assert block_index("layers.\u0663.x") is None  # only ASCII digits are block numbers


def test_deep_block_names_match_the_full_map():
    """Naming block N through block 0 gives the gguf package's own answer (text models)."""
    from qtstudio.core.gguf_names import GGUFNamer

    for arch in ("llama", "qwen2", "gemma3", "gpt2", "bert", "phi3", "falcon", "mamba"):
        namer = GGUFNamer(arch, 90)
        full = gguf.get_tensor_name_map(namer.arch, 90)
        for key in full.mapping:
            if ".85." in f".{key}.":
                for name in (key, key + ".weight"):
                    assert namer(name) == full.get_name(name, try_suffixes=(".weight", ".bias"))


# --- safetensors -----------------------------------------------------------------------------

def test_safetensors_zero_dimension_loads_empty_and_is_never_quantized(tmp_path):
    p = _safetensors(tmp_path / "m.safetensors", json.dumps({
        "e.weight": {"dtype": "F32", "shape": [0, 4096], "data_offsets": [0, 0]},
        "w.weight": {"dtype": "F32", "shape": [2, 32], "data_offsets": [0, 256]}}), b"\0" * 256)
    with open_model(p) as m:
        e = m.tensor("e.weight")
        assert e.params == 0 and not e.quantizable and e.unreadable is None
        assert m.load("e.weight").shape == (0, 4096)
        assert m.tensor("w.weight").quantizable


@pytest.mark.parametrize("shape, match", [
    ([0, 1 << 64], "not a list of at most 16 non-negative integers of sane size"),
    ([0, 1 << 40, 1 << 40], "multiplies out to more values than any file can hold"),
    ([1 << 32, 1 << 32, 1 << 32], "multiplies out"),
    ([1] * 40, "at most 16"),
])
def test_safetensors_shapes_that_overflow(tmp_path, shape, match):
    p = _safetensors(tmp_path / "m.safetensors", json.dumps(
        {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}), b"")
    with pytest.raises(ModelFormatError, match=r"m\.safetensors, tensor 'w': shape .*" + match):
        open_model(p)


def test_thousand_digit_integers(tmp_path):
    big = "9" * 5000
    p = _safetensors(tmp_path / "m.safetensors",
                     '{"w": {"dtype": "F32", "shape": [' + big + '], "data_offsets": [0, 4]}}',
                     b"\0" * 4)
    with pytest.raises(ModelFormatError, match=r"m\.safetensors: the header is not valid JSON"):
        open_model(p)
    (tmp_path / "g").mkdir()
    good = _safetensors(tmp_path / "g" / "model.safetensors", json.dumps(
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}), b"\0" * 4)
    (good.parent / "config.json").write_text('{"num_hidden_layers": ' + big + "}")
    with pytest.raises(ModelFormatError, match=r"config\.json is not valid JSON"):
        open_model(good)
    (good.parent / "config.json").write_text("{}")
    idx = good.parent / "model.safetensors.index.json"
    idx.write_text('{"metadata": {"total_size": ' + big + '}, "weight_map": {}}')
    with pytest.raises(ModelFormatError, match=r"index\.json: the shard index is not valid JSON"):
        open_model(idx)
    r = tmp_path / "r.json"
    r.write_text('{"version": ' + big + "}")
    with pytest.raises(RecipeError, match=r"r\.json: not valid JSON"):
        Recipe.load(r)


def test_header_length_128_mod_256_is_still_safetensors(tmp_path):
    """One real file in 256 has a header length whose first byte is 0x80, a pickle's PROTO."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    header += " " * ((0x180 - len(header)) % 256)
    assert len(header) % 256 == 128
    p = _safetensors(tmp_path / "model.bin", header, np.float32([1.5, -2]).tobytes())
    assert p.read_bytes()[0] == 0x80
    with open_model(p) as m:
        assert m.format == "safetensors" and m.load("w").tolist() == [1.5, -2.0]
    # and a damaged one meets our header checks, not torch's loader
    bad = _safetensors(tmp_path / "bad.safetensors", header.replace('[0, 8]', '[0, 9]'),
                       b"\0" * 8)
    with pytest.raises(ModelFormatError,
                       match=r"bad\.safetensors, tensor 'w': the tensor's data ends"):
        open_model(bad)


def test_torch_pickles_are_sniffed_by_content(tmp_path):
    sd = {"w": torch.ones(2, 3)}
    torch.save(sd, tmp_path / "zipped")
    torch.save(sd, tmp_path / "legacy", _use_new_zipfile_serialization=False)
    for name in ("zipped", "legacy"):
        with open_model(tmp_path / name) as m:
            assert m.format == "torch" and m.load("w").tolist() == [[1.0] * 3] * 2


# --- torch -----------------------------------------------------------------------------------

def _rezip_with_pickle(src: bytes, pickle_bytes: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, pickle_bytes if info.filename.endswith("data.pkl") else data)
    return out.getvalue()


@pytest.mark.parametrize("pickle_bytes", [
    b"\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02(",
    b"\x80\x02]q\x00(K\x01h\x63",  # BINGET of a memo slot that was never set
    b"\x80\x02J\xff\xff",  # BININT cut short
    b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f",  # a frame far larger than the file
    b"\x80\x02\x8a\xff" + b"\xff" * 8,
    b"",
])
def test_corrupt_pickle_inside_zip(tmp_path, pickle_bytes):
    buf = io.BytesIO()
    torch.save({"w": torch.ones(4)}, buf)
    p = tmp_path / "c.pt"
    p.write_bytes(_rezip_with_pickle(buf.getvalue(), pickle_bytes))
    with pytest.raises(ModelFormatError, match=r"c\.pt: ") as info:
        open_model(p)
    assert "Traceback" not in str(info.value)


def test_stride_zero_view_over_a_tiny_storage(tmp_path):
    p = tmp_path / "s.pt"
    huge = torch.ones(1).as_strided((100_000, 100_000), (0, 0))  # 40 GB of one float
    torch.save({"w": huge, "b": torch.arange(4.0)}, p)
    assert p.stat().st_size < 4096
    with open_model(p) as m:
        w = m.tensor("w")
        assert "from a 4-byte storage (a repeated, stride-0 view)" in w.unreadable
        assert w.nbytes == 4 and not w.quantizable
        for load in (m.load, m.load_raw):
            with pytest.raises(ModelFormatError, match=r"s\.pt, tensor 'w': shape \[100000, "):
                load("w")
        assert m.load("b").tolist() == [0.0, 1.0, 2.0, 3.0]


def test_self_containing_dict_and_parameters(tmp_path):
    inner = {"w": torch.nn.Parameter(torch.full((2, 32), 0.5))}
    inner["again"] = inner
    outer = {"model": inner, "n": torch.ones(3)}
    outer["me"] = outer
    torch.save(outer, tmp_path / "r.pt")
    with open_model(tmp_path / "r.pt") as m:
        assert [t.name for t in m.tensors] == ["w"]  # the "model" wrapper is unwrapped
        np.testing.assert_array_equal(m.load("w"), np.full((2, 32), 0.5, np.float32))


def test_sparse_meta_and_quantized_tensors_are_unreadable(tmp_path):
    torch.save({"s": torch.eye(4).to_sparse(), "m": torch.empty(4, 32, device="meta"),
                "ok": torch.ones(2, 32)}, tmp_path / "o.pt")
    with open_model(tmp_path / "o.pt") as m:
        assert m.tensor("s").unreadable.startswith("a sparse_coo tensor")
        assert m.tensor("m").unreadable.startswith("a meta tensor")
        assert {t.name for t in m.unreadable} == {"s", "m"}
        for name in ("s", "m"):
            with pytest.raises(ModelFormatError, match=f"o.pt, tensor '{name}': a "):
                m.load_raw(name)
        assert m.load("ok").shape == (2, 32)


# --- not files -------------------------------------------------------------------------------

def _finishes(fn, *args):
    """Run fn in a thread; what it raised, or 'hung' if it never returns."""
    out = {}

    def run():
        try:
            fn(*args)
            out["result"] = "returned"
        except Exception as exc:
            out["result"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    return out.get("result", "hung")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["model.safetensors", "model.gguf", "model.pt",
                                  "model.safetensors.index.json", "x"])
def test_fifo_given_as_the_model_is_refused_without_opening_it(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    got = _finishes(open_model, fifo)
    assert isinstance(got, ModelFormatError), got
    assert str(got) == f"{fifo}: is a FIFO (named pipe), not a regular file; give the model " \
                       "file itself"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_elsewhere(tmp_path):
    os.mkfifo(tmp_path / "imatrix.dat")
    got = _finishes(load_imatrix, tmp_path / "imatrix.dat")
    assert isinstance(got, ImatrixError) and "is a FIFO" in str(got)
    os.mkfifo(tmp_path / "recipe.json")
    got = _finishes(Recipe.load, tmp_path / "recipe.json")
    assert isinstance(got, RecipeError) and "is a FIFO" in str(got)
    # a FIFO among the shards named by an index
    os.mkfifo(tmp_path / "s1.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "s1.safetensors"}}))
    got = _finishes(open_model, tmp_path / "model.safetensors.index.json")
    assert isinstance(got, ModelFormatError) and "not a regular file" in str(got)
    # a folder whose only weights file is a FIFO
    (tmp_path / "model.safetensors.index.json").unlink()
    got = _finishes(open_model, tmp_path)
    assert isinstance(got, ModelFormatError), got


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_given_as_the_model():
    got = _finishes(open_model, "/dev/zero")
    assert isinstance(got, ModelFormatError) and "is a character device" in str(got)


# --- QTensor ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1 << 32, 1 << 32, 32), (1 << 62, 32)])
def test_qtensor_shape_product_that_wraps_int64(shape):
    # 2^64 * 32 rows wrap to zero in int64: an empty buffer would have matched the size check
    with pytest.raises(ValueError, match="more than 2\\^62 values"):
        QTensor(np.zeros(0, np.uint8), shape, "Q4_0")


# --- the command line ------------------------------------------------------------------------

def test_cli_inspect_names_unreadable_tensors_and_refuses_a_fifo(tmp_path, capsys):
    from qtstudio.cli import main

    p = _raw_gguf(tmp_path, [("empty.weight", [0, 4], 8, 0), ("ok.weight", [4], 0, 16)])
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "unreadable: empty.weight: has a zero dimension (ne=[0, 4])" in out
    assert main(["inspect", str(p), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["unreadable"] is None for t in doc["tensors"]] == [False, True]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "f.gguf")
        # (main installs signal handlers, so it runs here, not in a watchdog thread; the FIFO
        # tests above show open_model never blocks on one)
        assert main(["inspect", str(tmp_path / "f.gguf")]) == 2
        assert "f.gguf: is a FIFO (named pipe)" in capsys.readouterr().err
