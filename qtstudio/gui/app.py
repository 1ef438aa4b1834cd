"""Entry point of the desktop app: ``qtstudio [PATH]`` or ``python -m qtstudio [PATH]``.

Qt is imported inside ``main`` only, so importing this module (for ``--help`` or from the command
line tools) stays light and works without a display.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ORGANIZATION = "qtstudio"
APPLICATION = "qtstudio"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="qtstudio",
        description="Desktop studio for mixed-precision model quantization.")
    p.add_argument("path", nargs="?", type=Path,
                   help="model to open (safetensors file or index, Hugging Face folder, .bin/.pt, "
                        ".gguf); the embedded demo model when left out")
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


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    app = create_application([sys.argv[0]])
    from .main_window import MainWindow

    win = MainWindow()
    win.show()
    if args.path is not None:
        win.open_model(args.path, recipe_path=args.recipe)
    else:
        win.open_demo(recipe_path=args.recipe, showcase=True)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
