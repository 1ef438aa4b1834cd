"""``python -m qtstudio [PATH]`` opens the desktop app (the headless tools are qtstudio-cli)."""

import sys

from qtstudio.gui.app import main

# Guarded: job worker processes (multiprocessing "spawn") import this module again.
if __name__ == "__main__":
    sys.exit(main())
