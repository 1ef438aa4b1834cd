"""safetensors: single files and sharded checkpoints, read from the header alone.

Layout: u64 little-endian header length N, N bytes of JSON, then the data section. The JSON
maps each tensor name to dtype, shape and [begin, end) offsets into the data section; the key
``__metadata__`` holds string pairs. The header is parsed here, not by the safetensors package,
so that every length and offset is checked against the real file size before anything is
read or mapped.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtstudio.core.model import RawTensor
from qtstudio.core.regular_files import json_object, open_regular

from ._mmap import MappedFile
from .errors import ModelFormatError
from .floats import PLAIN_DTYPES, plain_to_f32

# The safetensors format caps its header at 100 MB; anything larger is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000
#: more dimensions than any real tensor has (numpy's own limit is 64)
MAX_RANK = 16
#: a dimension, or a product of the non-zero dimensions, beyond this is damage (numpy sizes
#: are int64, and no file holds 2**62 values)
MAX_ELEMENTS = 1 << 62
# Storage types the format defines that we cannot convert: such tensors stay visible, marked
# unreadable, with their byte spans still checked.
_OTHER_ITEMSIZES = {"F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "U32": 4, "U64": 8,
                    "C64": 8, "C128": 16}


@dataclass(frozen=True)
class _Entry:
    raw: RawTensor
    file: MappedFile
    offset: int  # absolute, in the file


def _fail(path: Path, problem: str, tensor: str | None = None) -> ModelFormatError:
    return ModelFormatError(path, problem, tensor=tensor)


def read_header(path: Path) -> tuple[dict, dict[str, str], int, int]:
    """(tensor entries, __metadata__, data start, file size), all validated."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise _fail(path, f"the file holds {size} bytes; a safetensors file starts with "
                                  "an 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise _fail(path, f"the header length field says {n} bytes, but only {size - 8} "
                                  "bytes follow it: the file is truncated or not safetensors")
            if n > MAX_HEADER_BYTES:
                raise _fail(path, f"header of {n} bytes is larger than the format's "
                                  f"{MAX_HEADER_BYTES}-byte limit")
            text = f.read(n)
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc.strerror or exc}") from None
    if len(text) < n:
        raise _fail(path, f"the header length field says {n} bytes, but the file ended after "
                          f"{len(text)}: it is truncated")
    header = json_object(text, path, "the header", _fail)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, "__metadata__ must map names to strings")
    return header, meta, 8 + n, size


def _parse_entries(path: Path, header: dict, data_start: int, size: int,
                   mapped: MappedFile) -> list[_Entry]:
    data_len = size - data_start
    out: list[_Entry] = []
    for name, e in header.items():
        if not isinstance(e, dict):
            raise _fail(path, "entry is not an object", name)
        dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if not isinstance(dtype, str):
            raise _fail(path, "entry has no dtype", name)
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(isinstance(d, int) and not isinstance(d, bool)
                           and 0 <= d <= MAX_ELEMENTS for d in shape)):
            raise _fail(path, f"shape {_short(shape)} is not a list of at most {MAX_RANK} "
                              "non-negative integers of sane size", name)
        if math.prod(d for d in shape if d) > MAX_ELEMENTS:
            raise _fail(path, f"shape {_short(shape)} multiplies out to more values than any "
                              "file can hold", name)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise _fail(path, f"data_offsets {_short(offsets)} must be two increasing integers",
                        name)
        begin, end = offsets
        if end > data_len:
            raise _fail(path, f"the tensor's data ends at byte {data_start + end} but the file "
                              f"holds only {size} bytes: the file is truncated", name)
        unreadable = None
        if dtype in PLAIN_DTYPES:
            itemsize = PLAIN_DTYPES[dtype].itemsize
        else:
            itemsize = _OTHER_ITEMSIZES.get(dtype)
            unreadable = (f"storage type {_short(dtype)} cannot be read (readable: "
                          f"{', '.join(PLAIN_DTYPES)})")
            dtype = dtype[:32]
        expected = math.prod(shape) * itemsize if itemsize is not None else end - begin
        if end - begin != expected:
            raise _fail(path, f"data_offsets span {end - begin} bytes but {dtype} "
                              f"{_short(shape)} needs {expected}", name)
        raw = RawTensor(name, tuple(shape), dtype, expected, unreadable)
        out.append(_Entry(raw, mapped, data_start + begin))
    # File order, and no two tensors may share bytes.
    out.sort(key=lambda en: (en.offset, en.raw.nbytes))
    end, owner = 0, ""
    for cur in out:
        if not cur.raw.nbytes:
            continue
        if cur.offset < end:
            raise _fail(path, f"data overlaps tensor {owner!r}", cur.raw.name)
        end, owner = cur.offset + cur.raw.nbytes, cur.raw.name
    return out


def _short(value: object, limit: int = 80) -> str:
    """repr() cut to ``limit`` characters: header values may be megabytes long."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


class SafetensorsSource:
    """Tensors from one or more safetensors files, mapped on first access."""

    def __init__(self, entries: list[_Entry], files: list[MappedFile]) -> None:
        self._entries = {e.raw.name: e for e in entries}
        self._files = files
        self.raws = [e.raw for e in entries]

    def load_raw(self, name: str) -> np.ndarray:
        e = self._entries[name]
        if e.raw.unreadable is not None:
            raise _fail(e.file.path, e.raw.unreadable, name)
        dt = PLAIN_DTYPES[e.raw.dtype]
        return e.file.view(e.offset, e.raw.nbytes).view(dt).reshape(e.raw.shape)

    def load(self, name: str) -> np.ndarray:
        return plain_to_f32(self.load_raw(name), self._entries[name].raw.dtype)

    def close(self) -> None:
        for f in self._files:
            f.close()


def open_files(paths: list[Path], *, index_path: Path | None = None,
               weight_map: dict[str, str] | None = None,
               ) -> tuple[SafetensorsSource, dict[str, str]]:
    """Read the headers of ``paths`` (shards in order); cross-check against an index map."""
    entries: list[_Entry] = []
    files: list[MappedFile] = []
    metadata: dict[str, str] = {}
    seen: dict[str, Path] = {}
    for p in paths:
        header, meta, start, size = read_header(p)
        mf = MappedFile(p)
        files.append(mf)
        metadata.update(meta)
        for e in _parse_entries(p, header, start, size, mf):
            if e.raw.name in seen:
                raise _fail(p, f"tensor also stored in {seen[e.raw.name].name}", e.raw.name)
            seen[e.raw.name] = p
            entries.append(e)
    if weight_map is not None and index_path is not None:
        for name, fname in weight_map.items():
            where = seen.get(name)
            if where is None or where.name != Path(fname).name:
                raise _fail(index_path, f"the index places this tensor in {fname}, but that "
                                        "shard does not hold it", name)
    return SafetensorsSource(entries, files), metadata
