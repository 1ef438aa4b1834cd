"""Read-only memory maps of checkpoint files, opened on first use and shared by their tensors."""

from __future__ import annotations

import contextlib
import mmap
import threading
from pathlib import Path

import numpy as np


class MappedFile:
    """One file mapped read-only; views into it cost no memory until touched."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mm: mmap.mmap | None = None
        self._closed = False
        self._lock = threading.Lock()  # the GUI loads tensors from worker threads

    def view(self, offset: int, nbytes: int) -> np.ndarray:
        """uint8 view of ``nbytes`` bytes at ``offset`` (bounds were checked by the reader)."""
        if nbytes == 0:
            return np.empty(0, dtype=np.uint8)
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: the model was closed")
            if self._mm is None:
                with open(self.path, "rb") as f:
                    self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            mm = self._mm
        return np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=offset)

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        self._closed = True
        if self._mm is not None:
            # Arrays handed out may still point into the map; it then goes with the last of them.
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None
