"""``python -m qtstudio [PATH]`` opens the desktop app (the headless tools are qtstudio-cli)."""

import sys

from qtstudio.gui.app import main

sys.exit(main())
