"""Qt-free analysis jobs behind the plots: per-layer benchmark, what-if sweep, histogram grids.

Each job is a plain generator in the style of qtstudio.jobs (yields ``Progress``, checks the cancel
token between tensors, returns its result), so the window runs it in a JobWorker and a script or a
test can simply iterate it.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import qtstudio
from qtstudio.core.encodings import get_encoding
from qtstudio.core.metrics import tensor_metrics
from qtstudio.core.qtensor import dequantize, quantize
from qtstudio.jobs import Cancelled, CancelToken, Progress

#: timing method names shown in the benchmark table
QMATMUL = "qmatmul vs float32 matmul (numpy), one thread each, batch of 8 activations"
CODEC = "quantize + dequantize (no native qmatmul in this build)"

#: what-if samples at most this many rows of a large tensor (the error estimate converges long
#: before; whole 100M-parameter embeddings would make the sweep minutes long)
WHATIF_MAX_ELEMENTS = 1 << 21


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.cancelled:
        raise Cancelled()


def _progress(stage: str, name: str, index: int, total: int, done: int, all_: int, t0: float,
              message: str = "") -> Progress:
    return Progress(stage=stage, name=name, index=index, total=total, bytes_done=done,
                    bytes_total=all_, elapsed=time.perf_counter() - t0, message=message)


def report_metrics(report: Any, plan: Any) -> Iterable[tuple[str, str, dict]]:
    """(name, encoding, metrics) for every tensor a quantize report measured."""
    tensors = getattr(report, "tensors", None)
    if tensors is None and isinstance(report, dict):
        tensors = report.get("tensors")
    if isinstance(tensors, dict):
        tensors = [{"name": k, **v} for k, v in tensors.items()]
    for t in tensors or []:
        d = t if isinstance(t, dict) else asdict(t)
        name = d["name"]
        enc = d.get("encoding") or plan.entry(name).encoding
        metrics = d.get("metrics", d)
        yield name, enc, metrics


# ---- benchmark --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchResult:
    name: str
    encoding: str
    shape: tuple[int, ...]
    method: str
    #: best time of the quantized path (qmatmul, or quantize + dequantize)
    seconds: float
    #: best time of the float32 reference (matmul, or a copy when there is no qmatmul)
    float_seconds: float

    @property
    def speedup(self) -> float:
        return self.float_seconds / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speedup"] = self.speedup
        return d


def native_qmatmul():
    """``qtstudio.qmatmul`` when this build has it (another part of the project adds it)."""
    return getattr(qtstudio, "qmatmul", None)


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pay for thread start-up and cold caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def benchmark_job(model: Any, plan: Any, names: list[str], *, batch: int = 8, repeats: int = 3,
                  cancel: CancelToken | None = None,
                  ) -> Generator[Progress, None, list[BenchResult]]:
    """Time each tensor in its planned encoding.

    With ``qtstudio.qmatmul`` present: ``x @ W.T`` for a batch of ``batch`` activations through the
    quantized weights against the same product in float32. Without it: the codec round trip,
    labelled as such so nobody reads it as a matmul speed.
    """
    qmm = native_qmatmul()
    method = QMATMUL if qmm is not None else CODEC
    rng = np.random.default_rng(0)
    total_bytes = sum(model.tensor(n).nbytes for n in names)
    done = 0
    t0 = time.perf_counter()
    out: list[BenchResult] = []
    for i, name in enumerate(names):
        _check(cancel)
        info = model.tensor(name)
        yield _progress("Benchmark", name, i, len(names), done, total_bytes, t0)
        enc = get_encoding(plan.entry(name).encoding)
        if len(info.shape) < 2 or not enc.accepts_shape(tuple(info.shape)):
            done += info.nbytes  # a vector is not a layer to time (norms, biases)
            continue
        w = np.ascontiguousarray(model.load(name), dtype=np.float32)
        w2 = w.reshape(-1, w.shape[-1]) if w.ndim != 2 else w
        if qmm is not None and w2.ndim == 2:
            qt = quantize(w2, enc)
            x = rng.standard_normal((batch, w2.shape[1])).astype(np.float32)
            # one thread each: a fair kernel-against-kernel comparison, stable on a busy machine
            seconds = _best(lambda qt=qt, x=x: qmm(x, qt, threads=1), repeats)
            float_seconds = _best(lambda x=x, w2=w2: x @ w2.T, repeats)
        else:
            seconds = _best(lambda w2=w2, enc=enc: dequantize(quantize(w2, enc)), repeats)
            float_seconds = _best(lambda w2=w2: w2.copy(), repeats)
        out.append(BenchResult(name, enc.name, tuple(info.shape), method, seconds,
                               float_seconds))
        done += info.nbytes
    yield _progress("Benchmark", "", len(names), len(names), total_bytes, total_bytes, t0)
    return out


# ---- what-if ----------------------------------------------------------------------------------
def sample_rows(model: Any, name: str, max_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_elements`` values of a tensor as float32 rows [k, n], evenly spread over its
    rows, and the row indices they came from. Plain-typed tensors are sampled from their
    memory-mapped raw view, so a 2 GB embedding never becomes a 2 GB array in the app."""
    from qtstudio.formats.floats import PLAIN_DTYPES, plain_to_f32

    info = model.tensor(name)
    n = int(info.shape[-1]) if info.shape else 1
    rows = max(1, info.params // max(n, 1))
    if info.params <= max_elements:
        w = np.ascontiguousarray(model.load(name), dtype=np.float32).reshape(rows, n)
        return w, np.arange(rows)
    k = max(1, max_elements // n)
    idx = np.unique(np.linspace(0, rows - 1, k).astype(np.int64))  # reproducible spread
    if info.dtype in PLAIN_DTYPES and info.dtype in ("F32", "F16", "BF16"):
        raw = model.load_raw(name).reshape(rows, n)
        return np.ascontiguousarray(plain_to_f32(raw[idx], info.dtype)), idx
    w = model.load(name).reshape(rows, n)  # block-encoded source: decoded whole by the reader
    return np.ascontiguousarray(w[idx], dtype=np.float32), idx


def whatif_job(model: Any, candidates: dict[str, list[str]], *,
               max_elements: int = WHATIF_MAX_ELEMENTS, cancel: CancelToken | None = None,
               ) -> Generator[Progress, None, dict[tuple[str, str], dict[str, float]]]:
    """Error of every candidate encoding for each tensor: {(name, encoding): metrics}."""
    jobs = [(n, e) for n, encs in candidates.items() for e in encs]
    out: dict[tuple[str, str], dict[str, float]] = {}
    t0 = time.perf_counter()
    cached_name, cached = None, None
    for i, (name, enc_name) in enumerate(jobs):
        _check(cancel)
        yield _progress("What-if", f"{name} as {enc_name}", i, len(jobs), i, len(jobs), t0)
        if name != cached_name:
            cached_name, cached = name, sample_rows(model, name, max_elements)[0]
        assert cached is not None
        enc = get_encoding(enc_name)
        if not enc.accepts_shape(tuple(cached.shape)):
            continue
        decoded = dequantize(quantize(cached, enc))
        m = tensor_metrics(cached, decoded)
        out[(name, enc.name)] = {k: float(v) for k, v in asdict(m).items()} \
            if hasattr(m, "__dataclass_fields__") else dict(m)
    yield _progress("What-if", "", len(jobs), len(jobs), len(jobs), len(jobs), t0)
    return out


def whatif_curve(doc_errors: dict[tuple[str, str], dict[str, float]], names: list[str],
                 model: Any, encodings: Iterable[str]) -> list[tuple[str, float, float, int]]:
    """Per encoding: (encoding, bpw over the tensors that take it, parameter-weighted relative
    error, how many of ``names`` were measured)."""
    rows = []
    for enc_name in encodings:
        enc = get_encoding(enc_name)
        params = bits = 0.0
        err_sum = 0.0
        n = 0
        for name in names:
            m = doc_errors.get((name, enc.name))
            if not m or "rel_error" not in m:
                continue
            info = model.tensor(name)
            params += info.params
            bits += 8.0 * enc.nbytes(tuple(info.shape))
            err_sum += m["rel_error"] * info.params
            n += 1
        if n:
            rows.append((enc.name, bits / params, err_sum / params, n))
    rows.sort(key=lambda r: r[1])
    return rows


# ---- histogram grid ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockGrid:
    """The values one block of a tensor decodes to under an encoding."""

    row: int
    #: first column of the block (or of the sub-block of a k-quant super-block)
    col: int
    size: int
    #: decoded values the block actually uses (sorted)
    used: np.ndarray
    #: the whole ladder of levels when the block's values sit on an evenly spaced grid (legacy
    #: blocks, k-quant sub-blocks), else the used values
    levels: np.ndarray
    #: distance between neighbouring levels (the block's effective scale) when evenly spaced
    step: float | None


#: values that share one scale inside a 256-value k-quant super-block
_SUB_BLOCK = {"Q2_K": 16, "Q3_K": 16, "Q4_K": 32, "Q5_K": 32, "Q6_K": 16}


def block_grid(w: np.ndarray, encoding: str) -> BlockGrid | None:
    """Quantize a typical block (median largest-|w|) and read back the levels it can take.

    For Q4_0 that gives d × (q − 8), q = 0..15: the 16 levels of that block's scale; for a k-quant,
    the ladder of one sub-block (its own scale and minimum). Float encodings have no grid (None).
    """
    enc = get_encoding(encoding)
    if enc.name in ("F32", "F16", "BF16"):
        return None
    w2 = w.reshape(-1, w.shape[-1]) if w.ndim != 2 else w
    if not enc.accepts_shape(tuple(w2.shape)) or w2.size == 0:
        return None
    size = _SUB_BLOCK.get(enc.name, min(enc.elements_per_block, 32))
    if w2.shape[1] % size:
        size = enc.elements_per_block
    blocks = np.abs(w2.reshape(w2.shape[0], -1, size)).max(axis=2)
    flat = np.argsort(blocks, axis=None)[blocks.size // 2]  # the median block: a typical scale
    row, blk = divmod(int(flat), blocks.shape[1])
    col = blk * size
    decoded = dequantize(quantize(np.ascontiguousarray(w2[row:row + 1], dtype=np.float32),
                                  enc))[0]
    used = np.unique(decoded[col:col + size])
    levels, step = used, None
    if used.size >= 2:
        diffs = np.diff(used)
        d = float(diffs.min())
        # Evenly spaced (up to float rounding of the scale): fill in the rungs left unused.
        if d > 0 and np.allclose(diffs / d, np.round(diffs / d), atol=1e-3):
            n = round(float(used[-1] - used[0]) / d)
            if n <= 1024:
                levels = used[0] + d * np.arange(n + 1)
                step = d
    return BlockGrid(row, col, size, used, levels, step)

