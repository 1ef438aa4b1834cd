"""QTensor: a tensor stored in some encoding, and the quantize / dequantize entry points."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from qtstudio import kernels
from qtstudio.kernels.matmul import qmatmul_blocks

from .encodings import Encoding, get_encoding

#: element counts must fit int64 with room to spare (byte sizes are computed from them)
MAX_ELEMENTS = 1 << 62


def _shape_tuple(shape: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    if not out or any(s <= 0 for s in out):
        raise ValueError(f"a tensor shape needs at least one dimension, all positive; got {shape}")
    # Python integers: numpy's int64 product would wrap around and pass a tiny size check.
    if math.prod(out) > MAX_ELEMENTS:
        raise ValueError(f"shape {out} holds more than 2^62 values: it overflows int64 sizes")
    return out


def _rows(shape: tuple[int, ...]) -> tuple[int, int]:
    return math.prod(shape[:-1]), shape[-1]


class QTensor:
    """Encoded tensor: ``data`` is uint8 [rows, row_bytes] in the encoding's byte layout."""

    __slots__ = ("_data", "_encoding", "_shape")

    def __init__(self, data: np.ndarray, shape: Sequence[int], encoding: str | Encoding) -> None:
        enc = get_encoding(encoding)
        shp = _shape_tuple(shape)
        problem = enc.shape_problem(shp)
        if problem:
            raise ValueError(problem)
        rows, n = _rows(shp)
        expected = (rows, enc.row_bytes(n))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise TypeError("QTensor data must be a uint8 numpy array")
        if data.size != expected[0] * expected[1]:
            raise ValueError(
                f"{enc.name} data for shape {shp} must hold {expected[0] * expected[1]} bytes, "
                f"got {data.size}"
            )
        self._data = data.reshape(expected)
        self._shape = shp
        self._encoding = enc

    @classmethod
    def from_bytes(cls, buffer: bytes | bytearray | memoryview | np.ndarray,
                   shape: Sequence[int], encoding: str | Encoding) -> QTensor:
        arr = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) \
            else buffer.view(np.uint8).reshape(-1)
        return cls(arr, shape, encoding)

    @property
    def encoding(self) -> Encoding:
        return self._encoding

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    @property
    def numel(self) -> int:
        return math.prod(self._shape)

    @property
    def bpw(self) -> float:
        return 8.0 * self.nbytes / self.numel

    def tobytes(self) -> bytes:
        return self._data.tobytes()

    def __repr__(self) -> str:
        return (f"QTensor(shape={self._shape}, encoding={self._encoding.name}, "
                f"nbytes={self.nbytes}, bpw={self.bpw:.4g})")


def quantize(x: np.ndarray, encoding: str | Encoding, *, imatrix: np.ndarray | None = None,
             threads: int | None = None, allow_nonfinite: bool = False) -> QTensor:
    """Encode a float32 array. The last axis is the row that blocks run along."""
    enc = get_encoding(encoding)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"x must be float32, got {x.dtype} (convert with x.astype(np.float32))")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    shape = _shape_tuple(x.shape)
    problem = enc.shape_problem(shape)
    if problem:
        raise ValueError(problem)
    rows, n = _rows(shape)
    x2 = np.ascontiguousarray(x).reshape(rows, n)
    if not allow_nonfinite:
        bad = kernels.find_nonfinite_row(x2)
        if bad is not None:
            col = int(np.flatnonzero(~np.isfinite(x2[bad]))[0])
            raise ValueError(f"row {bad} holds a non-finite value ({x2[bad, col]} at column {col});"
                             " quantization needs finite weights")
    data = enc.quantize_rows(x2, imatrix=imatrix, threads=threads)
    return QTensor(data, shape, enc)


def dequantize(qt: QTensor, *, threads: int | None = None) -> np.ndarray:
    """Decode a QTensor back to float32 of its logical shape."""
    if not isinstance(qt, QTensor):
        raise TypeError(f"dequantize takes a QTensor, got {type(qt).__name__}")
    _, n = _rows(qt.shape)
    out = qt.encoding.dequantize_rows(qt.data, n, threads=threads)
    return out.reshape(qt.shape)


def qmatmul(x: np.ndarray, w: QTensor, *, threads: int | None = None, exact: bool = False,
            isa: str | None = None) -> np.ndarray:
    """``y[n, m] = x[n, k] @ dequantize(w)[m, k].T`` in float32, without decoding ``w`` whole.

    ``w`` is a 2-D QTensor whose rows are quantized along k, in any encoding the native library
    decodes. ``threads=None`` uses one thread per core; ``isa`` forces a dispatch level (tests).
    Accuracy of both paths: :mod:`qtstudio.kernels.matmul`.
    """
    if not isinstance(exact, bool):
        raise TypeError(f"qmatmul: exact must be True or False, got {exact!r}")
    if not isinstance(w, QTensor):
        raise TypeError(f"qmatmul: w must be a QTensor, got {type(w).__name__}")
    if len(w.shape) != 2:
        raise ValueError(f"qmatmul: w must be 2-D [m, k], got shape {w.shape}")
    enc = w.encoding
    nt = kernels.native_type(enc.ggml_type) if enc.ggml_type is not None else None
    if nt is None or not nt.can_dequantize:
        raise ValueError(f"qmatmul: encoding {enc.name} is not one the native library can decode")
    return qmatmul_blocks(x, w.data, (w.shape[0], w.shape[1]), enc.ggml_type,
                          threads=threads, exact=exact, isa=isa)
