"""Run a job from the command line: a progress bar, and Ctrl-C as a request to stop.

The first Ctrl-C asks the job to stop at its next safe point (between tensors or row chunks),
so nothing half-written is left behind; a second one interrupts at once. SIGTERM (``kill``,
a service manager) and SIGHUP (the terminal closed) are handled the same way: a stopped export
removes its temporary file instead of dying with it on disk.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

from qtstudio.jobs import Cancelled, CancelToken, Progress, run_job

from .progress_bar import ProgressBar

T = TypeVar("T")

#: signals that mean "stop": Ctrl-C, kill / service stop, terminal hang-up
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM",
                                                                      "SIGHUP")) if s is not None)


class StopSignal(KeyboardInterrupt):
    """A stop signal arrived outside a job (or a second time): unwind now, cleanups run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


class JobStoppedError(Exception):
    """The user stopped the job; the message says what was (not) written. Exit status 128+N."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_status(signum: int) -> int:
    """The shell's convention for a process stopped by a signal: 128 + its number."""
    return 128 + int(signum)


def _raise_stop(signum: int, frame: object) -> None:
    raise StopSignal(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While inside, every stop signal raises :class:`StopSignal` (a KeyboardInterrupt), so
    ``finally`` blocks and atomic outputs clean up as they do for Ctrl-C."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(s, _raise_stop)
    try:
        yield
    finally:
        for s, h in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(s, h)


def run_cli_job(make_job: Callable[[CancelToken], Generator[Progress, None, T]], *,
                quiet: bool = False, on_stop: str = "nothing was written") -> T:
    cancel = CancelToken()
    received: list[int] = []

    def on_stop_signal(signum, frame):
        if cancel.cancelled:
            raise StopSignal(signum)
        received.append(signum)
        cancel.cancel()

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(s, on_stop_signal)
    bar = None if quiet else ProgressBar()
    try:
        return run_job(make_job(cancel), bar)
    except Cancelled:
        signum = received[0] if received else signal.SIGINT
        raise JobStoppedError(f"stopped by {signal_name(signum)}; {on_stop}", signum) from None
    finally:
        if bar is not None:
            bar.finish()
        for s, h in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(s, h)


def report_stopped(exc: JobStoppedError) -> int:
    print(f"qtstudio-cli: {exc}", file=sys.stderr)
    return exit_status(exc.signum)
