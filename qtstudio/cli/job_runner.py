"""Run a job from the command line: a progress bar, and Ctrl-C as a request to stop.

The first Ctrl-C asks the job to stop at its next safe point (between tensors or row chunks),
so nothing half-written is left behind; a second one interrupts at once.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Generator
from typing import TypeVar

from qtstudio.jobs import Cancelled, CancelToken, Progress, run_job

from .progress_bar import ProgressBar

T = TypeVar("T")


class JobStoppedError(Exception):
    """The user stopped the job; the message says what was (not) written. Exit status 130."""


def run_cli_job(make_job: Callable[[CancelToken], Generator[Progress, None, T]], *,
                quiet: bool = False, on_stop: str = "nothing was written") -> T:
    cancel = CancelToken()

    def on_sigint(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = None if quiet else ProgressBar()
    try:
        return run_job(make_job(cancel), bar)
    except Cancelled:
        raise JobStoppedError(f"stopped by Ctrl-C; {on_stop}") from None
    finally:
        if bar is not None:
            bar.finish()
        signal.signal(signal.SIGINT, previous)


def report_stopped(exc: JobStoppedError) -> int:
    print(f"qtstudio-cli: {exc}", file=sys.stderr)
    return 130
