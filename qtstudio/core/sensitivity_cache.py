"""On-disk cache of measured output sensitivities, one file per finished tensor.

A measurement is keyed by what decides its numbers: the model's identity (resolved path, and the
size and modification time of every file it is read from), the calibration tokens (a hash of the
token array and the window length), the candidate encodings and the method. Under
``<root>/<key>/`` each tensor's options land in their own JSON file, written to a temporary file
and renamed, the moment that tensor is done. A killed run therefore leaves only whole files, and
the next run with the same key loads them and measures only what is missing.

The root is ``$QTSTUDIO_CACHE/sensitivity`` when that variable is set, else
``~/.cache/qtstudio/sensitivity``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: bump when the measurement changes in a way the key does not show
CACHE_VERSION = 1


def cache_root() -> Path:
    env = os.environ.get("QTSTUDIO_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "qtstudio"
    return base / "sensitivity"


def model_identity(path: str | Path) -> dict[str, Any]:
    """Resolved path plus (name, size, mtime) of each file a checkpoint is read from.

    For a folder: its regular files, not recursing (HF folders keep weights, config and
    tokenizer at the top level). Rewriting any of them changes the identity.
    """
    p = Path(path).resolve()
    files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
    stamp = []
    for f in files:
        st = f.stat()
        stamp.append([f.name, st.st_size, st.st_mtime_ns])
    return {"path": str(p), "files": stamp}


def data_hash(tokens: np.ndarray) -> str:
    """Hash of the calibration token windows (their shape says the window length)."""
    arr = np.ascontiguousarray(tokens, dtype=np.int64)
    h = hashlib.sha256(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def measurement_key(model_path: str | Path, tokens: np.ndarray, candidates: Sequence[str],
                    method: str, extra: dict[str, Any] | None = None) -> str:
    doc = {"version": CACHE_VERSION, "model": model_identity(model_path),
           "data": data_hash(tokens), "candidates": list(candidates), "method": method,
           "extra": extra or {}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class SensitivityCache:
    """The finished tensors of one measurement (one key)."""

    def __init__(self, key: str, root: Path | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.key = key
        self.folder = (root or cache_root()) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_file = self.folder / "meta.json"
        if meta is not None and not meta_file.exists():
            _atomic_write_text(meta_file, json.dumps(meta, indent=1, sort_keys=True))

    def _file(self, name: str) -> Path:
        return self.folder / (hashlib.sha1(name.encode()).hexdigest()[:20] + ".json")

    def get(self, name: str) -> dict[str, Any] | None:
        """The stored record of tensor ``name``, or None (absent or unreadable: remeasure)."""
        f = self._file(name)
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and rec.get("name") == name else None

    def put(self, name: str, record: dict[str, Any]) -> None:
        _atomic_write_text(self._file(name), json.dumps({**record, "name": name}))

    def finished(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.get(n) is not None]

    def clear(self) -> None:
        for f in self.folder.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
