"""NNEF tensor files (``.dat``): a 128-byte little-endian header, then the raw items.

Header layout: magic ``4E EF``, version 1.0, u32 data length, u32 rank, u32 dims[8], u32 bits
per item, u32 item type (low 16 bits the Khronos code, high 16 bits a vendor id), then 32 bytes
of retired quantization fields and padding, all zero. tract adds a vendor block type for ggml
Q4_0 (vendor 0x5452 "TR", code 0x3040) whose bits-per-item field is all ones.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

HEADER_BYTES = 128
MAX_RANK = 8

# Khronos item type codes.
ITEM_FLOAT = 0
ITEM_UINT = 1
ITEM_QUANT_UINT = 2
ITEM_QUANT_INT = 3
ITEM_INT = 4
ITEM_BOOL = 5

TRACT_Q4_0_ITEM_TYPE = 0x5452_3040
Q4_0_BLOCK_ELEMS = 32
Q4_0_BLOCK_BYTES = 18

_NUMPY_ITEM_TYPES: dict[np.dtype, int] = {
    np.dtype(np.float32): ITEM_FLOAT,
    np.dtype(np.float16): ITEM_FLOAT,
    np.dtype(np.float64): ITEM_FLOAT,
    np.dtype(np.int8): ITEM_INT,
    np.dtype(np.int16): ITEM_INT,
    np.dtype(np.int32): ITEM_INT,
    np.dtype(np.int64): ITEM_INT,
    np.dtype(np.uint8): ITEM_UINT,
    np.dtype(np.uint16): ITEM_UINT,
    np.dtype(np.uint32): ITEM_UINT,
    np.dtype(np.uint64): ITEM_UINT,
    np.dtype(np.bool_): ITEM_BOOL,
}


def _header(data_len: int, shape: tuple[int, ...], bits: int, item_type: int) -> bytes:
    if len(shape) > MAX_RANK:
        raise ValueError(f"NNEF tensors have rank at most {MAX_RANK}, got shape {shape}")
    dims = list(shape) + [0] * (MAX_RANK - len(shape))
    head = struct.pack("<2BBBII8III", 0x4E, 0xEF, 1, 0, data_len, len(shape), *dims,
                       bits, item_type)
    return head + b"\0" * (HEADER_BYTES - len(head))


def array_dat(arr: np.ndarray, *, quantized: bool = False) -> tuple[bytes, bytes]:
    """Header and payload for a plain numpy array. ``quantized`` marks 8-bit integer payloads
    that graph.quant describes (tract reads their scale there)."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype not in _NUMPY_ITEM_TYPES:
        raise TypeError(f"NNEF .dat cannot hold numpy dtype {arr.dtype}")
    item = _NUMPY_ITEM_TYPES[arr.dtype]
    if quantized:
        if arr.dtype == np.int8:
            item = ITEM_QUANT_INT
        elif arr.dtype == np.uint8:
            item = ITEM_QUANT_UINT
        else:
            raise TypeError(f"quantized .dat payloads are int8 or uint8, got {arr.dtype}")
    bits = 1 if arr.dtype == np.bool_ else arr.dtype.itemsize * 8
    payload = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    if arr.dtype == np.bool_:
        payload = np.packbits(arr.reshape(-1), bitorder="big").tobytes()
    return _header(len(payload), tuple(arr.shape), bits, item), payload


def q4_0_dat(blocks: bytes | np.ndarray, shape: tuple[int, ...]) -> tuple[bytes, bytes]:
    """Header and payload for ggml Q4_0 blocks laid along the flattened rows of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64))
    row = count // shape[0] if len(shape) >= 2 and shape[0] else 0
    if row == 0 or row % Q4_0_BLOCK_ELEMS:
        raise ValueError(f"tract Q4_0 needs rank >= 2 and rows (all dims after the first) "
                         f"that hold a multiple of {Q4_0_BLOCK_ELEMS} values; shape {shape}")
    payload = blocks.tobytes() if isinstance(blocks, np.ndarray) else bytes(blocks)
    expected = count // Q4_0_BLOCK_ELEMS * Q4_0_BLOCK_BYTES
    if len(payload) != expected:
        raise ValueError(f"Q4_0 payload for shape {shape} must be {expected} bytes, "
                         f"got {len(payload)}")
    return _header(len(payload), tuple(shape), 0xFFFF_FFFF, TRACT_Q4_0_ITEM_TYPE), payload


def write_dat(stream: BinaryIO, header: bytes, payload: bytes) -> None:
    stream.write(header)
    stream.write(payload)


def read_header(raw: bytes) -> dict[str, object]:
    """Parse a header back (used by tests and by the export report)."""
    if len(raw) < HEADER_BYTES or raw[:2] != b"\x4e\xef":
        raise ValueError("not an NNEF tensor file (bad magic)")
    data_len, rank = struct.unpack_from("<II", raw, 4)
    if rank > MAX_RANK:
        raise ValueError(f"NNEF tensor header claims rank {rank} > {MAX_RANK}")
    dims = struct.unpack_from("<8I", raw, 12)[:rank]
    bits, item_type = struct.unpack_from("<II", raw, 44)
    return {"version": (raw[2], raw[3]), "data_len": data_len, "shape": tuple(dims),
            "bits": bits, "item_type": item_type}
