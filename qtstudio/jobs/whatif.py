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
        params = bits = err_sum = 0.0
        n = 0
        for name in names:
            m = errors.get((name, enc.name))
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
