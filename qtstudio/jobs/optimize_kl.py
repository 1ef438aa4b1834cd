"""The kl objective: bits where the outputs feel them, checked by a real evaluation.

1. Measure each (tensor, candidate)'s output sensitivity on the calibration windows
   (qtstudio.jobs.sensitivity; cached on disk, resumable).
2. Solve the budgeted choice on those numbers with the same exact solver as the mse objective
   (qtstudio.core.optimize.optimize). **Additivity assumption**: the KL of a plan is taken to be
   the sum of the KLs each of its tensors causes alone. It holds to first order for small,
   independent perturbations and drifts when many tensors are coarse at once (errors compound
   through later blocks), which is why step 3 exists.
3. Check and correct: the solved plan, the largest uniform candidates and llama.cpp presets that
   fit the same budget are all evaluated for real (qtstudio.jobs.eval, full quantized forward
   against the reference on the calibration windows) and the one with the least measured KL is
   kept. The result therefore never has more calibration KL than any rival that was checked, and
   it reports the predicted (additive) KL beside the measured one.

With ``quant=QuantMethod("gptq", ...)`` every planned type is filled by GPTQ: step 1 measures
each candidate's GPTQ values (qtstudio.jobs.optimize_gptq.GPTQCandidates), step 3 runs every
contender through sequential GPTQ before its eval, and the recipe records the method, so
``quantize``/``export --recipe`` reproduce the checked bytes.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np

from qtstudio.calib.data import CalibrationData
from qtstudio.core.model import Model
from qtstudio.core.optimize import (
    DEFAULT_CANDIDATES,
    NODE_LIMIT,
    OptimizeResult,
    budget_for_bpw,
    cost_table,
    optimize,
    uniform_picks,
)
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import QuantMethod, Recipe

from . import CancelToken, Progress
from .eval import calibration_start, eval_job
from .sensitivity import sensitivity_job

#: llama.cpp presets the check compares against (the largest that fit are evaluated)
CHECK_PRESETS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
                 "Q6_K", "Q8_0")
#: how many of the largest fitting presets / uniform candidates the check evaluates
CHECK_PRESET_COUNT = 3
CHECK_UNIFORM_COUNT = 2


def optimize_kl_job(model: Model, *, target_bpw: float | None = None,
                    target_bytes: int | None = None,
                    candidates: Sequence[str] = DEFAULT_CANDIDATES,
                    data: str | Path | CalibrationData | None = None, ctx: int = 512,
                    chunks: int | None = None, method: str = "kl", check: bool = True,
                    cache: bool | Path = True, float_encoding: str = "F32",
                    target_format: str | None = "gguf", threads: int | None = None,
                    allow_requantize: bool = False, node_limit: int = NODE_LIMIT,
                    cancel: CancelToken | None = None, quant: QuantMethod | None = None,
                    gptq_tokens: np.ndarray | None = None, check_memo: dict | None = None,
                    ) -> Generator[Progress, None, OptimizeResult]:
    """``quant``: plain rounding (default) or GPTQ; ``gptq_tokens``: GPTQ's calibration windows
    (default: ``quant.data`` cut as ``quantize --method gptq`` cuts it). ``check_memo``: a dict
    kept by a caller that optimizes one model on the same data and method at several sizes
    (the benchmark); a contender's check is evaluated once per plan across those runs."""
    if (target_bpw is None) == (target_bytes is None):
        raise ValueError("give exactly one of a target bits per weight and a target size")
    quant = quant or QuantMethod()
    gptq = None
    if not quant.is_plain:
        from .optimize_gptq import GPTQSetup

        gptq = GPTQSetup(model, quant, gptq_tokens, threads)
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    table = cost_table(model, candidates, float_encoding=float_encoding,
                       target_format=target_format, objective="kl")
    budget = (budget_for_bpw(target_bpw, table.total_params) if target_bpw is not None
              else int(target_bytes))  # type: ignore[arg-type]
    table.check_budget(budget)
    # threads: the sensitivity job sets torch's count itself
    cd = yield from calibration_start(model, data, ctx=ctx, chunks=chunks, threads=None,
                                      cancel=cancel)
    sens = yield from sensitivity_job(model, table, cd, method=method, cache=cache,
                                      threads=threads, allow_requantize=allow_requantize,
                                      cancel=cancel,
                                      candidates=gptq.candidates() if gptq else None)
    cancel.check()
    total = len(table.tensors)
    yield Progress("solve", "", total, total, 1, 1, time.perf_counter() - start,
                   f"allocating {budget} bytes")
    result = optimize(table, budget, node_limit=node_limit)
    result.sensitivity = sens
    result.chosen = "kl plan"
    result.method = quant
    if check:
        yield from _check_and_correct(model, result, cd, target_format, allow_requantize,
                                      threads, cancel, start, gptq, check_memo)
    result.elapsed = time.perf_counter() - start
    yield Progress("done", "", total, total, 1, 1, result.elapsed, f"{result.avg_bpw:.4f} bpw")
    return result


def _rivals(model: Model, result: OptimizeResult, target_format: str | None
            ) -> list[tuple[str, Recipe, int, list[int] | None]]:
    """(label, recipe, bytes, picks) of the uniform candidates and presets that fit."""
    budget = result.budget
    uniform = sorted((b for b in result.baselines if b.fits), key=lambda b: -b.nbytes)
    out: list[tuple[str, Recipe, int, list[int] | None]] = []
    for b in uniform[:CHECK_UNIFORM_COUNT]:
        picks = uniform_picks(result.table, b.candidate)
        rec = Recipe(overrides={t.name: t.options[p].encoding
                                for t, p in zip(result.table.tensors, picks, strict=True)},
                     float_encoding=result.table.float_encoding, method=result.method,
                     notes=f"optimize kl: uniform {b.candidate} won the eval check")
        out.append((f"uniform {b.candidate}", rec, b.nbytes, picks))
    presets = []
    for name in CHECK_PRESETS:
        rec = Recipe(preset=name, float_encoding=result.table.float_encoding)
        plan = resolve_plan(model, rec, target_format=target_format)
        if plan.total_bytes <= budget:
            presets.append((plan.total_bytes, name, rec))
    for nbytes, name, rec in sorted(presets, key=lambda p: -p[0])[:CHECK_PRESET_COUNT]:
        # spelled out per tensor, like every optimizer answer (the window applies overrides)
        plan = resolve_plan(model, rec, target_format=target_format)
        rec = Recipe(overrides={e.name: e.encoding for e in plan.entries if e.quantizable},
                     float_encoding=result.table.float_encoding, method=result.method,
                     notes=f"optimize kl: preset {name}'s mixture won the eval check")
        out.append((f"preset {name}", rec, nbytes, None))
    return out


def _check_one(model: Model, plan, cd: CalibrationData, gptq, allow_requantize: bool,
               threads: int | None, cancel: CancelToken):
    """(eval result, GPTQ digests or None) of one contender, run to the end here: the check
    reports one step per contender, not the eval's own steps."""
    if gptq is not None:
        ev = gptq.eval_job(plan, cd, allow_requantize=allow_requantize, cancel=cancel)
    else:
        ev = eval_job(model, plan, cd, allow_requantize=allow_requantize, threads=threads,
                      cancel=cancel)
    while True:
        try:
            next(ev)
        except StopIteration as stop:
            out = stop.value
            break
    return out if gptq is not None else (out, None)


def _check_and_correct(model: Model, result: OptimizeResult, cd: CalibrationData,
                       target_format: str | None, allow_requantize: bool,
                       threads: int | None, cancel: CancelToken, start: float,
                       gptq=None, memo: dict | None = None) -> Generator[Progress, None, None]:
    contenders = [("kl plan", result.recipe(), result.total_bytes, result.picks)]
    contenders += _rivals(model, result, target_format)
    params = result.table.total_params
    best = None
    for k, (label, rec, _nb, picks) in enumerate(contenders):
        cancel.check()
        plan = resolve_plan(model, rec, target_format=target_format)
        yield Progress("check", label, k, len(contenders), 0, 0, time.perf_counter() - start,
                       f"eval check {k + 1}/{len(contenders)}: {label}")
        key = tuple((e.name, e.encoding) for e in plan.entries)
        if memo is not None and key in memo:
            r, gptq_info = memo[key]
        else:
            r, gptq_info = _check_one(model, plan, cd, gptq, allow_requantize, threads,
                                      cancel)
            if memo is not None:
                memo[key] = (r, gptq_info)
        entry = {"label": label, "nbytes": plan.total_bytes,
                 "bpw": round(8.0 * plan.total_bytes / params, 4) if params else 0.0,
                 "kl_mean": r.kl_mean}
        if gptq_info is not None:
            entry["gptq_digest"] = gptq_info["digest"]
        if label == "kl plan":
            entry["predicted_kl"] = result.total_error
        result.checks.append(entry)
        if best is None or r.kl_mean < best[0]:
            best = (r.kl_mean, label, rec, plan.total_bytes, picks, gptq_info)
    assert best is not None
    _, label, rec, nbytes, picks, gptq_info = best
    result.chosen = label
    result.gptq_bytes = gptq_info
    if label != "kl plan":
        result.total_bytes = nbytes
        if picks is not None:
            result.picks = list(picks)
            result.total_error = sum(t.options[p].error
                                     for t, p in zip(result.table.tensors, picks, strict=True))
        else:
            result.recipe_override = rec
