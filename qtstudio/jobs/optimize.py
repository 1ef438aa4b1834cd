"""The optimize job: check the target, measure every candidate per tensor, solve the allocation.

The target is checked against the smallest reachable size before any weights are read, so an
impossible target fails at once. Measuring holds one tensor at a time and checks the cancel
token between tensors and between candidates; solving is quick next to measuring.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence

import numpy as np

from qtstudio.core.model import Model
from qtstudio.core.optimize import (
    DEFAULT_CANDIDATES,
    NODE_LIMIT,
    OBJECTIVES,
    SAMPLE_ELEMENTS,
    CostTable,
    OptimizeResult,
    budget_for_bpw,
    cost_table,
    lookup_imatrix,
    measure_tensor,
    optimize,
)

from . import CancelToken, Progress


def measure_job(model: Model, table: CostTable, *,
                imatrix: Mapping[str, np.ndarray] | None = None, threads: int | None = None,
                sample_elements: int = SAMPLE_ELEMENTS, cancel: CancelToken | None = None,
                ) -> Generator[Progress, None, CostTable]:
    """Fill in the error of every option of ``table`` (in place) and return it."""
    cancel = cancel or CancelToken()
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
        x = model.load(costs.name)
        w = lookup_imatrix(imatrix, costs)
        measure_tensor(costs, x, imatrix=w, weighted=weighted, threads=threads,
                       sample_elements=sample_elements, float_encoding=table.float_encoding,
                       cancel=cancel)
        del x
        done += sizes[i]
    return table


def optimize_job(model: Model, *, target_bpw: float | None = None,
                 target_bytes: int | None = None,
                 candidates: Sequence[str] = DEFAULT_CANDIDATES,
                 imatrix: Mapping[str, np.ndarray] | None = None, objective: str | None = None,
                 float_encoding: str = "F32", target_format: str | None = "gguf",
                 threads: int | None = None, sample_elements: int = SAMPLE_ELEMENTS,
                 node_limit: int = NODE_LIMIT, cancel: CancelToken | None = None,
                 ) -> Generator[Progress, None, OptimizeResult]:
    """Yield progress; return the :class:`OptimizeResult` (its ``.recipe()`` is the answer).

    Exactly one of ``target_bpw`` (over all parameters, as plans count it) and ``target_bytes``.
    ``objective`` defaults to "imatrix" when an importance matrix is given, else "mse".
    Raises :class:`~qtstudio.core.optimize.InfeasibleTargetError` before measuring anything when the
    target is below the smallest reachable size.
    """
    if (target_bpw is None) == (target_bytes is None):
        raise ValueError("give exactly one of a target bits per weight and a target size")
    objective = objective or ("imatrix" if imatrix else "mse")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
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
                           sample_elements=sample_elements, cancel=cancel)
    cancel.check()
    total = len(table.tensors)
    yield Progress("solve", "", total, total, 1, 1, time.perf_counter() - start,
                   f"allocating {budget} bytes")
    result = optimize(table, budget, node_limit=node_limit)
    result.elapsed = time.perf_counter() - start
    yield Progress("done", "", total, total, 1, 1, result.elapsed,
                   f"{result.avg_bpw:.4f} bpw")
    return result
