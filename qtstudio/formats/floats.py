"""Plain storage dtypes shared by the readers: names, numpy types and conversion to float32."""

from __future__ import annotations

import numpy as np

# Storage name -> numpy dtype of the raw view. BF16 is kept as its 16 raw bits.
PLAIN_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def plain_to_f32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """A new, writable float32 array with the values of a plain-typed raw view."""
    if dtype == "BF16":
        return bf16_bits_to_f32(raw)
    return raw.astype(np.float32, copy=True)
