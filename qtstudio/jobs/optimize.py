"""The optimize job: check the target, measure every candidate per tensor, solve the allocation.

The target is checked against the smallest reachable size before any weights are read, so an
impossible target fails at once. Measuring holds one tensor at a time (of a big tensor in plain
float storage, only its sampled rows) and checks the cancel token between tensors and between
candidates; solving is quick next to measuring.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path

import numpy as np

from qtstudio.core.model import Model
from qtstudio.core.optimize import (
    DEFAULT_CANDIDATES,
    NODE_LIMIT,
    OBJECTIVES,
    SAMPLE_ELEMENTS,
    CostTable,
    OptimizeResult,
    TensorCosts,
    budget_for_bpw,
    cost_table,
    lookup_imatrix,
    measure_tensor,
    needs_every_row,
    optimize,
    sample_rows,
)
from qtstudio.formats.floats import plain_to_f32

from . import CancelToken, Progress
from .executor import Executor, executor_for
from .worker_source import Stamp, open_source, source_stamp

#: raw bytes scanned at a time when checking a sampled tensor for NaN/Inf
SCAN_BYTES = 32 * 1024 * 1024


def _read_sampled_rows(model: Model, costs: TensorCosts, sample_elements: int,
                       cancel: CancelToken | None,
                       ) -> tuple[np.ndarray, int, bool] | None:
    """(float32 sampled rows, total rows, whole tensor finite) read from the mapped file.

    Only plain float storage is read this way: the sampled rows are converted and the rest is
    scanned for NaN/Inf in bounded chunks, so a big tensor never needs a float32 copy. Returns
    None (load the whole tensor instead) for other storage or when every row is measured.
    """
    info = model.tensor(costs.name)
    if info.dtype not in ("F32", "F16", "BF16") or len(info.shape) < 2:
        return None
    n = info.shape[-1]
    rows = info.params // n
    idx = sample_rows(rows, n, sample_elements)
    if idx is None:
        return None
    raw = model.load_raw(costs.name).reshape(rows, n)
    step = max(1, SCAN_BYTES // max(1, raw.itemsize * n))
    finite = True
    for r0 in range(0, rows, step):
        if cancel is not None:
            cancel.check()
        chunk = raw[r0:r0 + step]
        if info.dtype == "BF16":  # exponent all ones: Inf or NaN
            bad = np.any((chunk & 0x7F80) == 0x7F80)
        else:
            bad = not np.all(np.isfinite(chunk))
        if bad:
            finite = False
            break
    return plain_to_f32(np.ascontiguousarray(raw[idx]), info.dtype), rows, finite


def measure_one(model: Model, costs: TensorCosts, *, imatrix: np.ndarray | None,
                weighted: bool, threads: int | None, sample_elements: int,
                float_encoding: str, cancel: CancelToken | None) -> None:
    """Fill in one tensor's option errors (in place), reading only what it needs."""
    common = {"imatrix": imatrix, "weighted": weighted, "threads": threads,
              "sample_elements": sample_elements, "float_encoding": float_encoding,
              "cancel": cancel}
    sampled = None if needs_every_row(costs) else _read_sampled_rows(
        model, costs, sample_elements, cancel)
    if sampled is None:
        x = model.load(costs.name)
        measure_tensor(costs, x, **common)
    else:
        x, rows, finite = sampled
        measure_tensor(costs, x, total_rows=rows, all_finite=finite, **common)
    del x


def measure_job(model: Model, table: CostTable, *,
                imatrix: Mapping[str, np.ndarray] | None = None, threads: int | None = None,
                sample_elements: int = SAMPLE_ELEMENTS, cancel: CancelToken | None = None,
                executor: Executor | str | None = None,
                ) -> Generator[Progress, None, CostTable]:
    """Fill in the error of every option of ``table`` (in place) and return it.

    With ``executor`` (an Executor or a Ray address) each tensor is measured by a task that
    reads it from the checkpoint itself; the measurements are the same numbers.
    """
    cancel = cancel or CancelToken()
    ex, owned = executor_for(executor, threads=threads)
    try:
        if ex is not None:
            return (yield from _measure_on(ex, model, table, imatrix, sample_elements, cancel))
    finally:
        if owned and ex is not None:
            ex.close()
    start = time.perf_counter()
    total = len(table.tensors)
    sizes = [model.tensor(t.name).nbytes for t in table.tensors]
    bytes_total = sum(sizes)
    done = 0
    weighted = table.objective == "imatrix"
    for i, costs in enumerate(table.tensors):
        cancel.check()
        yield Progress("measure", costs.name, i, total, done, bytes_total,
                       time.perf_counter() - start,
                       f"{len(costs.options)} options, shape {costs.shape}")
        measure_one(model, costs, imatrix=lookup_imatrix(imatrix, costs), weighted=weighted,
                    threads=threads, sample_elements=sample_elements,
                    float_encoding=table.float_encoding, cancel=cancel)
        done += sizes[i]
    return table


def measure_costs(path: str, stamp: Stamp, costs: TensorCosts, imatrix: np.ndarray | None,
                  weighted: bool, threads: int | None, sample_elements: int,
                  float_encoding: str) -> TensorCosts:
    """One tensor's option errors (the filled TensorCosts), as the optimizer measures them."""
    model = open_source(path, stamp)
    measure_one(model, costs, imatrix=imatrix, weighted=weighted, threads=threads,
                sample_elements=sample_elements, float_encoding=float_encoding, cancel=None)
    return costs


def _measure_on(ex: Executor, model: Model, table: CostTable,
                imatrix: Mapping[str, np.ndarray] | None, sample_elements: int,
                cancel: CancelToken) -> Generator[Progress, None, CostTable]:
    start = time.perf_counter()
    path = str(Path(model.path).resolve())
    stamp = source_stamp(path)
    weighted = table.objective == "imatrix"
    tasks = [(path, stamp, costs, lookup_imatrix(imatrix, costs), weighted, ex.task_threads,
              sample_elements, table.float_encoding) for costs in table.tensors]
    total = len(tasks)
    for ev in ex.ordered(measure_costs, tasks, cancel, [c.name for c in table.tensors]):
        name = ""
        if ev.index is not None:
            # the worker's copy comes back filled in; the table keeps its own objects
            vars(table.tensors[ev.index]).update(vars(ev.result))
            name = table.tensors[ev.index].name
        yield Progress("measure", name, ev.finished, total, ev.finished, total,
                       time.perf_counter() - start, f"{ev.finished}/{total} tensors measured "
                                                    f"on {ex.name}")
    return table


def optimize_job(model: Model, *, target_bpw: float | None = None,
                 target_bytes: int | None = None,
                 candidates: Sequence[str] = DEFAULT_CANDIDATES,
                 imatrix: Mapping[str, np.ndarray] | None = None, objective: str | None = None,
                 float_encoding: str = "F32", target_format: str | None = "gguf",
                 threads: int | None = None, sample_elements: int = SAMPLE_ELEMENTS,
                 node_limit: int = NODE_LIMIT, cancel: CancelToken | None = None,
                 executor: Executor | str | None = None,
                 data=None, ctx: int = 512, chunks: int | None = None,
                 sensitivity_method: str = "kl", check: bool = True, cache=True,
                 allow_requantize: bool = False, quant=None, gptq_tokens=None,
                 check_memo: dict | None = None,
                 ) -> Generator[Progress, None, OptimizeResult]:
    """Yield progress; return the :class:`OptimizeResult` (its ``.recipe()`` is the answer).

    Exactly one of ``target_bpw`` (over all parameters, as plans count it) and ``target_bytes``.
    ``objective`` defaults to "imatrix" when an importance matrix is given, else "mse".
    Raises :class:`~qtstudio.core.optimize.InfeasibleTargetError` before measuring anything when the
    target is below the smallest reachable size. ``quant`` (a recipe QuantMethod) other than
    plain rounding takes the kl objective, which measures and checks with that method.
    """
    if (target_bpw is None) == (target_bytes is None):
        raise ValueError("give exactly one of a target bits per weight and a target size")
    objective = objective or ("imatrix" if imatrix else "mse")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    if quant is not None and not quant.is_plain and objective != "kl":
        raise ValueError(f"--method {quant.name} needs --objective kl: the {objective} "
                         "objective measures plain rounding's weight error")
    if objective == "kl":
        # measured output sensitivity on calibration data (``data``: a text file, None for the
        # embedded corpus, or prepared CalibrationData), checked by a real eval
        from .optimize_kl import optimize_kl_job

        return (yield from optimize_kl_job(
            model, target_bpw=target_bpw, target_bytes=target_bytes, candidates=candidates,
            data=data, ctx=ctx, chunks=chunks, method=sensitivity_method, check=check,
            cache=cache, float_encoding=float_encoding, target_format=target_format,
            threads=threads, allow_requantize=allow_requantize, node_limit=node_limit,
            cancel=cancel, quant=quant, gptq_tokens=gptq_tokens, check_memo=check_memo))
    if objective == "imatrix" and not imatrix:
        raise ValueError("the imatrix objective needs an importance matrix (--imatrix FILE)")
    if threads is not None and threads < 1:
        raise ValueError("threads must be at least 1")
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    table = cost_table(model, candidates, float_encoding=float_encoding,
                       target_format=target_format, objective=objective)
    budget = (budget_for_bpw(target_bpw, table.total_params) if target_bpw is not None
              else int(target_bytes))  # type: ignore[arg-type]
    table.check_budget(budget)
    yield from measure_job(model, table, imatrix=imatrix, threads=threads,
                           sample_elements=sample_elements, cancel=cancel, executor=executor)
    cancel.check()
    total = len(table.tensors)
    yield Progress("solve", "", total, total, 1, 1, time.perf_counter() - start,
                   f"allocating {budget} bytes")
    result = optimize(table, budget, node_limit=node_limit)
    result.elapsed = time.perf_counter() - start
    yield Progress("done", "", total, total, 1, 1, result.elapsed,
                   f"{result.avg_bpw:.4f} bpw")
    return result
