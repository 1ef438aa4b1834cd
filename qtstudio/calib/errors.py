"""The one error type of calibration work: a one-line message that names the file."""

from __future__ import annotations

from pathlib import Path


class CalibrationError(ValueError):
    """Calibration data or a model that cannot be evaluated; the message names the file."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)
