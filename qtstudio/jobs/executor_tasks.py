"""The task functions executors run, and the worker's view of the checkpoint.

Each task is a top-level function of small arguments: the checkpoint's path and its stamp (sizes
and modification times, so a worker that sees a different file at that path says so instead of
producing different bytes), names, encodings, row spans and, where the job has one, a
tensor's importance vector. The worker opens the checkpoint itself (memory-mapped, kept open
for its next tasks) and returns encoded bytes or measurements. Every function calls the same
code as the job's in-process loop, so results are identical wherever they run.

New fan-out jobs (calibration windows, GPTQ blocks) add their task function here, in the same
shape: ``fn(path, stamp, ...) -> small result``, driven by ``executor.ordered``.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .executor import ClusterError

#: checkpoints a worker keeps open between tasks (a job uses one; a second avoids thrashing)
_KEEP_OPEN = 2
_open: OrderedDict[tuple[str, tuple], Any] = OrderedDict()
#: the float rows of the last transformed tensor (llama q/k row order) this worker built
_rows_cache: dict[tuple[str, str], np.ndarray] = {}

Stamp = tuple[tuple[str, int, int], ...]


def source_stamp(path: str | Path) -> Stamp:
    """(name, size, mtime_ns) of the checkpoint file and the weight and config files beside it:
    what a worker compares before trusting that its copy is the driver's."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "no such file or folder", str(p))
    files = [p] if p.is_file() else []
    folder = p if p.is_dir() else p.parent
    files += sorted(f for f in folder.iterdir() if f.is_file() and f != p and f.suffix in (
        ".safetensors", ".bin", ".gguf", ".json", ".pt", ".pth"))
    out = []
    for f in files:
        st = f.stat()
        out.append((f.name, int(st.st_size), int(st.st_mtime_ns)))
    return tuple(out)


def open_source(path: str, stamp: Stamp) -> Any:
    """The checkpoint at ``path``, opened once per worker and checked against the driver's."""
    from qtstudio.formats import open_model

    key = (path, stamp)
    model = _open.get(key)
    if model is not None:
        _open.move_to_end(key)
        return model
    host = socket.gethostname()
    try:
        mine = source_stamp(path)
    except OSError as exc:
        raise ClusterError(f"worker on {host} cannot read {path} ({exc.strerror or exc}); the "
                           "checkpoint must be on storage every node reaches at the same path"
                           ) from None
    if mine != stamp:
        raise ClusterError(f"worker on {host} sees a different checkpoint at {path} (sizes or "
                           "modification times differ from the driver's copy)")
    model = open_model(path)
    _open[key] = model
    while len(_open) > _KEEP_OPEN:
        _, old = _open.popitem(last=False)
        _rows_cache.clear()
        old.close()
    return model


# --- export -------------------------------------------------------------------------------
def export_span(path: str, stamp: Stamp, entry: Any, out_name: str, enc_name: str,
                shape: tuple[int, ...], transform: Any, r0: int, r1: int,
                weights: np.ndarray | None, threads: int | None) -> np.ndarray:
    """Rows [r0, r1) of one tensor, encoded as the GGUF export writes them."""
    from qtstudio.core.encodings import get_encoding
    from qtstudio.export._pages import release_pages
    from qtstudio.export.gguf import _encode_span, _float_rows, _Item

    model = open_source(path, stamp)
    item = _Item(entry, out_name, get_encoding(enc_name), tuple(shape), transform)
    if transform is not None:
        # the whole tensor is reordered before its rows are taken: keep it for the next spans
        key = (path, entry.name)
        rows = _rows_cache.get(key)
        if rows is None:
            _rows_cache.clear()
            _, _, rows_of = _float_rows(model, item)
            rows = rows_of(0, int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1
                           else 1)
            _rows_cache[key] = rows
        return _encode_span(rows[r0:r1], item, weights, threads, r0)
    raw, raw_rows, rows_of = _float_rows(model, item)
    piece = _encode_span(rows_of(r0, r1), item, weights, threads, r0)
    if raw_rows is not None:
        release_pages(raw_rows[r0:r1])
    elif raw is not None:
        release_pages(raw)
    return np.ascontiguousarray(piece).view(np.uint8).reshape(-1)


# --- optimize ------------------------------------------------------------------------------
def measure_costs(path: str, stamp: Stamp, costs: Any, imatrix: np.ndarray | None,
                  weighted: bool, threads: int | None, sample_elements: int,
                  float_encoding: str) -> Any:
    """One tensor's option errors (the filled TensorCosts), as the optimizer measures them."""
    from .optimize import measure_one

    model = open_source(path, stamp)
    measure_one(model, costs, imatrix=imatrix, weighted=weighted, threads=threads,
                sample_elements=sample_elements, float_encoding=float_encoding, cancel=None)
    return costs


# --- what-if -------------------------------------------------------------------------------
def whatif_tensor(path: str, stamp: Stamp, name: str, encodings: list[str],
                  max_elements: int) -> list[tuple[str, dict[str, float]] | None]:
    """The error of each encoding on one tensor's sampled rows (None where it does not fit)."""
    from .whatif import sample_rows, whatif_metrics

    model = open_source(path, stamp)
    sample = sample_rows(model, name, max_elements)[0]
    return [whatif_metrics(sample, e) for e in encodings]


# --- quantize ------------------------------------------------------------------------------
def quantize_tensor(path: str, stamp: Stamp, entry: Any, imatrix: np.ndarray | None,
                    threads: int | None, chunk_bytes: int, keep_data: bool) -> tuple:
    """(report row, squared error, squared signal, encoded bytes or None) of one tensor."""
    from . import run_job
    from .quantize import quantize_one

    model = open_source(path, stamp)
    return run_job(quantize_one(model, entry, imatrix, threads, chunk_bytes, keep_data, None))
