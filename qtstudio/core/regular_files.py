"""Opening input files safely: regular files only, never blocking on a FIFO or a device."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .format_error import ModelFormatError

#: builds the error to raise from (path, problem): ModelFormatError or a caller's own type
ErrorFactory = Callable[[Path, str], Exception]


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "not a regular file"


def regular_size(path: Path, error: ErrorFactory = ModelFormatError) -> int:
    """The size of ``path`` if it is a regular file (symlinks followed); refuse anything else.

    Checked before any open: opening a FIFO for reading blocks until a writer comes, and
    opening some devices has side effects.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(path, "no such file or folder") from None
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(path, f"is {_kind(st.st_mode)}, not a regular file; give the model file "
                          "itself")
    return st.st_size


def open_regular(path: Path, error: ErrorFactory = ModelFormatError) -> BinaryIO:
    """Open a regular file for reading without ever blocking, whatever replaced it since the
    last check (the open is non-blocking and what was opened is checked again)."""
    regular_size(path, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(path, f"is {_kind(st.st_mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, limit: int, what: str,
                 error: ErrorFactory = ModelFormatError) -> bytes:
    """The whole of a small regular file, refused when it is larger than ``limit`` bytes."""
    size = regular_size(path, error)
    if size > limit:
        raise error(path, f"{size} bytes is too large for {what} (at most {limit})")
    try:
        with open_regular(path, error) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(path, f"grew beyond {limit} bytes while being read; too large for {what}")
    return data


def json_object(data: bytes, path: Path, what: str,
                error: ErrorFactory = ModelFormatError) -> dict[str, Any]:
    """``data`` (bytes read from ``path``) parsed as a JSON object; ``what`` names the document
    in the problem ("config.json", "the header")."""
    try:
        doc = json.loads(data.decode("utf-8"))
    # ValueError also covers integers beyond Python's digit limit
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(path, f"{what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise error(path, f"{what} is not a JSON object")
    return doc
