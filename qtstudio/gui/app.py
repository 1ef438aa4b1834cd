"""Entry point of the desktop app: ``qtstudio [PATH]`` or ``python -m qtstudio [PATH]``.

Qt is imported inside ``main`` only, so importing this module (for ``--help`` or from the command
line tools) stays light and works without a display.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ORGANIZATION = "qtstudio"
APPLICATION = "qtstudio"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="qtstudio",
        description="Desktop studio for mixed-precision model quantization.")
    p.add_argument("path", nargs="?",
                   help="model to open (safetensors file or index, Hugging Face folder, .bin/.pt, "
                        ".gguf); 'demo' or nothing opens the embedded demo model")
    p.add_argument("--recipe", type=Path, help="recipe JSON to load with the model")
    return p.parse_args(argv)


def create_application(argv: list[str] | None = None):
    """The QApplication, created once, with the names QSettings uses."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("qtstudio")
    # Thread jobs (histogram, what-if) would otherwise keep the GIL 5 ms at a time; 1 ms hands
    # it back to the event loop sooner. Model jobs run in worker processes and are unaffected.
    sys.setswitchinterval(0.001)
    from .theme import apply_theme

    apply_theme(app)
    return app


def _quit_on_stop_signals(app, win) -> None:
    """Ctrl-C in the terminal (or SIGTERM/SIGHUP) closes the window as closing it by hand does.

    Python runs signal handlers only between bytecodes; Qt's event loop is C++, so a timer
    hands control back to Python a few times a second.
    """
    import signal

    from PySide6.QtCore import QTimer

    def stop(signum, frame):
        win.close()  # asks about unsaved work where the window does; closing quits the app

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, stop)
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(250)


class _StartUpInterruptedError(Exception):
    """A stop signal arrived during start-up; raised at the next checkpoint."""


def main(argv: list[str] | None = None) -> int:
    import signal

    received: list[int] = []

    def on_start_up_stop(signum, frame):
        # Only noted: an exception raised inside PySide6's import machinery aborts the
        # interpreter (shiboken's "could not initialize part 2"), and one raised inside a Qt
        # call turns into a printed traceback. Start-up stops at its next checkpoint instead;
        # a second signal (start-up stuck, say on a model that never finishes loading) ends the
        # process at once, the way the signal would without a handler.
        received.append(signum)
        if len(received) > 1:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def checkpoint() -> None:
        if received:
            raise _StartUpInterruptedError

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, on_start_up_stop)
    started = False
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        checkpoint()
        from .platform_check import ensure_platform

        ensure_platform()
        checkpoint()
        app = create_application([sys.argv[0]])
        checkpoint()
        from .main_window import MainWindow

        checkpoint()
        win = MainWindow()
        checkpoint()
        win.show()
        from qtstudio.core.demo import DEMO_NAME

        if args.path is not None and args.path != DEMO_NAME:
            win.open_model(Path(args.path).expanduser(), recipe_path=args.recipe)
        else:
            win.open_demo(recipe_path=args.recipe, showcase=True)
        checkpoint()
        _quit_on_stop_signals(app, win)
        started = True
    except (_StartUpInterruptedError, KeyboardInterrupt):
        # Ctrl-C while Qt and the model load: stop quietly, as after start-up.
        print("qtstudio: interrupted", file=sys.stderr)
        return 128 + int(received[0]) if received else 130
    finally:
        if not started:  # leaving early (interrupt, platform check, error): put them back
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    try:
        return app.exec()
    finally:
        # the window's stop handlers close a window that is gone now; the caller's come back
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
