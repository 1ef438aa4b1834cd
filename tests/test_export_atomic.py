"""Atomic output: whole file or nothing, never the input, plain messages for disk problems."""

from __future__ import annotations

import errno
import os

import pytest

from qtstudio.formats import atomic
from qtstudio.formats.atomic import ExportError, atomic_output


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_success_replaces_target_whole(tmp_path):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")
    with atomic_output(out) as f:
        f.write(b"new data")
        # nothing visible at the target until the block ends
        assert out.read_bytes() == b"old"
    assert out.read_bytes() == b"new data"
    assert _leftovers(tmp_path) == ["m.gguf"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_nothing(tmp_path, exc):
    out = tmp_path / "m.gguf"
    with pytest.raises(type(exc)), atomic_output(out) as f:
        f.write(b"partial")
        raise exc
    assert _leftovers(tmp_path) == []


def test_closed_generator_leaves_nothing(tmp_path):
    out = tmp_path / "m.gguf"

    def job():
        with atomic_output(out) as f:
            f.write(b"x")
            yield 1
            f.write(b"y")
            yield 2

    g = job()
    next(g)
    g.close()  # what a cancelled GUI job does
    assert _leftovers(tmp_path) == []


def test_refuses_to_overwrite_input(tmp_path):
    src = tmp_path / "in.gguf"
    src.write_bytes(b"precious")
    with pytest.raises(ExportError, match="refusing to overwrite the input"), \
            atomic_output(tmp_path / "." / "in.gguf", inputs=[src]):
        pass
    link = tmp_path / "alias.gguf"
    link.symlink_to(src)
    with pytest.raises(ExportError, match="refusing"), atomic_output(link, inputs=[src]):
        pass
    assert src.read_bytes() == b"precious"


def test_missing_folder_and_folder_target(tmp_path):
    with pytest.raises(ExportError, match="does not exist"), \
            atomic_output(tmp_path / "nope" / "m.gguf"):
        pass
    with pytest.raises(ExportError, match="is a folder"), atomic_output(tmp_path):
        pass


def test_disk_full_is_a_clear_message(tmp_path, monkeypatch):
    out = tmp_path / "m.gguf"
    with pytest.raises(ExportError, match="not enough disk space") as info, \
            atomic_output(out) as f:
        f.write(b"abc")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(out) in str(info.value)
    assert _leftovers(tmp_path) == []


def test_fsync_failure_is_reported_and_cleaned(tmp_path, monkeypatch):
    def bad_fsync(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(atomic.os, "fsync", bad_fsync)
    with pytest.raises(ExportError, match="I/O error"), atomic_output(tmp_path / "m.gguf") as f:
        f.write(b"abc")
    assert _leftovers(tmp_path) == []


def test_no_permission_is_a_clear_message(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    # running as root ignores file modes, so deny at the point the file is created
    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(ExportError, match="no permission to write"), \
            atomic_output(tmp_path / "m.gguf"):
        pass
    assert _leftovers(tmp_path) == []
