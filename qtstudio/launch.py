"""Console-script entry points that import the tools inside a guard.

Loading numpy, the native library and (for the window) Qt takes a second or more; a Ctrl-C in
that time would otherwise print a KeyboardInterrupt traceback from deep inside an import.
``import qtstudio`` itself loads nothing heavy (see qtstudio/__init__.py).
"""

from __future__ import annotations

import sys


def cli() -> int:
    """``qtstudio-cli``."""
    try:
        from qtstudio.cli import main
    except KeyboardInterrupt:
        print("qtstudio-cli: interrupted", file=sys.stderr)
        return 130
    return main()


def gui() -> int:
    """``qtstudio``: the desktop app."""
    try:
        from qtstudio.gui.app import main
    except KeyboardInterrupt:
        print("qtstudio: interrupted", file=sys.stderr)
        return 130
    return main()
