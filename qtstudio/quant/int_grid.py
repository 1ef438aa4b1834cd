"""The integer grid of Hugging Face GPTQ checkpoints: ``scale * (q - zero)`` per row and group.

The seed's quantization config (MAX ``QuantizationConfig(quant_method, bits, group_size,
desc_act, sym)``) describes exactly this grid. A group's scale and zero point come from the
min/max of its current weights (with 0 inside the range, as AutoGPTQ / GPTQModel do); the scale
is rounded to float16 at once, because the checkpoint stores it so, and every value GPTQ uses is
what a loader decodes from the stored fp16 scale and integer zero. With ``desc_act`` the groups
are consecutive in processing order, so ``g_idx`` (group of each input column) is not sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SUPPORTED_BITS = (2, 4, 8)  # the widths that pack whole values into int32 words


@dataclass(frozen=True)
class IntGridConfig:
    bits: int = 4
    group_size: int = 128   # -1: one group per row
    sym: bool = True

    def validate(self, n_cols: int) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"GPTQ checkpoint bits must be one of "
                             f"{', '.join(map(str, SUPPORTED_BITS))}, got {self.bits}")
        if self.group_size != -1 and self.group_size < 1:
            raise ValueError(f"group size must be positive or -1, got {self.group_size}")
        if self.group_size != -1 and n_cols % self.group_size:
            raise ValueError(f"group size {self.group_size} does not divide the {n_cols} "
                             "input columns")
        if n_cols % (32 // self.bits):
            raise ValueError(f"{n_cols} input columns do not pack into int32 words of "
                             f"{32 // self.bits} {self.bits}-bit values")

    @property
    def maxq(self) -> int:
        return (1 << self.bits) - 1


class IntGrid:
    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> None:
        self.scale = scale    # float32 [rows], exactly a float16 value
        self.zero = zero      # float32 [rows], an integer in [0, maxq]
        self.maxq = maxq

    def round(self, k: int, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.clamp(torch.round(w / self.scale) + self.zero, 0, self.maxq)
        return q.long(), self.scale * (q - self.zero)


class IntGridScheme:
    def __init__(self, config: IntGridConfig, n_cols: int) -> None:
        config.validate(n_cols)
        self.config = config
        self.n_cols = n_cols

    def group_of(self, perm: np.ndarray) -> np.ndarray:
        if self.config.group_size == -1:
            return np.zeros(self.n_cols, np.int64)
        pos = np.empty(self.n_cols, np.int64)
        pos[perm] = np.arange(self.n_cols)
        return pos // self.config.group_size

    def fix(self, gid: int, current: torch.Tensor, importance: np.ndarray) -> IntGrid:
        c = self.config
        x = current.to(torch.float32)
        xmin = torch.clamp(x.min(dim=1).values, max=0)
        xmax = torch.clamp(x.max(dim=1).values, min=0)
        if c.sym:
            xmax = torch.maximum(xmin.abs(), xmax)
            xmin = torch.where(xmin < 0, -xmax, xmin)
        empty = (xmin == 0) & (xmax == 0)
        xmin = torch.where(empty, -torch.ones_like(xmin), xmin)
        xmax = torch.where(empty, torch.ones_like(xmax), xmax)
        scale = (xmax - xmin) / c.maxq
        # the stored precision; keep it a normal float16 so it never decodes to zero
        scale = scale.clamp(min=2.0 ** -14).to(torch.float16).to(torch.float32)
        if c.sym:
            zero = torch.full_like(scale, float((c.maxq + 1) // 2))
        else:
            # at least 1: the checkpoint stores zero - 1 in ``bits`` bits, so 0 cannot be
            # written (AutoGPTQ's "v1" format); a group that wanted 0 loses its top level
            zero = torch.clamp(torch.round(-xmin / scale), 1, c.maxq)
        return IntGrid(scale, zero, c.maxq)
