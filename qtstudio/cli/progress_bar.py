"""A one-line progress bar on stderr, redrawn at most ten times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from qtstudio.jobs import Progress


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._drawn = False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.stage == "done"
        if not final and now - self._last < 0.1:
            return
        self._last = now
        frac = p.fraction
        filled = round(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        name = p.name if len(p.name) <= 40 else "..." + p.name[-37:]
        line = (f"[{bar}] {frac * 100:5.1f}% {min(p.index + 1, p.total)}/{p.total} "
                f"{p.elapsed:6.1f}s {name}")
        if self._tty:
            self.stream.write("\r" + line.ljust(100)[:120])
        else:
            self.stream.write(line + "\n")
        self._drawn = True
        if final:
            self.finish()
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn and self._tty:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
