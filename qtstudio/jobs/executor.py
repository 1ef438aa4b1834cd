"""Where a job's per-tensor (or per-span, per-block, per-window) work runs: here, or on Ray.

A job that can fan out describes its work as a list of small, picklable tasks, each a call of a
top-level function defined beside the job that opens the checkpoint by path itself (see
:mod:`qtstudio.jobs.worker_source`), so weights never travel through the driver. The executor
runs the tasks and hands the results back **in task order**, so the job's writer streams them
into its output exactly as the in-process loop would:

- :class:`InProcessExecutor` runs each task in the caller when the job asks for the next result.
- :class:`~qtstudio.jobs.executor_ray.RayExecutor` submits them as Ray tasks, a bounded window
  ahead of the writer (memory stays bounded), retries tasks whose worker died, and cancels the
  outstanding ones when the job stops (cancel, error, closed generator).

Jobs take ``executor=None`` (their own in-process loop, unchanged), an :class:`Executor`, or a
cluster address string ("auto", "HOST:PORT", "ray://HOST:PORT"), which :func:`executor_for`
connects; the window passes the address because its jobs run in a child process. The shared
types are defined in :mod:`qtstudio.jobs.executor_base` (the Ray backend builds on them) and
exported here.
"""

from __future__ import annotations

from .executor_base import (
    RAY_INSTALL_HINT,
    ClusterError,
    Executor,
    InProcessExecutor,
    TaskEvent,
    check_ray_available,
    ray_available,
)
from .executor_ray import RayExecutor

__all__ = ["RAY_INSTALL_HINT", "ClusterError", "Executor", "InProcessExecutor", "RayExecutor",
           "TaskEvent", "check_ray_available", "executor_for", "ray_available"]


def executor_for(spec: Executor | str | None, *, threads: int | None = None,
                 ) -> tuple[Executor | None, bool]:
    """(executor, whether the caller opened it and must close it) for a job's ``executor``
    argument: None stays None (the job's own loop), an address string connects to Ray."""
    if spec is None or isinstance(spec, Executor):
        return spec, False
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"executor: expected a Ray address such as 'auto' or HOST:PORT, "
                         f"got {spec!r}")
    check_ray_available()
    return RayExecutor(spec.strip(), threads=threads), True
