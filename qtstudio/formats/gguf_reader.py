"""GGUF files: a bounds-checked header parser, tensor data memory-mapped.

Every count and length in the header is checked against the bytes left in the file before it
is used, so a hostile header cannot make us allocate gigabytes or loop for hours. Quantized
tensors keep their encoding; ``load`` decodes them with the native library, or with the gguf
package's reference decoders for ggml types the native library does not know yet.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from qtstudio import kernels
from qtstudio.core.model import RawTensor
from qtstudio.core.regular_files import open_regular

from ._mmap import MappedFile
from .errors import ModelFormatError
from .floats import PLAIN_DTYPES, plain_to_f32

MAGIC = b"GGUF"
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
#: metadata arrays longer than this stay numpy arrays (numbers) or are refused (strings)
MAX_LIST_ITEMS = 1 << 22

# value type id -> (struct format, size); 7 is bool, 8 string, 9 array.
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_NP_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?",
               10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9
# Smallest encoding of one item of each kind: lets us reject absurd counts up front.
_MIN_KV = 8 + 4 + 1
_MIN_TENSOR_INFO = 8 + 4 + 8 + 4 + 8
_PLAIN_GGML = {0: "F32", 1: "F16", 30: "BF16", 28: "F64", 24: "I8", 25: "I16", 26: "I32",
               27: "I64"}
#: ggml caps a tensor's element count at INT64_MAX; we stop well before numpy's limits
MAX_ELEMENTS = 1 << 62


class _Cursor:
    def __init__(self, path: Path, buf: memoryview) -> None:
        self.path, self.buf, self.pos, self.size = path, buf, 0, len(buf)

    def fail(self, problem: str, tensor: str | None = None) -> ModelFormatError:
        return ModelFormatError(self.path, problem, tensor=tensor)

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.left():
            raise self.fail(f"{what} needs {n} bytes at offset {self.pos} but the file ends at "
                            f"{self.size}: truncated or corrupt header")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str, size: int, what: str) -> Any:
        return struct.unpack(fmt, self.take(size, what))[0]

    def u32(self, what: str) -> int:
        return self.scalar("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", 8, what)

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        if n > self.left():
            raise self.fail(f"{what} claims {n} bytes but only {self.left()} remain in the file")
        return bytes(self.take(n, what)).decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            fmt, size = _SCALARS[vtype]
            return self.scalar(fmt, size, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            if depth > 2:
                raise self.fail(f"{what}: arrays nested too deeply")
            itype = self.scalar("<i", 4, f"item type of {what}")
            n = self.u64(f"length of {what}")
            min_item = _SCALARS[itype][1] if itype in _SCALARS else (
                8 if itype == _STRING else 12 if itype == _ARRAY else None)
            if min_item is None:
                raise self.fail(f"{what}: unknown array item type {itype}")
            if n * min_item > self.left():
                raise self.fail(f"{what} claims {n} items, more than the {self.left()} bytes "
                                "left in the file could hold")
            if itype in _NP_SCALARS:
                raw = self.take(n * min_item, what)
                arr = np.frombuffer(raw, dtype=_NP_SCALARS[itype], count=n)
                # Big numeric arrays stay compact: a list would cost ~30x the file's bytes.
                return arr.tolist() if n <= MAX_LIST_ITEMS else arr.copy()
            if n > MAX_LIST_ITEMS:
                raise self.fail(f"{what} holds {n} strings or arrays; more than the "
                                f"{MAX_LIST_ITEMS} any model vocabulary needs")
            return [self.value(itype, what, depth + 1) for _ in range(n)]
        raise self.fail(f"{what}: unknown value type {vtype}")


def _decode_problem(type_id: int, tname: str) -> str | None:
    """Why values of this (known) ggml type cannot be decoded, or None if they can."""
    if type_id in _PLAIN_GGML:
        return None
    nt = kernels.native_type(type_id)
    if nt is not None and nt.can_dequantize:
        return None
    if _gguf_can_dequantize(type_id):
        return None
    return (f"{tname} data cannot be decoded: neither qtstudio's native library nor the gguf "
            f"package has a {tname} decoder (llama.cpp uses it only inside its own kernels)")


def _gguf_can_dequantize(type_id: int) -> bool:
    traits = getattr(gguf.quants, "_type_traits", None)
    if traits is None:
        return True  # an older gguf package: let it try, and turn its refusal into ours
    try:
        return gguf.GGMLQuantizationType(type_id) in traits
    except ValueError:
        return False


def _type_geometry(type_id: int) -> tuple[str, int, int] | None:
    """(name, elements per block, bytes per block) of a ggml type id, or None if unknown."""
    try:
        qt = gguf.GGMLQuantizationType(type_id)
    except ValueError:
        return None
    sizes = gguf.GGML_QUANT_SIZES.get(qt)
    if sizes is None:
        return None
    return qt.name, sizes[0], sizes[1]


class GGUFSource:
    def __init__(self, path: Path, mapped: MappedFile,
                 entries: dict[str, tuple[RawTensor, int, int]]) -> None:
        self._path = path
        self._file = mapped
        self._entries = entries  # name -> (raw, absolute offset, ggml type)
        self.raws = [e[0] for e in entries.values()]

    def ggml_type(self, name: str) -> int:
        return self._entries[name][2]

    def load_raw(self, name: str) -> np.ndarray:
        raw, offset, tid = self._entries[name]
        data = self._file.view(offset, raw.nbytes)
        if tid in _PLAIN_GGML:
            return data.view(PLAIN_DTYPES[_PLAIN_GGML[tid]]).reshape(raw.shape)
        rows = int(np.prod(raw.shape[:-1], dtype=np.int64)) if len(raw.shape) > 1 else 1
        return data.reshape(rows, raw.nbytes // max(rows, 1))

    def load(self, name: str) -> np.ndarray:
        raw, _, tid = self._entries[name]
        if raw.unreadable is not None:
            raise ModelFormatError(self._path, raw.unreadable, tensor=name)
        data = self.load_raw(name)
        if tid in _PLAIN_GGML:
            return plain_to_f32(data, _PLAIN_GGML[tid])
        n = raw.shape[-1]
        nt = kernels.native_type(tid)
        if nt is not None and nt.can_dequantize:
            out = kernels.dequantize_rows(tid, data, n)
        else:
            try:
                out = gguf.quants.dequantize(np.ascontiguousarray(data),
                                             gguf.GGMLQuantizationType(tid))
            except (NotImplementedError, ValueError, TypeError) as exc:
                raise ModelFormatError(self._path, f"{raw.dtype} data cannot be decoded "
                                                   f"({exc})", tensor=name) from None
        return np.ascontiguousarray(out, dtype=np.float32).reshape(raw.shape)

    def close(self) -> None:
        self._file.close()


def read_gguf(path: Path) -> tuple[GGUFSource, dict[str, Any], int]:
    """(source, metadata KV pairs, version)."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFormatError(path, "empty file, not GGUF")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ModelFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    buf = memoryview(mm)
    try:
        return _parse(path, buf, size)
    finally:
        buf.release()
        mm.close()


def _parse(path: Path, buf: memoryview, size: int) -> tuple[GGUFSource, dict[str, Any], int]:
    c = _Cursor(path, buf)
    magic = bytes(c.take(4, "magic"))
    if magic != MAGIC:
        raise c.fail(f"bad magic {magic!r}: not a GGUF file (expected b'GGUF')")
    version = c.u32("version")
    if version not in (2, 3):
        raise c.fail(f"GGUF version {version} is not supported (versions 2 and 3 are)")
    n_tensors = c.u64("tensor count")
    n_kv = c.u64("metadata count")
    if n_kv * _MIN_KV > c.left():
        raise c.fail(f"metadata count {n_kv} is absurd for a file of {size} bytes")
    if n_tensors * _MIN_TENSOR_INFO > c.left():
        raise c.fail(f"tensor count {n_tensors} is absurd for a file of {size} bytes")
    meta: dict[str, Any] = {}
    for i in range(n_kv):
        key = c.string(f"key of metadata entry {i}")
        vtype = c.scalar("<i", 4, f"type of {key!r}")
        meta[key] = c.value(vtype, f"metadata {key!r}")
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise c.fail(f"general.alignment {alignment!r} is not a power of two")
    infos: list[tuple[str, tuple[int, ...], int, int, int, str | None]] = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = c.string(f"name of tensor {i}")
        if name in seen:
            raise c.fail("duplicate tensor name", name)
        seen.add(name)
        n_dims = c.u32(f"dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise c.fail(f"{n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})", name)
        ne = [c.scalar("<q", 8, f"dimensions of {name!r}") for _ in range(n_dims)]
        if any(d < 0 for d in ne):
            raise c.fail(f"negative dimension in {ne}", name)
        if math.prod(d for d in ne if d) > MAX_ELEMENTS:
            raise c.fail(f"dimensions {ne} multiply out to more than 2^62 values (ggml's "
                         "element count would overflow)", name)
        tid = c.scalar("<i", 4, f"type of {name!r}")
        offset = c.u64(f"offset of {name!r}")
        geom = _type_geometry(tid)
        if geom is None:
            raise c.fail(f"unsupported ggml type id {tid}", name)
        tname, blk, bsize = geom
        if ne[0] % blk:
            raise c.fail(f"{tname} needs rows that are a multiple of {blk}; ne[0] is {ne[0]}",
                         name)
        count = 1
        for d in ne:
            count *= d
        nbytes = count // blk * bsize
        if offset % alignment:
            raise c.fail(f"data offset {offset} is not aligned to {alignment}", name)
        if 0 in ne:
            why: str | None = (f"has a zero dimension (ne={ne}): a ggml tensor needs every "
                               "dimension to be at least 1")
        else:
            why = _decode_problem(tid, tname)
        infos.append((name, tuple(reversed(ne)), tid, offset, nbytes, why))
    data_start = (c.pos + alignment - 1) // alignment * alignment
    mapped = MappedFile(path)
    entries: dict[str, tuple[RawTensor, int, int]] = {}
    spans: list[tuple[int, int, str]] = []
    for name, shape, tid, offset, nbytes, why in infos:
        end = data_start + offset + nbytes
        if end > size:
            raise c.fail(f"the tensor's data ends at byte {end} but the file holds only {size} "
                         "bytes: the file is truncated", name)
        dtype = _type_geometry(tid)[0]  # type: ignore[index]
        entries[name] = (RawTensor(name, shape, dtype, nbytes, why), data_start + offset, tid)
        spans.append((offset, nbytes, name))
    spans.sort()
    end, owner = 0, ""
    for off, nbytes, name in spans:
        if not nbytes:
            continue
        if off < end:
            raise c.fail(f"data overlaps tensor {owner!r}", name)
        end, owner = off + nbytes, name
    return GGUFSource(path, mapped, entries), meta, version
