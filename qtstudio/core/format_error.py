"""The one exception every reader raises for a file it cannot trust or understand."""

from __future__ import annotations

from pathlib import Path


class ModelFormatError(ValueError):
    """A checkpoint is malformed, truncated or unsupported.

    The message always names the file and the problem, and the tensor when one is involved,
    so the user can act on it without a traceback.
    """

    def __init__(self, path: str | Path, problem: str, *, tensor: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.tensor = tensor
        shown = tensor if tensor is None or len(tensor) <= 120 else tensor[:120] + "..."
        where = f"{self.path}" + (f", tensor {shown!r}" if tensor is not None else "")
        super().__init__(f"{where}: {problem}")
