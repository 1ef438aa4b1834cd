"""The quantize job: encode every tensor of a plan, decode it again, and measure the error.

One tensor is held at a time (its float32 rows are read from the memory-mapped checkpoint), and
large tensors are processed in row chunks so the job can stop between them. Tensors with NaN or
Inf are reported, not quantized, and do not stop the job.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qtstudio.core.encodings import get_encoding
from qtstudio.core.metrics import MetricsAccumulator
from qtstudio.core.model import Model
from qtstudio.core.plan import Plan, PlanEntry
from qtstudio.core.qtensor import QTensor

from . import CancelToken, Progress, run_job
from .executor import Executor, executor_for
from .worker_source import Stamp, open_source, source_stamp

#: float32 bytes per row chunk: big tensors are split so cancel answers within a fraction of a s
CHUNK_BYTES = 32 * 1024 * 1024

Sink = Callable[[PlanEntry, QTensor], None]


@dataclass
class QuantizeReport:
    tensors: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    preset: str | None = None
    model: str = ""
    _e2: float = 0.0
    _s2: float = 0.0

    @property
    def nonfinite(self) -> dict[str, int]:
        return {t["name"]: t["nonfinite"] for t in self.tensors if t["nonfinite"]}

    def totals(self) -> dict[str, Any]:
        params = sum(t["params"] for t in self.tensors)
        nbytes = sum(t["nbytes"] for t in self.tensors)
        snr = 10 * math.log10(self._s2 / self._e2) if self._e2 > 0 and self._s2 > 0 else None
        return {
            "n_tensors": len(self.tensors),
            "total_params": params,
            "total_bytes": nbytes,
            "original_bytes": sum(t["source_nbytes"] for t in self.tensors),
            "avg_bpw": round(8.0 * nbytes / params, 4) if params else 0.0,
            "overall_snr_db": snr,
            "overall_rel_error": (math.sqrt(self._e2 / self._s2) if self._s2 > 0 else None),
            "n_nonfinite_tensors": len(self.nonfinite),
            "elapsed": round(self.elapsed, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "preset": self.preset, "tensors": self.tensors,
                "totals": self.totals()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")


def _imatrix_for(imatrix: Mapping[str, np.ndarray] | None, entry: PlanEntry,
                 ) -> np.ndarray | None:
    if not imatrix:
        return None
    w = imatrix.get(entry.name)
    if w is None and entry.gguf_name:
        w = imatrix.get(entry.gguf_name)
    if w is None or np.shape(w) != (entry.shape[-1],):
        return None
    return np.ascontiguousarray(w, dtype=np.float32)


def quantize_one(model: Model, entry: PlanEntry, imatrix: np.ndarray | None,
                 threads: int | None, chunk_bytes: int, keep_data: bool,
                 cancel: CancelToken | None,
                 ) -> Generator[tuple[int, int, int], None, tuple[dict[str, Any], float, float,
                                                            np.ndarray | None]]:
    """Encode, decode and measure one tensor in row chunks; yields (first row, end row, rows)
    after each chunk of a tensor that needs several, returns (report row, squared error,
    squared signal, encoded data when ``keep_data``)."""
    info = model.tensor(entry.name)
    t0 = time.perf_counter()
    row: dict[str, Any] = {
        "name": entry.name, "gguf_name": entry.gguf_name, "shape": list(entry.shape),
        "source_dtype": entry.source_dtype, "encoding": entry.encoding,
        "requested": entry.requested, "fallback_from": entry.fallback_from,
        "params": entry.params, "nbytes": entry.nbytes, "source_nbytes": info.nbytes,
        "bpw": round(entry.bpw, 4), "nonfinite": 0, "error": None,
        "rmse": None, "rel_error": None, "snr_db": None, "cosine": None, "max_abs": None,
    }
    e2 = s2 = 0.0
    data = None
    x = model.load(entry.name)
    n = x.shape[-1] if x.ndim else 1
    x2 = x.reshape(-1, n)
    bad = int(x2.size - np.count_nonzero(np.isfinite(x2)))
    if bad:
        row["nonfinite"] = bad
        row["error"] = f"{bad} non-finite values (NaN/Inf); tensor left unquantized"
    else:
        enc = get_encoding(entry.encoding)
        w = imatrix
        acc = MetricsAccumulator(n, w if w is not None else None)
        step = max(1, chunk_bytes // max(1, n * 4))
        if getattr(enc, "needs_whole_tensor", False):
            step = max(1, x2.shape[0])  # per-tensor statistics: one chunk
        parts: list[np.ndarray] = []
        for r0 in range(0, x2.shape[0], step):
            if cancel is not None:
                cancel.check()
            chunk = np.ascontiguousarray(x2[r0:r0 + step])
            q = enc.quantize_rows(chunk, imatrix=w, threads=threads)
            acc.update(chunk, enc.dequantize_rows(q, n, threads=threads))
            if keep_data:
                parts.append(q)
            if x2.shape[0] > step:
                yield r0, min(x2.shape[0], r0 + step), x2.shape[0]
        m = acc.result()
        row.update({k: v for k, v in m.to_dict().items()})
        e2, s2 = acc.e2, acc.s2
        if keep_data:
            data = np.concatenate(parts) if len(parts) > 1 else parts[0]
    del x, x2
    row["seconds"] = round(time.perf_counter() - t0, 4)
    return row, e2, s2, data


def quantize_job(model: Model, plan: Plan, *, imatrix: Mapping[str, np.ndarray] | None = None,
                 threads: int | None = None, cancel: CancelToken | None = None,
                 sink: Sink | None = None, chunk_bytes: int = CHUNK_BYTES,
                 executor: Executor | str | None = None,
                 ) -> Generator[Progress, None, QuantizeReport]:
    """Yield progress per tensor (and per row chunk); return the :class:`QuantizeReport`.

    ``sink``, when given, receives each tensor's encoded data as a QTensor (exporters use it).
    With ``executor`` (an Executor or a Ray address) each tensor is one task that reads it from
    the checkpoint itself; the report and the data are the same.
    """
    cancel = cancel or CancelToken()
    ex, owned = executor_for(executor, threads=threads)
    try:
        if ex is not None:
            return (yield from _quantize_on(ex, model, plan, imatrix, cancel, sink,
                                            chunk_bytes))
    finally:
        if owned and ex is not None:
            ex.close()
    start = time.perf_counter()
    report = QuantizeReport(preset=plan.preset, model=str(model.path))
    entries = plan.entries
    total = len(entries)
    bytes_total = sum(model.tensor(e.name).nbytes for e in entries)
    done = 0
    for index, entry in enumerate(entries):
        cancel.check()
        info = model.tensor(entry.name)
        yield Progress("quantize", entry.name, index, total, done, bytes_total,
                       time.perf_counter() - start, f"{entry.encoding} {info.shape}")
        one = quantize_one(model, entry, _imatrix_for(imatrix, entry), threads, chunk_bytes,
                           sink is not None, cancel)
        while True:
            try:
                r0, r1, rows = next(one)
            except StopIteration as stop:
                row, e2, s2, data = stop.value
                break
            yield Progress("quantize", entry.name, index, total,
                           done + info.nbytes * r1 // rows, bytes_total,
                           time.perf_counter() - start, f"rows {r0}-{r1} of {rows}")
        _add_row(report, entry, row, e2, s2, data, sink)
        done += info.nbytes
    report.elapsed = time.perf_counter() - start
    yield Progress("done", "", total, total, bytes_total, bytes_total, report.elapsed,
                   f"{total} tensors")
    return report


def _add_row(report: QuantizeReport, entry: PlanEntry, row: dict[str, Any], e2: float,
             s2: float, data: np.ndarray | None, sink: Sink | None) -> None:
    report._e2 += e2
    report._s2 += s2
    if sink is not None and data is not None:
        sink(entry, QTensor(data, entry.shape, get_encoding(entry.encoding)))
    report.tensors.append(row)


def quantize_tensor(path: str, stamp: Stamp, entry: Any, imatrix: np.ndarray | None,
                    threads: int | None, chunk_bytes: int, keep_data: bool) -> tuple:
    """(report row, squared error, squared signal, encoded bytes or None) of one tensor."""
    model = open_source(path, stamp)
    return run_job(quantize_one(model, entry, imatrix, threads, chunk_bytes, keep_data, None))


def _quantize_on(ex: Executor, model: Model, plan: Plan,
                 imatrix: Mapping[str, np.ndarray] | None, cancel: CancelToken,
                 sink: Sink | None, chunk_bytes: int,
                 ) -> Generator[Progress, None, QuantizeReport]:
    start = time.perf_counter()
    report = QuantizeReport(preset=plan.preset, model=str(model.path))
    path = str(Path(model.path).resolve())
    stamp = source_stamp(path)
    entries = plan.entries
    total = len(entries)
    bytes_total = sum(model.tensor(e.name).nbytes for e in entries)
    tasks = [(path, stamp, e, _imatrix_for(imatrix, e), ex.task_threads, chunk_bytes,
              sink is not None) for e in entries]
    done = 0
    for ev in ex.ordered(quantize_tensor, tasks, cancel, [e.name for e in entries]):
        name = ""
        if ev.index is not None:
            entry = entries[ev.index]
            name = entry.name
            _add_row(report, entry, *ev.result, sink)
            done += model.tensor(name).nbytes
        yield Progress("quantize", name, ev.finished, total, done, bytes_total,
                       time.perf_counter() - start, f"{ev.finished}/{total} tensors done on "
                                                    f"{ex.name}")
    report.elapsed = time.perf_counter() - start
    yield Progress("done", "", total, total, bytes_total, bytes_total, report.elapsed,
                   f"{total} tensors")
    return report
