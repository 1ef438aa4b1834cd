"""Atomic output: files are written into a staging folder beside the target and only renamed
into place once everything is on disk, so a failure or a cancel leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import uuid
from pathlib import Path

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse directory fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicOutput:
    """``with AtomicOutput(target) as out: out.write(name, chunks...)``; commit on clean exit."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        parent = self.target.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"{parent}: output folder does not exist")
        if self.target.is_dir() and not is_archive(self.target):
            if any(self.target.iterdir()) and not (self.target / "graph.nnef").exists():
                raise FileExistsError(f"{self.target}: exists and is not an NNEF export; "
                                      "refusing to replace it")
        elif self.target.exists() and not is_archive(self.target):
            raise FileExistsError(f"{self.target}: exists and is not a folder")
        tag = uuid.uuid4().hex[:8]
        self.staging = parent / f".{self.target.name}.partial-{tag}"
        self._tmp_archive = parent / f".{self.target.name}.tmp-{tag}"
        self.bytes_written = 0

    def __enter__(self) -> AtomicOutput:
        self.staging.mkdir()
        return self

    def write(self, name: str, *chunks: bytes) -> int:
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            n = 0
            for c in chunks:
                f.write(c)
                n += len(c)
            f.flush()
            os.fsync(f.fileno())
        self.bytes_written += n
        return n

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self._tmp_archive.unlink()

    def _commit(self) -> None:
        if is_archive(self.target):
            mode = "w" if self.target.name.lower().endswith(".tar") else "w:gz"
            with open(self._tmp_archive, "wb") as raw:
                with tarfile.open(fileobj=raw, mode=mode) as tar:
                    for path in sorted(self.staging.rglob("*")):
                        if path.is_file():
                            tar.add(path, arcname=path.relative_to(self.staging).as_posix())
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(self._tmp_archive, self.target)
        else:
            _fsync_dir(self.staging)
            old = None
            if self.target.exists():
                old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(self.target, old)
            os.rename(self.staging, self.target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.target.parent)
