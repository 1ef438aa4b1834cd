"""Where a job's per-tensor (or per-span, per-block, per-window) work runs: here, or on Ray.

A job that can fan out describes its work as a list of small, picklable tasks, each a call of a
top-level function (see :mod:`qtstudio.jobs.executor_tasks`) that opens the checkpoint by path
itself, so weights never travel through the driver. The executor runs the tasks and hands the
results back **in task order**, so the job's writer streams them into its output exactly as the
in-process loop would:

- :class:`InProcessExecutor` runs each task in the caller when the job asks for the next result.
- :class:`~qtstudio.jobs.executor_ray.RayExecutor` submits them as Ray tasks, a bounded window
  ahead of the writer (memory stays bounded), retries tasks whose worker died, and cancels the
  outstanding ones when the job stops (cancel, error, closed generator).

Jobs take ``executor=None`` (their own in-process loop, unchanged), an :class:`Executor`, or a
cluster address string ("auto", "HOST:PORT", "ray://HOST:PORT"), which :func:`executor_for`
connects; the window passes the address because its jobs run in a child process.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import CancelToken

__all__ = ["RAY_INSTALL_HINT", "ClusterError", "Executor", "InProcessExecutor", "TaskEvent",
           "check_ray_available", "executor_for"]

RAY_INSTALL_HINT = ("--ray needs the Ray package: pip install 'qtstudio[ray]' "
                    "(or pip install -e '.[ray]' in a checkout)")


class ClusterError(RuntimeError):
    """The cluster could not run the work: unreachable, a task lost for good, a worker that
    cannot read the checkpoint. The message is one sentence for the user."""


@dataclass(frozen=True)
class TaskEvent:
    """One step of an ordered run.

    ``index`` is the next task in submission order whose ``result`` is ready, or None when
    only the count of finished tasks moved (a later task finished first).
    """

    finished: int
    total: int
    index: int | None
    result: Any = None


class Executor:
    """Runs a job's tasks; results come back in task order."""

    name = "executor"

    @property
    def parallelism(self) -> int:
        """How many tasks can run at once."""
        return 1

    @property
    def task_threads(self) -> int | None:
        """Codec threads a task should use (None: the codec's default, all cores)."""
        return None

    def ordered(self, fn: Callable[..., Any], tasks: Sequence[tuple],
                cancel: CancelToken | None = None, labels: Sequence[str] | None = None,
                ) -> Iterator[TaskEvent]:
        """Run ``fn(*args)`` for every tuple of ``tasks``; ``labels`` name them in errors."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Give back what the executor holds (a cluster connection it opened)."""


class InProcessExecutor(Executor):
    """Each task runs in the calling process when the job asks for it: the reference
    behaviour the cluster must reproduce byte for byte."""

    name = "in-process"

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads

    @property
    def task_threads(self) -> int | None:
        return self._threads

    def ordered(self, fn: Callable[..., Any], tasks: Sequence[tuple],
                cancel: CancelToken | None = None, labels: Sequence[str] | None = None,
                ) -> Iterator[TaskEvent]:
        n = len(tasks)
        for i, args in enumerate(tasks):
            if cancel is not None:
                cancel.check()
            yield TaskEvent(i + 1, n, i, fn(*args))


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def check_ray_available() -> None:
    """Raise :class:`ClusterError` with the install hint when Ray is not installed."""
    if not ray_available():
        raise ClusterError(RAY_INSTALL_HINT)


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
    from .executor_ray import RayExecutor

    return RayExecutor(spec.strip(), threads=threads), True
