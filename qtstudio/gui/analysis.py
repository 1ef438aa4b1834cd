"""Qt-free helpers behind the window's plots: reading a quantize report's metrics, and the
level grid of one block for the histogram.

The jobs the plots show (benchmark, what-if) live in qtstudio.jobs, shared with the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qtstudio.core.encodings import get_encoding
from qtstudio.core.qtensor import dequantize, quantize


def report_metrics(report: Any, plan: Any) -> Iterable[tuple[str, str, dict]]:
    """(name, encoding, metrics) for every tensor a quantize report measured."""
    tensors = getattr(report, "tensors", None)
    if tensors is None and isinstance(report, dict):
        tensors = report.get("tensors")
    if isinstance(tensors, dict):
        tensors = [{"name": k, **v} for k, v in tensors.items()]
    for t in tensors or []:
        d = t if isinstance(t, dict) else asdict(t)
        name = d["name"]
        enc = d.get("encoding") or plan.entry(name).encoding
        metrics = d.get("metrics", d)
        yield name, enc, metrics


# ---- histogram grid ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockGrid:
    """The values one block of a tensor decodes to under an encoding."""

    row: int
    #: first column of the block (or of the sub-block of a k-quant super-block)
    col: int
    size: int
    #: decoded values the block actually uses (sorted)
    used: np.ndarray
    #: the whole ladder of levels when the block's values sit on an evenly spaced grid (legacy
    #: blocks, k-quant sub-blocks), else the used values
    levels: np.ndarray
    #: distance between neighbouring levels (the block's effective scale) when evenly spaced
    step: float | None
    #: how many levels the encoding's ladder has (16 for Q4_0), None when it is not a ladder
    ladder: int | None = None


#: levels of each integer ladder, and the lowest code's value in steps when zero is a level
#: (symmetric ladders: d × (q + low)); None: an offset ladder (m + d × q) whose base depends on
#: the block's minimum
LADDERS: dict[str, tuple[int, int | None]] = {
    "Q4_0": (16, -8), "Q5_0": (32, -16), "Q8_0": (255, -127), "Q3_K": (8, -4), "Q6_K": (64, -32),
    "Q4_1": (16, None), "Q5_1": (32, None), "Q2_K": (4, None), "Q4_K": (16, None),
    "Q5_K": (32, None)}

#: values that share one scale inside a 256-value k-quant super-block
_SUB_BLOCK = {"Q2_K": 16, "Q3_K": 16, "Q4_K": 32, "Q5_K": 32, "Q6_K": 16}


def block_grid(w: np.ndarray, encoding: str) -> BlockGrid | None:
    """Quantize a typical block (median largest-|w|) and read back the levels it can take.

    For Q4_0 that gives d × (q − 8), q = 0..15: the 16 levels of that block's scale; for a k-quant,
    the ladder of one sub-block (its own scale and minimum). Float encodings have no grid (None).
    """
    enc = get_encoding(encoding)
    if enc.name in ("F32", "F16", "BF16"):
        return None
    w2 = w.reshape(-1, w.shape[-1]) if w.ndim != 2 else w
    if not enc.accepts_shape(tuple(w2.shape)) or w2.size == 0:
        return None
    size = _SUB_BLOCK.get(enc.name, min(enc.elements_per_block, 32))
    if w2.shape[1] % size:
        size = enc.elements_per_block
    blocks = np.abs(w2.reshape(w2.shape[0], -1, size)).max(axis=2)
    flat = np.argsort(blocks, axis=None)[blocks.size // 2]  # the median block: a typical scale
    row, blk = divmod(int(flat), blocks.shape[1])
    col = blk * size
    decoded = dequantize(quantize(np.ascontiguousarray(w2[row:row + 1], dtype=np.float32),
                                  enc))[0]
    used = np.unique(decoded[col:col + size])
    levels, step = used, None
    ladder = LADDERS.get(enc.name)
    if used.size >= 2:
        diffs = np.diff(used)
        d = float(diffs.min())
        # Evenly spaced (up to float rounding of the scale): fill in the rungs left unused.
        if d > 0 and np.allclose(diffs / d, np.round(diffs / d), atol=1e-3):
            n = round(float(used[-1] - used[0]) / d)
            if ladder is not None and ladder[1] is not None and \
                    np.allclose(used / d, np.round(used / d), atol=1e-3):
                # zero is a rung: the whole ladder is known, used or not (Q4_0: 16 levels).
                # ggml's scale may be negative (Q4_0: d = max / -8), which mirrors the ladder.
                n_levels, low = ladder
                k_lo, k_hi = round(float(used[0]) / d), round(float(used[-1]) / d)
                mirrored = k_hi == -low or k_lo < low
                start = -(low + n_levels - 1) if mirrored else low
                levels = d * (start + np.arange(n_levels))
                step = d
            elif n <= 1024:
                levels = used[0] + d * np.arange(n + 1)
                step = d
    return BlockGrid(row, col, size, used, levels, step, ladder[0] if ladder else None)

