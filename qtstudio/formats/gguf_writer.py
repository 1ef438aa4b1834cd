"""A streaming GGUF (version 3) writer that holds only the header in memory.

The whole header (metadata and tensor descriptions) is known before any data is written: the
caller declares every tensor with its final type, the writer computes offsets, and tensor data
then goes to the file one tensor at a time, in declaration order. ggml's reader is stricter
than the format's text, so this writer enforces what it checks: offsets are the running sum of
sizes padded to the alignment, names are unique and shorter than 64 bytes, at most 4 dimensions,
and the row length is a multiple of the type's block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
MAX_NAME_BYTES = 63  # ggml keeps names in a 64-byte buffer with a terminating zero
MAX_DIMS = 4

# numpy dtypes for the fixed-size scalar value types (little-endian on disk)
_SCALAR_DTYPES: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "<u1",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}


class GGUFWriteError(ValueError):
    """A header or data problem that would make the file unreadable by ggml."""


def ggml_type_of(t: int | str | GGMLQuantizationType) -> GGMLQuantizationType:
    if isinstance(t, str):
        try:
            return GGMLQuantizationType[t.upper()]
        except KeyError:
            raise GGUFWriteError(f"unknown ggml type {t!r}") from None
    try:
        return GGMLQuantizationType(int(t))
    except ValueError:
        raise GGUFWriteError(f"unknown ggml type id {t}") from None


def tensor_nbytes(shape: Sequence[int], ggml_type: int | str | GGMLQuantizationType) -> int:
    """Bytes a tensor of this logical (numpy-order) shape takes in this ggml type."""
    gt = ggml_type_of(ggml_type)
    block, size = GGML_QUANT_SIZES[gt]
    n = int(shape[-1]) if len(shape) else 1
    if n % block:
        raise GGUFWriteError(
            f"{gt.name} needs rows whose length is a multiple of {block}; shape {tuple(shape)}"
        )
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    return rows * (n // block) * size


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _string(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _infer_type(value: Any) -> GGUFValueType:
    if isinstance(value, bool | np.bool_):
        return GGUFValueType.BOOL
    if isinstance(value, str | bytes):
        return GGUFValueType.STRING
    if isinstance(value, int | np.integer):
        return GGUFValueType.INT32 if value < 0 else GGUFValueType.UINT32
    if isinstance(value, float | np.floating):
        return GGUFValueType.FLOAT32
    if isinstance(value, Sequence | np.ndarray):
        return GGUFValueType.ARRAY
    raise GGUFWriteError(f"cannot store a {type(value).__name__} in GGUF metadata")


def _scalar(value: Any, vtype: GGUFValueType) -> bytes:
    if vtype == GGUFValueType.STRING:
        return _string(value)
    dt = _SCALAR_DTYPES.get(vtype)
    if dt is None:
        raise GGUFWriteError(f"value type {vtype!r} is not a scalar type")
    arr = np.asarray(value)
    if vtype == GGUFValueType.BOOL:
        arr = arr.astype(bool)
    elif np.issubdtype(np.dtype(dt), np.integer):
        info = np.iinfo(np.dtype(dt))
        if not (info.min <= int(value) <= info.max):
            raise GGUFWriteError(f"value {value} does not fit a {vtype.name}")
    return arr.astype(dt).tobytes()


def encode_value(value: Any, vtype: GGUFValueType | None = None,
                 sub_type: GGUFValueType | None = None) -> bytes:
    """The on-disk bytes of one value, its type tag first."""
    vtype = _infer_type(value) if vtype is None else GGUFValueType(vtype)
    head = struct.pack("<i", int(vtype))
    if vtype != GGUFValueType.ARRAY:
        return head + _scalar(value, vtype)
    items = list(value) if not isinstance(value, np.ndarray) else value
    if sub_type is None:
        if len(items) == 0:
            raise GGUFWriteError("an empty array needs an explicit item type")
        sub_type = _infer_type(items[0])
    sub_type = GGUFValueType(sub_type)
    out = [head, struct.pack("<iQ", int(sub_type), len(items))]
    if sub_type == GGUFValueType.STRING:
        out.extend(_string(s) for s in items)
    elif sub_type == GGUFValueType.ARRAY:
        raise GGUFWriteError("nested arrays are not written by this writer")
    else:
        dt = _SCALAR_DTYPES[sub_type]
        arr = np.asarray(items)
        if sub_type == GGUFValueType.BOOL:
            arr = arr.astype(bool)
        out.append(arr.astype(dt).tobytes())
    return b"".join(out)


@dataclass
class KV:
    key: str
    value: Any
    vtype: GGUFValueType
    sub_type: GGUFValueType | None = None
    #: already-encoded value (type tag first), copied verbatim from another GGUF file
    raw: bytes | None = None


@dataclass
class TensorSlot:
    """One tensor as declared: logical shape in numpy order, type, size and data offset."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    nbytes: int
    offset: int = 0


class GGUFStreamWriter:
    """Declare metadata and tensors, write the header, then stream each tensor's bytes."""

    def __init__(self, fileobj: BinaryIO, *, alignment: int = DEFAULT_ALIGNMENT,
                 max_name_bytes: int | None = MAX_NAME_BYTES) -> None:
        if alignment <= 0 or alignment & (alignment - 1):
            raise GGUFWriteError(f"alignment must be a power of two, got {alignment}")
        self._f = fileobj
        self.alignment = alignment
        # None lifts ggml's name limit: for plain containers that llama.cpp will never load
        self.max_name_bytes = max_name_bytes
        self._kv: dict[str, KV] = {}
        self._tensors: list[TensorSlot] = []
        self._names: set[str] = set()
        self._header_written = False
        self._next = 0  # index of the next tensor whose data is expected
        self._open: TensorSlot | None = None
        self._written = 0
        self._data_start = 0

    # --- metadata ---------------------------------------------------------------------------
    def add_kv(self, key: str, value: Any, vtype: GGUFValueType | int | None = None,
               sub_type: GGUFValueType | int | None = None) -> None:
        """Set a key; a key set twice keeps its first position and takes the new value."""
        self._check_open()
        if not isinstance(key, str) or not key:
            raise GGUFWriteError("a metadata key must be a non-empty string")
        vt = _infer_type(value) if vtype is None else GGUFValueType(vtype)
        st = None if sub_type is None else GGUFValueType(sub_type)
        if vt == GGUFValueType.ARRAY and st is None:
            items = value if isinstance(value, np.ndarray) else list(value)
            if len(items) == 0:
                raise GGUFWriteError(f"empty array for {key!r} needs an explicit item type")
            st = _infer_type(items[0])
        if key == "general.alignment":
            align = int(value)
            if align <= 0 or align & (align - 1):
                raise GGUFWriteError(f"general.alignment must be a power of two, got {value}")
            self.alignment = align
        self._kv[key] = KV(key, value, vt, st)

    def add_kv_raw(self, key: str, encoded: bytes) -> None:
        """Set a key from the exact bytes another GGUF file holds (type tag, then value)."""
        self._check_open()
        if len(encoded) < 5:
            raise GGUFWriteError(f"encoded value for {key!r} is too short")
        vt = GGUFValueType(struct.unpack_from("<i", encoded)[0])
        if key == "general.alignment":
            if vt != GGUFValueType.UINT32:
                raise GGUFWriteError("general.alignment must be a u32")
            self.add_kv(key, struct.unpack_from("<I", encoded, 4)[0], vt)
            return
        self._kv[key] = KV(key, None, vt, None, raw=bytes(encoded))

    def remove_kv(self, key: str) -> None:
        self._check_open()
        self._kv.pop(key, None)

    @property
    def keys(self) -> list[str]:
        return list(self._kv)

    # --- tensors ----------------------------------------------------------------------------
    def add_tensor_info(self, name: str, shape: Sequence[int],
                        ggml_type: int | str | GGMLQuantizationType) -> TensorSlot:
        """Declare a tensor; ``shape`` is numpy order (the last axis is ggml's ne[0])."""
        self._check_open()
        raw = name.encode("utf-8")
        if not raw:
            raise GGUFWriteError("a tensor needs a name")
        if self.max_name_bytes is not None and len(raw) > self.max_name_bytes:
            raise GGUFWriteError(
                f"tensor name {name!r} is {len(raw)} bytes; ggml allows at most "
                f"{self.max_name_bytes}"
            )
        if name in self._names:
            raise GGUFWriteError(f"tensor {name!r} declared twice")
        shp = tuple(int(s) for s in shape) or (1,)
        if len(shp) > MAX_DIMS:
            raise GGUFWriteError(f"tensor {name!r} has {len(shp)} dimensions; ggml allows 4")
        if any(s <= 0 for s in shp):
            raise GGUFWriteError(f"tensor {name!r} has a non-positive dimension: {shp}")
        gt = ggml_type_of(ggml_type)
        try:
            nbytes = tensor_nbytes(shp, gt)
        except GGUFWriteError as exc:
            raise GGUFWriteError(f"tensor {name!r}: {exc}") from None
        slot = TensorSlot(name, shp, gt, nbytes)
        self._tensors.append(slot)
        self._names.add(name)
        return slot

    @property
    def tensors(self) -> list[TensorSlot]:
        return list(self._tensors)

    # --- writing ----------------------------------------------------------------------------
    def header_bytes(self) -> bytes:
        offset = 0
        infos = []
        for t in self._tensors:
            t.offset = offset
            offset += _pad(t.nbytes, self.alignment)
            ne = tuple(reversed(t.shape))
            infos.append(_string(t.name) + struct.pack("<I", len(ne))
                         + struct.pack(f"<{len(ne)}q", *ne)
                         + struct.pack("<iQ", int(t.ggml_type), t.offset))
        parts = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(self._kv))]
        for kv in self._kv.values():
            parts.append(_string(kv.key))
            parts.append(kv.raw if kv.raw is not None
                         else encode_value(kv.value, kv.vtype, kv.sub_type))
        parts.extend(infos)
        head = b"".join(parts)
        return head + b"\0" * (_pad(len(head), self.alignment) - len(head))

    def write_header(self) -> None:
        self._check_open()
        head = self.header_bytes()
        self._f.write(head)
        self._data_start = len(head)
        self._header_written = True

    def write_tensor_data(self, name: str, chunks: bytes | memoryview | np.ndarray
                          | Iterable[bytes | memoryview | np.ndarray]) -> None:
        """Write the next declared tensor's bytes, whole or as an iterable of pieces."""
        self.begin_tensor(name)
        pieces = [chunks] if isinstance(chunks, bytes | bytearray | memoryview | np.ndarray) \
            else chunks
        for piece in pieces:
            self.write_piece(piece)
        self.end_tensor()

    def begin_tensor(self, name: str) -> TensorSlot:
        """Start the next declared tensor; its bytes then come through ``write_piece``."""
        if not self._header_written:
            raise GGUFWriteError("write_header() must come before tensor data")
        if self._open is not None:
            raise GGUFWriteError(f"tensor {self._open.name!r} is still being written")
        if self._next >= len(self._tensors):
            raise GGUFWriteError(f"tensor {name!r} was never declared (all data already written)")
        slot = self._tensors[self._next]
        if slot.name != name:
            raise GGUFWriteError(f"tensor data out of order: expected {slot.name!r}, got {name!r}")
        self._open = slot
        self._written = 0
        return slot

    def write_piece(self, piece: bytes | bytearray | memoryview | np.ndarray) -> None:
        slot = self._open
        if slot is None:
            raise GGUFWriteError("write_piece() outside begin_tensor() / end_tensor()")
        buf = memoryview(np.ascontiguousarray(piece)).cast("B") \
            if isinstance(piece, np.ndarray) else memoryview(piece).cast("B")
        if self._written + buf.nbytes > slot.nbytes:
            raise GGUFWriteError(
                f"tensor {slot.name!r}: more than the declared {slot.nbytes} bytes")
        self._f.write(buf)
        self._written += buf.nbytes

    def end_tensor(self) -> None:
        slot = self._open
        if slot is None:
            raise GGUFWriteError("end_tensor() without begin_tensor()")
        if self._written != slot.nbytes:
            raise GGUFWriteError(
                f"tensor {slot.name!r}: wrote {self._written} bytes, declared {slot.nbytes}"
            )
        self._f.write(b"\0" * (_pad(slot.nbytes, self.alignment) - slot.nbytes))
        self._open = None
        self._next += 1

    def finish(self) -> None:
        if not self._header_written:
            self.write_header()
        if self._next != len(self._tensors):
            missing = self._tensors[self._next].name
            raise GGUFWriteError(
                f"{len(self._tensors) - self._next} tensors have no data yet (next: {missing!r})"
            )

    def _check_open(self) -> None:
        if self._header_written:
            raise GGUFWriteError("the header is already written; metadata and tensors are fixed")
