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
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO


class ExportError(Exception):
    """An export could not be written; the message says why and where."""


def _same_file(a: Path, b: Path) -> bool:
    # samefile compares device and inode: a symlink or a hard link to an input is that input
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


#: files beside a checkpoint that its readers (or the NNEF graph builder) read
_SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer.model",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
               "vocab.txt", "vocab.json", "merges.txt")
_WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json",
                    "*.pt", "*.pth", "*.gguf")


def model_files(path: str | Path) -> list[Path]:
    """Every file opening ``path`` as a model may read: the file itself, and for a folder or a
    shard index also the shards and the config / tokenizer files beside them. Outputs must not
    land on any of these."""
    p = Path(path).expanduser()
    files = [p]
    folder = p if p.is_dir() else p.parent
    sharded = p.is_dir() or p.name.endswith(".index.json")
    if not p.name.lower().endswith(".gguf"):
        files += [folder / n for n in _SIDE_FILES if (folder / n).exists()]
    if sharded:
        for pattern in _WEIGHT_PATTERNS:
            files += sorted(folder.glob(pattern))
    return list(dict.fromkeys(files))


def check_target(target: str | Path, inputs: Iterable[str | Path] = (), *,
                 allow_dir: bool = False) -> Path:
    """Validate an output path before any work starts; returns it (user-expanded).

    Refused: any of ``inputs`` (same path, a symlink to it, a hard link of it), and anything
    that is not a regular file to replace: devices (``/dev/full``), FIFOs, sockets, and folders
    unless ``allow_dir`` (an NNEF folder export), in which case no input may lie inside it.
    """
    out = Path(target).expanduser()
    for src in inputs:
        src_path = Path(src).expanduser()
        if out.resolve() == src_path.resolve() or _same_file(out, src_path):
            raise ExportError(f"refusing to overwrite the input {src_path}: choose another output")
        if allow_dir and out.is_dir() and _inside(src_path, out):
            raise ExportError(f"refusing to replace {out}: the input {src_path} is inside it")
    try:
        mode = os.stat(out).st_mode  # follows a symlink: what lies behind it is what gets hit
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ExportError(describe_os_error(exc, out)) from None
    if mode is not None:
        kind = _not_regular(mode)
        if kind is not None:
            raise ExportError(f"cannot write {out}: it is {kind}, not a regular file")
        if stat.S_ISDIR(mode) and not allow_dir:
            raise ExportError(f"cannot write {out}: it is a folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {out}: no permission to create files in {parent}")
    return out


def write_bytes_atomic(target: str | Path, data: bytes, *,
                       inputs: Iterable[str | Path] = ()) -> Path:
    """Replace ``target`` whole with ``data`` (temporary file, fsync, rename)."""
    with atomic_output(target, inputs=inputs) as f:
        f.write(data)
    return Path(target).expanduser()


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
