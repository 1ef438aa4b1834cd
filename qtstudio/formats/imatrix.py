"""llama.cpp importance-matrix files: the GGUF format and the legacy .dat, read and written.

Both hold, per weight tensor (by GGUF name), the sum over calibration activations of the squared
input of each column. llama-quantize turns that into one weight per column by dividing by the
number of calls (legacy) or the per-matrix count (GGUF); ``ImportanceMatrix.entries`` holds those
divided weights, which is what the quantizers take.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType

from qtstudio.core.regular_files import open_regular, read_regular, regular_size

from .atomic import atomic_output
from .errors import ModelFormatError
from .gguf_reader import read_gguf
from .gguf_writer import GGUFStreamWriter

KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
SUM_SUFFIX = ".in_sum2"
COUNT_SUFFIX = ".counts"

# Bounds that keep a corrupt legacy header from driving huge loops or allocations.
_MAX_NAME = 4096


class ImatrixError(ModelFormatError):
    """An importance-matrix file that cannot be read; names the file and the problem."""

    def __init__(self, path: str | Path, problem: str, *, tensor: str | None = None) -> None:
        super().__init__(path, problem, tensor=tensor)


@dataclass
class ImportanceMatrix:
    """Per-tensor column weights, keyed by GGUF tensor name (e.g. ``blk.0.attn_q.weight``)."""

    entries: dict[str, np.ndarray]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int | None = None
    path: Path | None = None
    format: str = "gguf"

    def weights_for(self, name: str, n_columns: int) -> np.ndarray | None:
        """The weights for a tensor whose rows hold ``n_columns`` values, or None.

        As llama-quantize does, a vector of the wrong length is ignored (no weighting) rather
        than reinterpreted.
        """
        w = self.entries.get(name)
        if w is None or w.size != n_columns:
            return None
        return w

    def __len__(self) -> int:
        return len(self.entries)


#: more than any importance matrix needs (a large MoE model's is a few hundred MB)
MAX_LEGACY_BYTES = 4 << 30


def load_imatrix(path: str | Path) -> ImportanceMatrix:
    """Read either format, detected by the GGUF magic."""
    p = Path(path)
    regular_size(p, ImatrixError)  # a FIFO or a device is refused before it is opened
    with open_regular(p, ImatrixError) as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _load_gguf(p)
    return _load_legacy(p)


def _column_weights(p: Path, name: str, values: np.ndarray) -> np.ndarray:
    if values.size and not (np.isfinite(values).all() and (values >= 0).all()):
        raise ImatrixError(p, f"{name} holds negative or non-finite sums of squares")
    return values


def _load_gguf(p: Path) -> ImportanceMatrix:
    # Our bounds-checked GGUF parser: counts, lengths and offsets are checked against the file
    # before anything is allocated.
    try:
        src, meta, _ = read_gguf(p)
    except ImatrixError:
        raise
    except ModelFormatError as exc:
        raise ImatrixError(p, f"not a readable GGUF importance matrix: {exc.problem}",
                           tensor=exc.tensor) from None
    try:
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for raw in src.raws:
            if raw.dtype != "F32":
                raise ImatrixError(p, f"tensor {raw.name} is {raw.dtype}, expected F32")
            if raw.unreadable is not None:
                raise ImatrixError(p, raw.unreadable, tensor=raw.name)
            if raw.name.endswith(SUM_SUFFIX):
                sums[raw.name[: -len(SUM_SUFFIX)]] = src.load(raw.name)
            elif raw.name.endswith(COUNT_SUFFIX):
                counts[raw.name[: -len(COUNT_SUFFIX)]] = src.load(raw.name)
    finally:
        src.close()
    if not sums and not counts:
        raise ImatrixError(p, "no importance data (no *.in_sum2 / *.counts tensors)")
    for key in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE):
        if key not in meta:
            raise ImatrixError(p, f"missing imatrix metadata key {key}")
    entries: dict[str, np.ndarray] = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            raise ImatrixError(p, f"{name} has sums without counts or counts without sums")
        s = _column_weights(p, name, sums[name])
        s = s.reshape(s.shape[0], -1) if s.ndim > 1 else s.reshape(1, -1)
        c = _column_weights(p, name, counts[name].reshape(-1))
        if c.size != s.shape[0]:
            raise ImatrixError(p, f"{name}: {c.size} counts for {s.shape[0]} matrices")
        out = np.ones_like(s)
        # A matrix that saw no calibration input gets neutral weights, as llama-quantize does.
        seen = c > 0
        with np.errstate(over="ignore"):
            out[seen] = s[seen] / c[seen, None]
        if not np.isfinite(out).all():
            raise ImatrixError(p, f"{name}: its sums divided by its counts overflow float32")
        entries[name] = out.reshape(-1)
    datasets = meta.get(KEY_DATASETS) or []
    if isinstance(datasets, str):
        datasets = [datasets]
    if not isinstance(datasets, list):
        raise ImatrixError(p, f"{KEY_DATASETS} must be a list of file names")
    return ImportanceMatrix(
        entries=entries,
        datasets=[str(d)[:4096] for d in datasets],
        chunk_count=_count(p, meta, KEY_CHUNK_COUNT),
        chunk_size=_count(p, meta, KEY_CHUNK_SIZE),
        path=p,
        format="gguf",
    )


def _count(p: Path, meta: dict, key: str) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 63:
        raise ImatrixError(p, f"{key} must be a non-negative integer, got {str(v)[:40]}")
    return v


class _Cursor:
    def __init__(self, p: Path, data: bytes) -> None:
        self.p, self.data, self.pos = p, data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ImatrixError(self.p, f"truncated while reading {what} at byte {self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i32(self, what: str) -> int:
        return struct.unpack("<i", self.take(4, what))[0]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _load_legacy(p: Path) -> ImportanceMatrix:
    data = read_regular(p, MAX_LEGACY_BYTES, "an importance matrix", ImatrixError)
    cur = _Cursor(p, data)
    n_entries = cur.i32("the entry count")
    # each entry takes at least 16 bytes, so a count beyond that is corruption, not data
    if n_entries < 1 or n_entries * 16 > cur.left:
        raise ImatrixError(p, f"not an importance matrix: entry count {n_entries} is impossible "
                              f"for a {len(data)}-byte file")
    entries: dict[str, np.ndarray] = {}
    for i in range(n_entries):
        n = cur.i32(f"name length of entry {i + 1}")
        if not 0 < n <= _MAX_NAME:
            raise ImatrixError(p, f"entry {i + 1} has an invalid name length {n}")
        name = cur.take(n, f"name of entry {i + 1}").decode("utf-8", errors="replace")
        ncall = cur.i32(f"call count of {name}")
        nval = cur.i32(f"value count of {name}")
        if nval < 1 or nval * 4 > cur.left:
            raise ImatrixError(p, f"entry {name} claims {nval} values; the file is too short")
        vals = np.frombuffer(cur.take(nval * 4, f"values of {name}"), dtype="<f4").astype(
            np.float32)
        _column_weights(p, name, vals)
        if ncall > 0:
            vals = vals / np.float32(ncall)
        entries[name] = vals
    chunk_count = 0
    datasets: list[str] = []
    # newer legacy files end with the chunk count and the dataset name
    if cur.left >= 8:
        chunk_count = cur.i32("the chunk count")
        n = cur.i32("the dataset name length")
        if 0 <= n <= cur.left:
            datasets = [cur.take(n, "the dataset name").decode("utf-8", errors="replace")]
    return ImportanceMatrix(entries, datasets, chunk_count, None, p, "legacy")


# --- writing (for tools and tests that make calibration files) ----------------------------

def save_imatrix_gguf(path: str | Path, sums: Mapping[str, np.ndarray],
                      counts: Mapping[str, np.ndarray | float], *, datasets: list[str],
                      chunk_count: int, chunk_size: int) -> None:
    """Write llama-imatrix's GGUF layout: ``sums[name]`` is [n_mat, n_cols] of squared inputs."""
    with atomic_output(path) as f:
        w = GGUFStreamWriter(f)
        w.add_kv("general.type", "imatrix")
        w.add_kv(KEY_DATASETS, list(datasets), GGUFValueType.ARRAY, GGUFValueType.STRING)
        w.add_kv(KEY_CHUNK_COUNT, int(chunk_count), GGUFValueType.UINT32)
        w.add_kv(KEY_CHUNK_SIZE, int(chunk_size), GGUFValueType.UINT32)
        arrays = []
        for name, s in sums.items():
            s2 = np.asarray(s, dtype=np.float32)
            s2 = s2.reshape(1, -1) if s2.ndim == 1 else s2
            c = np.asarray(counts[name], dtype=np.float32).reshape(s2.shape[0], 1)
            arrays.append((name + SUM_SUFFIX, s2))
            arrays.append((name + COUNT_SUFFIX, c))
        for tname, arr in arrays:
            w.add_tensor_info(tname, arr.shape, GGMLQuantizationType.F32)
        w.write_header()
        for tname, arr in arrays:
            w.write_tensor_data(tname, np.ascontiguousarray(arr, dtype="<f4"))
        w.finish()


def save_imatrix_legacy(path: str | Path, sums: Mapping[str, np.ndarray],
                        ncalls: Mapping[str, int], *, chunk_count: int = 0,
                        dataset: str | None = None) -> None:
    """Write the legacy .dat layout: per entry name, call count, value count, summed values."""
    parts = [struct.pack("<i", len(sums))]
    for name, s in sums.items():
        raw = name.encode("utf-8")
        vals = np.asarray(s, dtype="<f4").reshape(-1)
        parts.append(struct.pack("<i", len(raw)) + raw)
        parts.append(struct.pack("<ii", int(ncalls[name]), vals.size) + vals.tobytes())
    if dataset is not None:
        raw = dataset.encode("utf-8")
        parts.append(struct.pack("<ii", int(chunk_count), len(raw)) + raw)
    with atomic_output(path) as f:
        f.write(b"".join(parts))
