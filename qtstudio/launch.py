"""Console-script entry points that import the tools with stop signals held back.

Loading numpy, the native library and (for the window) Qt takes a second or more. A Ctrl-C
raised in the middle of those imports comes out as a KeyboardInterrupt traceback, or worse: numpy
and shiboken turn it into an ImportError, and inside PySide6's bootstrap it aborts the
interpreter. So while the tools import, a stop signal is only noted; once the import is done the
program exits quietly with 128 + the signal's number. A second signal ends it at once.
``import qtstudio`` itself loads nothing heavy (see qtstudio/__init__.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

_STOP = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP"))
              if s is not None)


@contextlib.contextmanager
def _held_back(received: list[int]) -> Iterator[None]:
    def note(signum, frame):
        received.append(signum)
        if len(received) > 1:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    previous = {s: signal.signal(s, note) for s in _STOP}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _start(prog: str, load: Callable[[], Callable[[], int]]) -> int:
    received: list[int] = []
    try:
        with _held_back(received):
            main = load()
        if not received:
            return main()
    except KeyboardInterrupt:  # in the instant between the import and main's own handlers
        received.append(signal.SIGINT)
    print(f"{prog}: interrupted", file=sys.stderr)
    return 128 + int(received[0])


def _load_cli() -> Callable[[], int]:
    from qtstudio.cli import main

    return main


def _load_gui() -> Callable[[], int]:
    from qtstudio.gui.app import main

    return main


def cli() -> int:
    """``qtstudio-cli``."""
    return _start("qtstudio-cli", _load_cli)


def gui() -> int:
    """``qtstudio``: the desktop app."""
    return _start("qtstudio", _load_gui)
