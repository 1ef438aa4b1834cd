"""The what-if job: the error each candidate encoding would give a tensor, before choosing.

Large tensors are measured on evenly spaced rows (the error estimate settles long before a whole
100M-parameter embedding is read), and :func:`whatif_curve` folds the per-tensor errors into one
point per encoding: bits per weight against parameter-weighted relative error.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from qtstudio.core.encodings import get_encoding
from qtstudio.core.metrics import tensor_metrics
from qtstudio.core.qtensor import dequantize, quantize

from . import CancelToken, Progress
from .executor import Executor, executor_for
from .worker_source import Stamp, open_source, source_stamp

#: values measured per tensor at most; larger tensors are sampled by rows
WHATIF_MAX_ELEMENTS = 1 << 21

#: {(tensor name, encoding name): metrics}, the what-if job's result
WhatIfErrors = dict[tuple[str, str], dict[str, float]]


def sample_rows(model: Any, name: str, max_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_elements`` values of a tensor as float32 rows [k, n], evenly spread over its
    rows, and the row indices they came from. Plain-typed tensors are sampled from their
    memory-mapped raw view, so a 2 GB embedding never becomes a 2 GB array."""
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


def whatif_metrics(sample: np.ndarray, enc_name: str) -> tuple[str, dict[str, float]] | None:
    """(encoding name, error metrics) of one encoding on a tensor's sampled rows, or None
    when its rows cannot take that encoding."""
    enc = get_encoding(enc_name)
    if not enc.accepts_shape(tuple(sample.shape)):
        return None
    m = tensor_metrics(sample, dequantize(quantize(sample, enc)))
    return enc.name, {k: float(v) for k, v in asdict(m).items()}


def whatif_job(model: Any, candidates: dict[str, list[str]], *,
               max_elements: int = WHATIF_MAX_ELEMENTS, cancel: CancelToken | None = None,
               executor: Executor | str | None = None,
               ) -> Generator[Progress, None, WhatIfErrors]:
    """Error of every candidate encoding for each tensor; encodings a tensor's rows cannot take
    are left out of the result. With ``executor`` (an Executor or a Ray address) each tensor
    is one task that samples it from the checkpoint itself."""
    if max_elements < 1:
        raise ValueError("what-if: max_elements must be at least 1")
    ex, owned = executor_for(executor)
    try:
        if ex is not None:
            return (yield from _whatif_on(ex, model, candidates, max_elements, cancel))
    finally:
        if owned and ex is not None:
            ex.close()
    jobs = [(n, e) for n, encs in candidates.items() for e in encs]
    out: WhatIfErrors = {}
    t0 = time.perf_counter()
    cached_name, cached = None, None
    for i, (name, enc_name) in enumerate(jobs):
        if cancel is not None:
            cancel.check()
        yield Progress("What-if", f"{name} as {enc_name}", i, len(jobs), i, len(jobs),
                       time.perf_counter() - t0)
        if name != cached_name:  # jobs are grouped by tensor: sample each once
            cached_name, cached = name, sample_rows(model, name, max_elements)[0]
        assert cached is not None
        got = whatif_metrics(cached, enc_name)
        if got is not None:
            out[(name, got[0])] = got[1]
    yield Progress("done", "", len(jobs), len(jobs), len(jobs), len(jobs),
                   time.perf_counter() - t0)
    return out


def whatif_tensor(path: str, stamp: Stamp, name: str, encodings: list[str],
                  max_elements: int) -> list[tuple[str, dict[str, float]] | None]:
    """The error of each encoding on one tensor's sampled rows (None where it does not fit)."""
    model = open_source(path, stamp)
    sample = sample_rows(model, name, max_elements)[0]
    return [whatif_metrics(sample, e) for e in encodings]


def _whatif_on(ex: Executor, model: Any, candidates: dict[str, list[str]], max_elements: int,
               cancel: CancelToken | None) -> Generator[Progress, None, WhatIfErrors]:
    t0 = time.perf_counter()
    path = str(Path(model.path).resolve())
    stamp = source_stamp(path)
    names = [n for n, encs in candidates.items() if encs]
    tasks = [(path, stamp, n, list(candidates[n]), max_elements) for n in names]
    out: WhatIfErrors = {}
    n_tasks = len(tasks)
    for ev in ex.ordered(whatif_tensor, tasks, cancel, names):
        name = ""
        if ev.index is not None:
            name = names[ev.index]
            for got in ev.result:
                if got is not None:
                    out[(name, got[0])] = got[1]
        yield Progress("What-if", name, ev.finished, n_tasks, ev.finished, n_tasks,
                       time.perf_counter() - t0, f"{ev.finished}/{n_tasks} tensors on {ex.name}")
    yield Progress("done", "", n_tasks, n_tasks, n_tasks, n_tasks, time.perf_counter() - t0)
    return out


def whatif_curve(errors: WhatIfErrors, names: list[str], model: Any,
                 encodings: Iterable[str]) -> list[tuple[str, float, float, int]]:
    """Per encoding, sorted by size: (encoding, bpw over the tensors that take it,
    parameter-weighted relative error, how many of ``names`` were measured)."""
    rows = []
    for enc_name in encodings:
        enc = get_encoding(enc_name)
        rel = [(name, m["rel_error"]) for name in names
               if (m := errors.get((name, enc.name))) and "rel_error" in m]
        if rel:
            infos = [model.tensor(name) for name, _ in rel]
            bits = sum(8.0 * enc.nbytes(tuple(info.shape)) for info in infos)
            rows.append((enc.name, bits / sum(info.params for info in infos),
                         _param_weighted(model, rel), len(rel)))
    rows.sort(key=lambda r: r[1])
    return rows


def _param_weighted(model: Any, values: list[tuple[str, float]]) -> float | None:
    """The mean of (tensor name, value) ``values`` weighted by each tensor's parameter count
    (None for no tensors): a curve's error over a selection, as if measured on all its weights
    at once."""
    params = total = 0.0
    for name, value in values:
        p = model.tensor(name).params
        params += p
        total += float(value) * p
    return total / params if params else None


# ---- output error: the what-if measured on calibration data ------------------------------
#: {(tensor name, encoding name): {"out_err": relative block output error or None (the
#: embedding and head have no block output), "kl": mean KL with that tensor alone quantized}}
OutputErrors = dict[tuple[str, str], dict[str, float | None]]


def output_table(model: Any, candidates: dict[str, list[str]]) -> Any:
    """A cost table over the chosen quantizable tensors and the encodings each accepts, for the
    sensitivity job (norms and other float-only tensors are left out, as the optimizer leaves
    them). Its candidate list is the union of the encodings, so what-ifs with the same
    encodings over different selections share the measurement cache (an optimize keys its own:
    its options follow the target format's fallbacks, these are the encodings as asked)."""
    from qtstudio.core.optimize import CostTable, Option, TensorCosts

    tensors, union = [], {}
    for name, encs in candidates.items():
        info = model.tensor(name)
        if not info.quantizable:
            continue
        shape = tuple(int(s) for s in info.shape)
        opts = {}
        for e in encs:
            enc = get_encoding(e)
            if enc.accepts_shape(shape) and enc.name not in opts:
                opts[enc.name] = Option(enc.name, int(enc.nbytes(shape)), (enc.name,))
                union[enc.name] = None
        if opts:
            tensors.append(TensorCosts(name, shape, int(info.params),
                                       sorted(opts.values(), key=lambda o: (o.nbytes, o.encoding)),
                                       gguf_name=info.gguf_name))
    if not tensors:
        raise ValueError(f"{model.path}: no selected quantizable tensor can take any of the "
                         "encodings")
    return CostTable(tensors, 0, int(model.total_params), sorted(union), target_format=None,
                     objective="kl", source=str(model.path))


def output_error_job(model: Any, candidates: dict[str, list[str]],
                     data: str | Path | None = None, *, ctx: int = 512,
                     chunks: int | None = None, cache: bool | Path = True,
                     allow_requantize: bool = False, threads: int | None = None,
                     cancel: CancelToken | None = None) -> Generator[Progress, None, Any]:
    """The sensitivity measurement (method kl) of each chosen tensor alone at each encoding, on
    ``data`` (a text file; None: the default corpus). Returns the SensitivityResult: per option
    its KL (``error``) and ``out_err``; :func:`output_errors` flattens it."""
    from .eval import calibration_start
    from .sensitivity import sensitivity_job

    cancel = cancel or CancelToken()
    table = output_table(model, candidates)
    cd = yield from calibration_start(model, data, ctx=ctx, chunks=chunks, threads=None,
                                      cancel=cancel)
    sens = yield from sensitivity_job(model, table, cd, method="kl", cache=cache,
                                      threads=threads, allow_requantize=allow_requantize,
                                      cancel=cancel)
    return sens


def output_errors(sens: Any) -> OutputErrors:
    """(tensor, encoding) -> {"out_err", "kl"} of a SensitivityResult (what-if or optimize)."""
    out: OutputErrors = {}
    for t in sens.table.tensors:
        oe = sens.out_err.get(t.name, {})
        for o in t.options:
            out[(t.name, o.encoding)] = {"out_err": oe.get(o.encoding), "kl": float(o.error)}
    return out


def output_curve(output: OutputErrors, names: list[str], model: Any,
                 encodings: Iterable[str]) -> dict[str, dict[str, float | int | None]]:
    """Per encoding over ``names``: the parameter-weighted relative block output error (over
    the tensors that have a block output), the summed KL (the additive prediction for giving all
    of them that encoding) and how many tensors were measured."""
    rows: dict[str, dict[str, float | int | None]] = {}
    for enc_name in encodings:
        enc = get_encoding(enc_name)
        measured = [(name, m) for name in names
                    if (m := output.get((name, enc.name))) is not None]
        if measured:
            out_err = [(name, m["out_err"]) for name, m in measured if m["out_err"] is not None]
            rows[enc.name] = {"out_err": _param_weighted(model, out_err),
                              "kl": sum(float(m["kl"] or 0.0) for _, m in measured),
                              "tensors": len(measured)}
    return rows


def whatif_data_job(model: Any, candidates: dict[str, list[str]],
                    data: str | Path | None = None, *, ctx: int = 512,
                    chunks: int | None = None, cache: bool | Path = True,
                    allow_requantize: bool = False, max_elements: int = WHATIF_MAX_ELEMENTS,
                    executor: Executor | str | None = None, cancel: CancelToken | None = None,
                    ) -> Generator[Progress, None, tuple[WhatIfErrors, Any]]:
    """The window's what-if with output error: the weight errors, then the measurement on
    ``data``. Returns (weight errors, SensitivityResult)."""
    errors = yield from whatif_job(model, candidates, max_elements=max_elements, cancel=cancel,
                                   executor=executor)
    sens = yield from output_error_job(model, candidates, data, ctx=ctx, chunks=chunks,
                                       cache=cache, allow_requantize=allow_requantize,
                                       cancel=cancel)
    return errors, sens
