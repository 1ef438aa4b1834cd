"""Atomic output files: write beside the target, fsync, rename; nothing left behind on failure.

The temporary file lives in the target's directory so the final rename never crosses a file
system. A failure, a cancel or an interrupt (any exception, KeyboardInterrupt included) removes
it, and the target is only ever replaced whole. Disk-full and permission errors become
ExportError with a sentence naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO


class ExportError(Exception):
    """An export could not be written; the message says why and where."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_target(target: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Validate an output path before any work starts; returns it resolved."""
    out = Path(target).expanduser()
    for src in inputs:
        src_path = Path(src).expanduser()
        if out.resolve() == src_path.resolve() or _same_file(out, src_path):
            raise ExportError(f"refusing to overwrite the input {src_path}: choose another output")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: folder {parent} does not exist")
    if out.is_dir():
        raise ExportError(f"cannot write {out}: it is a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {out}: no permission to create files in {parent}")
    return out


def describe_os_error(exc: OSError, target: Path) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"not enough disk space to write {target} (the partial file was removed)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write {target}"
    if exc.errno == errno.EROFS:
        return f"cannot write {target}: the file system is read-only"
    return f"cannot write {target}: {exc.strerror or exc}"


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(target: str | Path, *, inputs: Iterable[str | Path] = ()) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``target`` only if the block completes."""
    out = check_target(target, inputs)
    parent = out.resolve().parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        raise ExportError(describe_os_error(exc, out)) from None
    tmp = Path(tmp_name)
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise ExportError(describe_os_error(exc, out)) from exc
        # mkstemp creates 0600; give the result the permissions a normal file would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
        done = True
        _fsync_dir(parent)
    except OSError as exc:
        raise ExportError(describe_os_error(exc, out)) from exc
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
