"""The worker's view of the checkpoint: its stamp, and the copy a worker keeps open.

Each executor task is a top-level function of small arguments, defined beside the job it serves
(``export_span`` in :mod:`qtstudio.export.gguf`, ``measure_costs`` in :mod:`qtstudio.jobs.optimize`,
``whatif_tensor`` in :mod:`qtstudio.jobs.whatif`, ``quantize_tensor`` in
:mod:`qtstudio.jobs.quantize`): the checkpoint's path and its stamp (sizes and modification
times, so a worker that sees a different file at that path says so instead of producing
different bytes), names, encodings, row spans and, where the job has one, a tensor's importance
vector. The worker opens the checkpoint here (memory-mapped, kept open for its next tasks) and
returns encoded bytes or measurements. Every task calls the same code as the job's in-process
loop, so results are identical wherever they run.

A new fan-out job adds its task function to its own module, in the same shape:
``fn(path, stamp, ...) -> small result`` opening the checkpoint with :func:`open_source`, driven
by ``executor.ordered``.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .executor_base import ClusterError

#: checkpoints a worker keeps open between tasks (a job uses one; a second avoids thrashing)
_KEEP_OPEN = 2
_open: OrderedDict[tuple[str, tuple], Any] = OrderedDict()
#: the float rows of the last transformed tensor (llama q/k row order) this worker built for
#: the GGUF export; dropped with the checkpoint it came from
rows_cache: dict[tuple[str, str], np.ndarray] = {}

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
        rows_cache.clear()
        old.close()
    return model
