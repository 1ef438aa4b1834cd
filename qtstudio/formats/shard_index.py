"""`*.index.json` files that spread one checkpoint over shards (safetensors or torch)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelFormatError

MAX_INDEX_BYTES = 64 * 1024 * 1024


def read_index(path: Path) -> tuple[list[Path], dict[str, str], dict]:
    """(shard paths in first-use order, tensor -> shard file name, index metadata)."""
    try:
        size = path.stat().st_size
        if size > MAX_INDEX_BYTES:
            raise ModelFormatError(path, f"index of {size} bytes is too large to be a shard index")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(path, f"the shard index is not valid JSON ({exc})") from None
    wmap = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wmap, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()):
        raise ModelFormatError(path, "the shard index has no weight_map of names to files")
    shards: list[Path] = []
    for name, fname in wmap.items():
        shard = path.parent / fname
        # A shard must sit in the index's folder: an index cannot point elsewhere on the disk.
        if Path(fname).name != fname or fname in {"", ".", ".."}:
            raise ModelFormatError(path, f"shard name {fname!r} is not a plain file name",
                                   tensor=name)
        if shard not in shards:
            if not shard.is_file():
                raise ModelFormatError(path, f"the index names shard {fname}, which does not "
                                             "exist", tensor=name)
            shards.append(shard)
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return sorted(shards), wmap, meta
