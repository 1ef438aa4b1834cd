"""Long-running work as plain generators: progress out, cancellation in, result at the end.

A job is a generator that yields :class:`Progress` and returns its result (so the caller gets it
from ``StopIteration.value``, or with :func:`run_job`). It checks its :class:`CancelToken` at
safe points and raises :class:`Cancelled` there. Nothing here knows about threads or Qt: the GUI
drives jobs from a worker thread, the CLI from the main thread.

These types live in core, below every layer that does long work (GPTQ, the readers' demo, the
exports, the jobs), so any of them can report progress without importing the jobs package;
:mod:`qtstudio.jobs` re-exports them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["CancelToken", "Cancelled", "Job", "Progress", "run_job"]

T = TypeVar("T")


class Cancelled(Exception):  # noqa: N818 - the name says what happened, as in asyncio
    """The job stopped because its CancelToken was set."""


class CancelToken:
    """Set from any thread; read by the job between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


@dataclass(frozen=True)
class Progress:
    stage: str
    name: str
    index: int
    total: int
    bytes_done: int
    bytes_total: int
    elapsed: float
    message: str = ""

    @property
    def fraction(self) -> float:
        if self.bytes_total > 0:
            return min(1.0, self.bytes_done / self.bytes_total)
        return self.index / self.total if self.total else 1.0


Job = Generator[Progress, None, T]


def run_job(job: Generator[Progress, None, T],
            on_progress: Callable[[Progress], Any] | None = None, *,
            min_interval_s: float = 0.0) -> T:
    """Drive a job to the end and return its result.

    With ``min_interval_s``, ``on_progress`` hears at most one progress per interval (a window
    or a pipe cannot show more); the last one held back is delivered before the result, so the
    final state is always seen.
    """
    last = -math.inf
    held: list[Progress] = []
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            if held and on_progress is not None:
                on_progress(held[0])
            return stop.value
        if on_progress is None:
            continue
        now = time.monotonic() if min_interval_s > 0 else 0.0
        if now - last >= min_interval_s:
            on_progress(p)
            last = now
            held.clear()
        else:
            held[:] = [p]
