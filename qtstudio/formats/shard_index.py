"""`*.index.json` files that spread one checkpoint over shards (safetensors or torch)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qtstudio.core.regular_files import json_object, read_regular

from .errors import ModelFormatError

MAX_INDEX_BYTES = 64 * 1024 * 1024


def _is_regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(p).st_mode)
    except (OSError, ValueError):
        return False


def read_index(path: Path) -> tuple[list[Path], dict[str, str], dict]:
    """(shard paths in first-use order, tensor -> shard file name, index metadata)."""
    text = read_regular(path, MAX_INDEX_BYTES, "a shard index")
    doc = json_object(text, path, "the shard index")
    wmap = doc.get("weight_map")
    if not isinstance(wmap, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()):
        raise ModelFormatError(path, "the shard index has no weight_map of names to files")
    shards: set[Path] = set()
    for name, fname in wmap.items():
        # A shard must sit in the index's folder: an index cannot point elsewhere on the disk.
        if (fname in {"", ".", ".."} or "\0" in fname or len(fname) > 255
                or Path(fname).name != fname):
            raise ModelFormatError(path, f"shard name {fname[:80]!r} is not a plain file name",
                                   tensor=name)
        shard = path.parent / fname
        if shard not in shards:
            if not _is_regular(shard):
                raise ModelFormatError(path, f"the index names shard {fname}, which does not "
                                             "exist or is not a regular file", tensor=name)
            shards.add(shard)
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return sorted(shards), wmap, meta
