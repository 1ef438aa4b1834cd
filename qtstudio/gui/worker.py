"""Run a plain generator job on a thread-pool thread and report through Qt signals.

The jobs (qtstudio.jobs) know nothing of Qt: they are generators that yield progress, check a
CancelToken and return their result. ``JobWorker`` turns one of them into the four signals the
window listens to, in the spirit of superqt's ``thread_worker``:

- ``yielded(object)``: a progress value (throttled, so a job that yields thousands of times a second
  cannot flood the event loop; the latest value is never lost before ``returned``)
- ``returned(object)``: the generator's return value
- ``errored(object)``: the exception (``Cancelled`` when the job stopped on request)
- ``finished()``: always last
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from qtstudio.jobs import CancelToken, run_job

#: a job factory receives the cancel token and returns the generator to drive
JobFactory = Callable[[CancelToken], Generator[Any, None, Any]]

_MIN_EMIT_INTERVAL_S = 0.03  # ~30 progress updates a second is all a progress bar can show


#: niceness of job threads: the event loop must win the CPU when the two compete (on a 2-core
#: machine a job using both cores otherwise leaves the window unscheduled for 100+ ms)
JOB_NICENESS = 10


def _lower_priority() -> None:
    """Make this (pool) thread nicer; threads the native library starts from it inherit that.
    Linux sets niceness per thread; elsewhere Qt's thread priority is the nearest thing."""
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < JOB_NICENESS:
            os.setpriority(os.PRIO_PROCESS, tid, JOB_NICENESS)
    except (AttributeError, OSError):
        from PySide6.QtCore import QThread

        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


class _Runnable(QRunnable):
    def __init__(self, worker: JobWorker) -> None:
        super().__init__()
        self._worker = worker
        self.setAutoDelete(True)

    def run(self) -> None:
        _lower_priority()
        self._worker._run()


_pool: QThreadPool | None = None


def job_pool() -> QThreadPool:
    """The app's own pool, so lowered thread priorities never leak into Qt's global pool."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(max(2, os.cpu_count() or 2))
    return _pool


class JobWorker(QObject):
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    finished = Signal()

    def __init__(self, factory: JobFactory, *, name: str = "job",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.cancel_token = CancelToken()
        self._factory = factory
        self._running = False
        self._done = False

    # ---- control (GUI thread) ----------------------------------------------------------
    def start(self, pool: QThreadPool | None = None) -> None:
        if self._running or self._done:
            raise RuntimeError(f"{self.name} was already started")
        self._running = True
        (pool or job_pool()).start(_Runnable(self))

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def is_running(self) -> bool:
        return self._running

    # ---- body (pool thread) --------------------------------------------------------------
    def _run(self) -> None:
        try:
            gen = self._factory(self.cancel_token)
            result = run_job(gen, self.yielded.emit, min_interval_s=_MIN_EMIT_INTERVAL_S)
            self.returned.emit(result)
        except BaseException as exc:  # everything, including Cancelled, goes to the GUI
            self.errored.emit(exc)
        finally:
            self._running = False
            self._done = True
            self.finished.emit()
