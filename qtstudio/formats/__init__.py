"""Checkpoint readers: safetensors (single, sharded, Hugging Face folders), PyTorch, GGUF.

``open_model`` reads headers only; tensor data stays on disk, memory-mapped, until a tensor is
loaded. Every problem with a file is a :class:`ModelFormatError` naming the file.
"""

from __future__ import annotations

import pickletools
import struct
from pathlib import Path
from typing import Any

from qtstudio.core.model import Model
from qtstudio.core.regular_files import json_object, open_regular, read_regular, regular_size

from .errors import ModelFormatError

__all__ = ["ModelFormatError", "open_model"]

_TORCH_SUFFIXES = {".bin", ".pt", ".pth"}
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def _read_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return {}
    return json_object(read_regular(cfg, MAX_CONFIG_BYTES, "a model config"), cfg, "config.json")


def _pick_in_folder(folder: Path) -> Path:
    """The weights of a Hugging Face style folder, safetensors preferred."""
    for name in ("model.safetensors.index.json", "model.safetensors",
                 "pytorch_model.bin.index.json", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    for pattern in ("*.safetensors.index.json", "*.safetensors", "*.gguf", "*.bin.index.json",
                    "*.bin", "*.pt", "*.pth"):
        found = sorted(folder.glob(pattern))
        if len(found) == 1 or (found and pattern == "*.safetensors"):
            return found[0] if len(found) == 1 else folder
    raise ModelFormatError(folder, "no model weights found (looked for *.safetensors, "
                                   "*.safetensors.index.json, *.bin, *.pt, *.pth, *.gguf)")


# Every pickle opcode: the byte after a PROTO header must be one of them.
_PICKLE_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)


def _is_safetensors_layout(head: bytes, size: int) -> bool:
    """u64 header length that fits the file, then the header's opening '{'."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _is_torch_pickle(head: bytes) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle: PROTO, a real protocol, an opcode."""
    if head[:4] == b"PK\x03\x04":
        return True
    return (len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5
            and head[2] in _PICKLE_OPCODES)


def _sniff(path: Path) -> str:
    size = regular_size(path)
    try:
        with open_regular(path) as f:
            head = f.read(16)
    except OSError as exc:
        raise ModelFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if head[:4] == b"GGUF":
        return "gguf"
    # The safetensors layout first: about one header length in 256 starts with byte 0x80,
    # which is also how a pickle starts.
    if _is_safetensors_layout(head, size):
        return "safetensors"
    if _is_torch_pickle(head):
        return "torch"
    name = path.name.lower()
    if name.endswith(".gguf"):
        return "gguf"
    if path.suffix.lower() in _TORCH_SUFFIXES:
        return "torch"
    return "safetensors"


def open_model(path: str | Path) -> Model:
    """Open a checkpoint lazily (headers only)."""
    # Readers load on demand: torch is heavy, and most files never need it.
    from . import safetensors_reader, shard_index

    path = Path(path)
    if not path.exists():
        raise ModelFormatError(path, "no such file or folder")
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        path = _pick_in_folder(path)
    if not path.is_dir():
        regular_size(path)  # a FIFO or a device is refused here, before anything opens it
    config = _read_config(folder)
    arch = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    name = path.name.lower()

    if path.is_dir():  # several un-indexed safetensors files: read them all as shards
        files = sorted(path.glob("*.safetensors"))
        src, meta = safetensors_reader.open_files(files)
        return Model(path, "safetensors", src.raws, src, config=config, metadata=meta,
                     architecture=arch)
    if name.endswith(".index.json"):
        shards, wmap, index_meta = shard_index.read_index(path)
        if name.endswith(".safetensors.index.json") or all(
                s.suffix == ".safetensors" for s in shards):
            src, meta = safetensors_reader.open_files(shards, index_path=path, weight_map=wmap)
            return Model(path, "safetensors", src.raws, src, config=config,
                         metadata={**index_meta, **meta}, architecture=arch)
        from . import torch_reader

        tsrc = torch_reader.open_torch(shards, index_path=path, weight_map=wmap)
        return Model(path, "torch", tsrc.raws, tsrc, config=config, metadata=index_meta,
                     architecture=arch)
    kind = _sniff(path)
    if kind == "gguf":
        from . import gguf_reader

        gsrc, meta, _ = gguf_reader.read_gguf(path)
        garch = meta.get("general.architecture")
        return Model(path, "gguf", gsrc.raws, gsrc, config=config, metadata=meta,
                     architecture=garch if isinstance(garch, str) else arch,
                     names_are_gguf=True)
    if kind == "torch":
        from . import torch_reader

        tsrc = torch_reader.open_torch([path])
        return Model(path, "torch", tsrc.raws, tsrc, config=config, architecture=arch)
    src, meta = safetensors_reader.open_files([path])
    return Model(path, "safetensors", src.raws, src, config=config, metadata=meta,
                 architecture=arch)
