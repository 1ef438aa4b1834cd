"""The executor types every job and backend shares: the :class:`Executor` interface, the
in-process reference executor, :class:`TaskEvent` and :class:`ClusterError`.

Backends (:mod:`qtstudio.jobs.executor_ray`) subclass :class:`Executor` from here;
:mod:`qtstudio.jobs.executor` picks one for a job's ``executor`` argument.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from qtstudio.core.progress import CancelToken

__all__ = ["RAY_INSTALL_HINT", "ClusterError", "Executor", "InProcessExecutor", "TaskEvent",
           "check_ray_available", "ray_available"]

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
