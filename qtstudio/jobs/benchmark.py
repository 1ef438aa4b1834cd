"""The benchmark job: time each layer's weights in their planned encoding.

For an encoding the native library decodes, the quantized path is ``qmatmul(x, W)`` for a small
batch of activations and the reference is the same product in float32 through numpy's BLAS, both
on the same number of threads. Encodings without a native kernel (the per-tensor / per-channel
INT8 family has no ggml type) are timed as a quantize + dequantize round trip against a float32
copy instead, and labelled so, so nobody reads that as a matmul speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from qtstudio.core.encodings import Encoding, get_encoding
from qtstudio.core.qtensor import dequantize, qmatmul, quantize
from qtstudio.kernels.api import native_type

from . import CancelToken, Progress

#: start of the ``method`` text of results timed through the native kernel
QMATMUL = "qmatmul vs float32 matmul (numpy)"
#: start of the ``method`` text of results timed as a codec round trip
CODEC = "quantize + dequantize vs float32 copy"


@dataclass(frozen=True)
class BenchResult:
    name: str
    encoding: str
    shape: tuple[int, ...]
    #: how the two times were taken (starts with QMATMUL or CODEC)
    method: str
    #: best time of the quantized path (qmatmul, or quantize + dequantize)
    seconds: float
    #: best time of the float32 reference (matmul, or a copy for the codec round trip)
    float_seconds: float
    batch: int = 8
    threads: int = 1

    @property
    def speedup(self) -> float:
        return self.float_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def native(self) -> bool:
        return self.method.startswith(QMATMUL)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["speedup"] = self.speedup
        return d


def has_native_matmul(enc: Encoding) -> bool:
    """Whether qmatmul can run on weights in ``enc`` (plugins and the INT8 family cannot)."""
    nt = native_type(enc.ggml_type) if enc.ggml_type is not None else None
    return nt is not None and nt.can_dequantize


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` calls after one warm-up (thread start-up, cold caches)."""
    fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def benchmark_job(model: Any, plan: Any, names: list[str], *, batch: int = 8, repeats: int = 3,
                  threads: int = 1, cancel: CancelToken | None = None,
                  ) -> Generator[Progress, None, list[BenchResult]]:
    """Time each of ``names`` in its planned encoding; vectors (norms, biases) are skipped.

    One thread each by default: a kernel-against-kernel comparison that stays stable on a busy
    machine. The float32 side is held to the same thread count through threadpoolctl, since
    numpy's BLAS would otherwise use every core.
    """
    if batch < 1 or repeats < 1 or threads < 1:
        raise ValueError("benchmark: batch, repeats and threads must be at least 1")
    matmul_method = (f"{QMATMUL}, {threads} thread{'s' if threads > 1 else ''} each, "
                     f"batch of {batch} activations")
    codec_method = f"{CODEC} (no native qmatmul for this encoding)"
    rng = np.random.default_rng(0)
    total_bytes = sum(model.tensor(n).nbytes for n in names)
    done = 0
    t0 = time.perf_counter()
    out: list[BenchResult] = []
    with threadpool_limits(limits=threads, user_api="blas"):
        for i, name in enumerate(names):
            if cancel is not None:
                cancel.check()
            info = model.tensor(name)
            yield Progress("Benchmark", name, i, len(names), done, total_bytes,
                           time.perf_counter() - t0)
            enc = get_encoding(plan.entry(name).encoding)
            if len(info.shape) < 2 or not enc.accepts_shape(tuple(info.shape)):
                done += info.nbytes
                continue
            w = np.ascontiguousarray(model.load(name), dtype=np.float32)
            w2 = w.reshape(-1, w.shape[-1])
            if has_native_matmul(enc):
                qt = quantize(w2, enc)
                x = rng.standard_normal((batch, w2.shape[1])).astype(np.float32)
                seconds = best_time(lambda qt=qt, x=x: qmatmul(x, qt, threads=threads), repeats)
                float_seconds = best_time(lambda x=x, w2=w2: x @ w2.T, repeats)
                method = matmul_method
            else:
                seconds = best_time(lambda w2=w2, enc=enc: dequantize(quantize(w2, enc)), repeats)
                float_seconds = best_time(lambda w2=w2: w2.copy(), repeats)
                method = codec_method
            out.append(BenchResult(name, enc.name, tuple(info.shape), method, seconds,
                                   float_seconds, batch, threads))
            done += info.nbytes
    yield Progress("done", "", len(names), len(names), total_bytes, total_bytes,
                   time.perf_counter() - t0)
    return out
