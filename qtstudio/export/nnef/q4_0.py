"""Q4_0 blocks for tract, with a choice of scale calibration.

``minmax`` is ggml's reference quantizer (the native library's bytes): each block of 32 takes
the scale that maps its largest-magnitude value onto -8. ``mse`` starts there and tries
``grid`` smaller scales per block, down to ``maxshrink`` of the min-max one, keeping for each
block the scale whose reconstruction has the lowest mean squared error. The min-max block is
the starting candidate, so the search can only lower the error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qtstudio.core.qtensor import dequantize, quantize

BLOCK = 32
BLOCK_BYTES = 18
CALIBRATIONS = ("minmax", "mse")


@dataclass
class Q4Result:
    blocks: np.ndarray  # uint8 [rows, row/32*18]
    decoded: np.ndarray  # float32 [rows, row]
    mse_minmax: float
    mse: float
    calibration: str

    @property
    def gain(self) -> float:
        """Relative MSE reduction over min-max (0 when min-max was kept)."""
        return 0.0 if self.mse_minmax == 0 else (self.mse_minmax - self.mse) / self.mse_minmax


def _block_scales(blocks: np.ndarray) -> np.ndarray:
    """fp16 scales of every block, as float32 [rows, nblocks]."""
    rows = blocks.shape[0]
    b = blocks.reshape(rows, -1, BLOCK_BYTES)
    return b[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)


def _codes(x: np.ndarray, d16: np.ndarray) -> np.ndarray:
    """4-bit codes of blocks ``x`` [..., 32] for fp16-representable scales ``d16`` [...]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(d16 != 0, 1.0 / d16, 0.0).astype(np.float32)
    return np.clip(np.rint(x * inv[..., None]) + 8, 0, 15).astype(np.uint8)


def pack_blocks(codes: np.ndarray, d16: np.ndarray) -> np.ndarray:
    """ggml layout: fp16 scale, then byte j = code j (low nibble) | code j+16 (high nibble)."""
    rows, nb = d16.shape
    out = np.empty((rows, nb, BLOCK_BYTES), dtype=np.uint8)
    out[:, :, :2] = d16.astype(np.float16)[..., None].view(np.uint8)
    out[:, :, 2:] = codes[..., :16] | (codes[..., 16:] << 4)
    return out.reshape(rows, nb * BLOCK_BYTES)


def quantize_q4_0(w: np.ndarray, calibration: str = "minmax", *, grid: int = 100,
                  maxshrink: float = 0.8, threads: int | None = None) -> Q4Result:
    """Quantize a float32 [rows, n] matrix (n a multiple of 32) to Q4_0 blocks."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown Q4_0 calibration {calibration!r}; choose one of "
                         f"{', '.join(CALIBRATIONS)}")
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % BLOCK:
        raise ValueError(f"Q4_0 needs a matrix whose rows hold a multiple of {BLOCK} values; "
                         f"got shape {w.shape}")
    if not 0.0 < maxshrink <= 1.0 or grid < 1:
        raise ValueError("grid must be >= 1 and maxshrink in (0, 1]")
    qt = quantize(w, "Q4_0", threads=threads)
    blocks = qt.data.reshape(w.shape[0], -1)
    decoded = dequantize(qt, threads=threads)
    rows, n = w.shape
    x = w.reshape(rows, n // BLOCK, BLOCK)
    best_err = ((x - decoded.reshape(x.shape)) ** 2).mean(axis=2)
    mse_minmax = float(best_err.mean())
    if calibration == "minmax":
        return Q4Result(blocks, decoded, mse_minmax, mse_minmax, calibration)

    # rows in chunks keep the search's temporaries small for large matrices
    d0 = _block_scales(blocks)
    merged = blocks.reshape(rows, -1, BLOCK_BYTES).copy()
    step = (1.0 - maxshrink) / grid
    chunk = max(1, (1 << 20) // n)
    any_better = False
    for r0 in range(0, rows, chunk):
        sl = slice(r0, min(rows, r0 + chunk))
        xs, ds, err0 = x[sl], d0[sl], best_err[sl]
        best_d = ds.copy()
        best_codes = np.zeros(xs.shape, dtype=np.uint8)
        improved = np.zeros(err0.shape, dtype=bool)
        for k in range(1, grid + 1):
            d16 = (ds * (1.0 - k * step)).astype(np.float16).astype(np.float32)
            codes = _codes(xs, d16)
            err = (((codes.astype(np.float32) - 8.0) * d16[..., None] - xs) ** 2).mean(axis=2)
            better = err < err0
            if better.any():
                err0 = np.where(better, err, err0)
                best_d = np.where(better, d16, best_d)
                best_codes[better] = codes[better]
                improved |= better
        if improved.any():
            any_better = True
            # blocks the search improved get new bytes; the rest keep ggml's reference bytes
            new_blocks = pack_blocks(best_codes, best_d).reshape((*improved.shape, BLOCK_BYTES))
            merged[sl][improved] = new_blocks[improved]
    if not any_better:
        return Q4Result(blocks, decoded, mse_minmax, mse_minmax, calibration)
    merged = merged.reshape(rows, -1)
    new_decoded = dequantize(type(qt)(merged, w.shape, "Q4_0"), threads=threads)
    mse = float(((w - new_decoded) ** 2).mean())
    return Q4Result(merged, new_decoded, mse_minmax, mse, calibration)
