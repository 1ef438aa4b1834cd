"""8-bit linear quantization: per-tensor or per-channel, symmetric or asymmetric.

These are the encodings NNEF's ``zero_point_linear_quantize(scale, zero_point, bits = 8,
signed = true, ...)`` describes, so the NNEF exporter can write them as they are. A value decodes
as ``scale * (q - zero_point)``.

Byte layout of one row of ``n`` values (little-endian), the same for every row:

=================  ======================  =============================================
encoding           row header              then
=================  ======================  =============================================
INT8_PT_SYM        f32 scale               n x int8 q in [-127, 127], zero point 0
INT8_PC_SYM        f32 scale               n x int8 q in [-127, 127], zero point 0
INT8_PT_ASYM       f32 scale, i32 zero pt  n x int8 q in [-128, 127]
INT8_PC_ASYM       f32 scale, i32 zero pt  n x int8 q in [-128, 127]
=================  ======================  =============================================

Per-channel ("PC") computes a scale for each row (output channel); per-tensor ("PT") computes one
for the whole tensor and repeats it in every row header, so rows stay self-describing (4 or 8
bytes per row: 0.008 bits per weight on a 4096-wide row). Per-tensor statistics need the whole
tensor, so jobs must not split these tensors into row chunks (``needs_whole_tensor``).

Symmetric: scale = max|x| / 127, q = round(x / scale). Asymmetric: the range [min(x, 0),
max(x, 0)] maps onto [-128, 127]: scale = (hi - lo) / 255, zero_point = round(-128 - lo / scale),
q = clamp(round(x / scale) + zero_point). Rounding is half to even.
"""

from __future__ import annotations

import numpy as np

from .encoding_base import NNEF, BlockParameters, Encoding


class Int8Encoding(Encoding):
    uses_imatrix = False
    export_formats = frozenset({NNEF})

    def __init__(self, *, per_channel: bool, symmetric: bool) -> None:
        self.per_channel = per_channel
        self.symmetric = symmetric
        self.needs_whole_tensor = not per_channel
        self.header_bytes = 4 if symmetric else 8
        self.name = f"INT8_{'PC' if per_channel else 'PT'}_{'SYM' if symmetric else 'ASYM'}"
        self.block = BlockParameters(1, 1, row_overhead_bytes=self.header_bytes)
        self.description = (f"int8, {'per-channel' if per_channel else 'per-tensor'} "
                            f"{'symmetric' if symmetric else 'asymmetric (zero point)'} scale")

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        return len(shape) >= 1 and all(d > 0 for d in shape)

    # --- parameters ------------------------------------------------------------------------
    def _params(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero point) per row, float64 / int64."""
        rows = x.shape[0]
        axis = 1 if self.per_channel else None
        if self.symmetric:
            amax = np.max(np.abs(x), axis=axis) if x.size else np.zeros(rows)
            scale = np.asarray(amax, dtype=np.float64) / 127.0
            zp = np.zeros_like(scale, dtype=np.int64)
        else:
            lo = np.minimum(np.min(x, axis=axis), 0.0).astype(np.float64)
            hi = np.maximum(np.max(x, axis=axis), 0.0).astype(np.float64)
            scale = (hi - lo) / 255.0
            with np.errstate(divide="ignore", invalid="ignore"):
                zp = np.where(scale > 0, np.rint(-128.0 - lo / np.where(scale > 0, scale, 1)), 0)
            zp = np.clip(zp, -128, 127).astype(np.int64)
        scale = np.broadcast_to(np.float32(scale).astype(np.float32), (rows,)).copy()
        zp = np.broadcast_to(zp, (rows,)).copy()
        return scale, zp

    def quantize_rows(self, x: np.ndarray, *, imatrix: np.ndarray | None = None,
                      threads: int | None = None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"x must be 2-D (rows, values), got shape {x.shape}")
        rows, n = x.shape
        scale, zp = self._params(x)
        s = scale.astype(np.float64)[:, None]
        inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        lo = -127 if self.symmetric else -128
        q = np.clip(np.rint(x * inv) + zp[:, None], lo, 127).astype(np.int8)
        out = np.empty((rows, self.header_bytes + n), dtype=np.uint8)
        out[:, 0:4] = scale.astype("<f4").view(np.uint8).reshape(rows, 4)
        if not self.symmetric:
            out[:, 4:8] = zp.astype("<i4").view(np.uint8).reshape(rows, 4)
        out[:, self.header_bytes:] = q.view(np.uint8)
        return out

    def split(self, data: np.ndarray, n_per_row: int,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q int8 [rows, n], scale f32 [rows], zero_point int32 [rows]) of encoded rows."""
        data = np.ascontiguousarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != self.row_bytes(n_per_row):
            raise ValueError(f"{self.name} rows of {n_per_row} values take "
                             f"{self.row_bytes(n_per_row)} bytes, got shape {data.shape}")
        rows = data.shape[0]
        scale = data[:, 0:4].copy().view("<f4").reshape(rows)
        if self.symmetric:
            zp = np.zeros(rows, dtype=np.int32)
        else:
            zp = data[:, 4:8].copy().view("<i4").reshape(rows)
        q = data[:, self.header_bytes:].view(np.int8)
        return q, scale, zp

    def dequantize_rows(self, data: np.ndarray, n_per_row: int, *,
                        threads: int | None = None) -> np.ndarray:
        q, scale, zp = self.split(data, n_per_row)
        return ((q.astype(np.float32) - zp[:, None].astype(np.float32))
                * scale[:, None]).astype(np.float32)


INT8_ENCODINGS = tuple(Int8Encoding(per_channel=pc, symmetric=sym)
                       for pc in (False, True) for sym in (True, False))
