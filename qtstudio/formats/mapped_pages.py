"""Give back the resident pages of a memory-mapped tensor once it has been written.

Readers map whole checkpoint files; every page an export touches would otherwise stay in the
process's resident set until the end, so peak memory would grow with the model instead of with
the largest tensor. The maps are read-only and shared, so dropping pages loses nothing: a later
access reads them again from the page cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys

import numpy as np

_MADV_DONTNEED = 4  # Linux value; the call is only made on Linux
_libc = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int


def release_pages(view: np.ndarray | None) -> None:
    """Drop the whole pages under ``view`` from memory (no-op where unsupported)."""
    if _libc is None or view is None or not isinstance(view, np.ndarray) or view.nbytes == 0:
        return
    # Only views into read-only mappings: dropping pages of writable memory would lose data.
    if view.flags.writeable or view.base is None:
        return
    page = mmap.PAGESIZE
    start = view.ctypes.data
    end = start + view.nbytes
    first = (start + page - 1) // page * page  # pages shared with a neighbour are kept
    last = end // page * page
    if last > first:
        _libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)
