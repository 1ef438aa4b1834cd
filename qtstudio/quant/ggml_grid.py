"""Rounding grids of ggml block types, for quantizers that pick every value themselves (GPTQ).

A ggml block stores its grid (scales, minimums, super-scales) in a header and one small integer
per value. GPTQ needs the grid fixed before it rounds the block's first column, then rounds each
column onto it and compensates the error in the columns still to come. This module:

- fixes a block's grid by running our own codec on the block's current (error-compensated)
  weights, with the importance weights the codec's imatrix path takes, and keeps its header;
- lists the grid's levels per row and sub-block by *decoding* header + constant quants through
  the native library, so a value GPTQ uses is by construction what ``qtstudio.dequantize``
  (and llama.cpp, whose decoders ours match bit for bit) reads back;
- packs the chosen integers into the block's quant fields, next to the kept header.

Supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from qtstudio.core.encodings import Encoding, get_encoding

# --- packing: integers [rows, B] -> the quant bytes of one block [rows, block_bytes] -------------


def _nibbles_32(q: np.ndarray) -> np.ndarray:
    """16 bytes: value l in the low nibble, value l + 16 in the high one (legacy 32-blocks)."""
    return ((q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)).astype(np.uint8)


def _qh_32(q: np.ndarray) -> np.ndarray:
    """Little-endian u32 whose bit j is value j's fifth bit."""
    bits = ((q >> 4) & 1).astype(np.uint32) << np.arange(32, dtype=np.uint32)
    return np.bitwise_or.reduce(bits, axis=1).astype("<u4").view(np.uint8).reshape(-1, 4)


def _pack_q4_0(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 2:18] = _nibbles_32(q)


def _pack_q4_1(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 4:20] = _nibbles_32(q)


def _pack_q5_0(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 2:6] = _qh_32(q)
    b[:, 6:22] = _nibbles_32(q)


def _pack_q5_1(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 4:8] = _qh_32(q)
    b[:, 8:24] = _nibbles_32(q)


def _pack_q8_0(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 2:34] = (q - 128).astype(np.int8).view(np.uint8)  # level k is the int8 k - 128


def _kq_nibbles(q: np.ndarray) -> np.ndarray:
    """128 bytes: per 64-value chunk c, byte 32c + l holds value 64c + l low, 64c + 32 + l high."""
    r = q.reshape(-1, 4, 2, 32) & 15
    return (r[:, :, 0] | (r[:, :, 1] << 4)).reshape(-1, 128).astype(np.uint8)


def _pack_q4_k(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 16:144] = _kq_nibbles(q)


def _pack_q5_k(b: np.ndarray, q: np.ndarray) -> None:
    hi = ((q.reshape(-1, 4, 2, 32) >> 4) & 1).astype(np.uint8)  # [rows, chunk, half, l]
    shifts = (2 * np.arange(4)[:, None] + np.arange(2)[None, :]).astype(np.uint8)
    qh = np.bitwise_or.reduce(hi << shifts[None, :, :, None], axis=(1, 2))
    b[:, 16:48] = qh
    b[:, 48:176] = _kq_nibbles(q)


def _pack_q6_k(b: np.ndarray, q: np.ndarray) -> None:
    for h in range(2):  # two halves of 128 values
        s = q[:, 128 * h:128 * (h + 1)].reshape(-1, 4, 32)  # quarter k holds values 32k + l
        lo, hi = s & 15, (s >> 4) & 3
        b[:, 64 * h:64 * h + 32] = (lo[:, 0] | (lo[:, 2] << 4)).astype(np.uint8)
        b[:, 64 * h + 32:64 * h + 64] = (lo[:, 1] | (lo[:, 3] << 4)).astype(np.uint8)
        b[:, 128 + 32 * h:128 + 32 * (h + 1)] = (
            hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)).astype(np.uint8)


def _k_2bit_planes(q: np.ndarray) -> np.ndarray:
    """64 bytes: per 128-value half n, byte 32n + l holds value 128n + 32j + l at bits 2j."""
    r = (q.reshape(-1, 2, 4, 32) & 3).astype(np.uint8)  # [rows, half, j, l]
    shifts = (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]
    return np.bitwise_or.reduce(r << shifts, axis=2).reshape(-1, 64)


def _pack_q2_k(b: np.ndarray, q: np.ndarray) -> None:
    b[:, 16:80] = _k_2bit_planes(q)  # scales 0:16, quants, then d and dmin


def _pack_q3_k(b: np.ndarray, q: np.ndarray) -> None:
    # hmask 0:32: bit 4n + j of byte l is the third bit of value 128n + 32j + l; quants
    # 32:96 as Q2_K's; scales and d follow
    hi = ((q.reshape(-1, 8, 32) >> 2) & 1).astype(np.uint8)
    b[:, 0:32] = np.bitwise_or.reduce(hi << np.arange(8, dtype=np.uint8)[None, :, None], axis=1)
    b[:, 32:96] = _k_2bit_planes(q)


def _pack_iq4_xs(b: np.ndarray, q: np.ndarray) -> None:
    # d, scales_h, scales_l in 0:8; then per 32-value sub-block Q4_0's 16 nibble bytes
    b[:, 8:136] = _nibbles_32(q.reshape(-1, 32)).reshape(-1, 128)


@dataclass(frozen=True)
class GGMLGridType:
    """What GPTQ needs to know about one ggml type's values."""

    name: str
    block: int          # values per block
    sub: int            # values sharing one (scale, minimum) pair inside a block
    levels: int         # integers per value: 0 .. levels - 1
    uniform: bool       # levels evenly spaced (rounding by division) or a lookup table
    pack: Callable[[np.ndarray, np.ndarray], None]


GRID_TYPES: dict[str, GGMLGridType] = {t.name: t for t in (
    GGMLGridType("Q4_0", 32, 32, 16, True, _pack_q4_0),
    GGMLGridType("Q4_1", 32, 32, 16, True, _pack_q4_1),
    GGMLGridType("Q5_0", 32, 32, 32, True, _pack_q5_0),
    GGMLGridType("Q5_1", 32, 32, 32, True, _pack_q5_1),
    GGMLGridType("Q8_0", 32, 32, 256, True, _pack_q8_0),
    GGMLGridType("IQ4_NL", 32, 32, 16, False, _pack_q4_0),
    GGMLGridType("Q4_K", 256, 32, 16, True, _pack_q4_k),
    GGMLGridType("Q5_K", 256, 32, 32, True, _pack_q5_k),
    GGMLGridType("Q6_K", 256, 16, 64, True, _pack_q6_k),
    GGMLGridType("Q2_K", 256, 16, 4, True, _pack_q2_k),
    GGMLGridType("Q3_K", 256, 16, 8, True, _pack_q3_k),
    GGMLGridType("IQ4_XS", 256, 32, 16, False, _pack_iq4_xs),
)}


def gptq_ggml_types() -> list[str]:
    return list(GRID_TYPES)


class BlockGrid:
    """The fixed grid of one column block of a matrix: header bytes and level values."""

    def __init__(self, kind: GGMLGridType, header: np.ndarray, table: torch.Tensor) -> None:
        self.kind = kind
        self.header = header    # uint8 [rows, block_bytes] (the codec's bytes)
        self.table = table      # float32 [rows, block // sub, levels]
        # per sub-block, what rounding onto its levels needs (made once: under act order the
        # columns of a block come in any order): the levels [nsub, rows, levels], and the first
        # level and inverse step (evenly spaced), or the levels sorted and their order (a
        # lookup table, whose order flips with the sign of the scale)
        self._levels = table.permute(1, 0, 2).contiguous()
        if kind.uniform:
            step = self._levels[:, :, 1] - self._levels[:, :, 0]
            self._a = self._levels[:, :, 0].contiguous()
            self._b = torch.where(step == 0, torch.zeros_like(step), 1.0 / step)
        else:
            self._a, self._b = torch.sort(self._levels, dim=2, stable=True)

    def _sub(self, sub: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._levels[sub], self._a[sub], self._b[sub]

    def round(self, k: int, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest level of column ``k`` of the block for each row: (integers, values)."""
        levels, a, b = self._sub(k // self.kind.sub)
        col = w[:, None]
        if self.kind.uniform:
            top = self.kind.levels - 1
            q = ((w - a) * b).round_().clamp_(0, top).long()
            # off by one at most (the decoder rounds too): look at both neighbours
            cand = torch.stack([(q - 1).clamp_(min=0), q, (q + 1).clamp_(max=top)], dim=1)
            vals = torch.gather(levels, 1, cand)
        else:
            pos = torch.searchsorted(a, col).clamp_(1, self.kind.levels - 1)
            cand = torch.cat([pos - 1, pos], dim=1)
            vals = torch.gather(a, 1, cand)
            cand = torch.gather(b, 1, cand)
        best = (vals - col).abs_().argmin(dim=1, keepdim=True)
        return torch.gather(cand, 1, best)[:, 0], torch.gather(vals, 1, best)[:, 0]

    def pack(self, q: np.ndarray) -> np.ndarray:
        out = self.header.copy()
        self.kind.pack(out, q.astype(np.int32))
        return out


def _level_table(enc: Encoding, kind: GGMLGridType, header: np.ndarray) -> torch.Tensor:
    """Every level's value per row and sub-block, decoded from the header. A value depends on
    its sub-block's header fields and its own integer only, so one probe block carries
    ``sub`` different levels per sub-block: ceil(levels / sub) decodes in all."""
    rows = header.shape[0]
    nsub = kind.block // kind.sub
    table = np.empty((rows, nsub, kind.levels), np.float32)
    if kind.name == "Q8_0":
        # fp16 d times an int8 is exact in float32, as decoded
        d = header[:, 0:2].copy().view("<f2").astype(np.float32)  # [rows, 1]
        table[:, 0, :] = d * (np.arange(256, dtype=np.float32) - 128)
        return torch.from_numpy(table)
    probe = header.copy()
    for first in range(0, kind.levels, kind.sub):
        n = min(kind.sub, kind.levels - first)
        pattern = np.zeros(kind.sub, np.int32)
        pattern[:n] = first + np.arange(n)
        kind.pack(probe, np.broadcast_to(np.tile(pattern, nsub), (rows, kind.block)))
        dec = enc.dequantize_rows(probe, kind.block).reshape(rows, nsub, kind.sub)
        table[:, :, first:first + n] = dec[:, :, :n]
    return torch.from_numpy(table)


class GGMLGridScheme:
    """Groups and grids of one matrix in one ggml type, for :func:`qtstudio.quant.gptq.gptq`."""

    def __init__(self, encoding: str | Encoding, n_cols: int, *, threads: int | None = None):
        self.encoding = get_encoding(encoding)
        kind = GRID_TYPES.get(self.encoding.name)
        if kind is None:
            raise ValueError(f"GPTQ cannot produce {self.encoding.name}; it takes "
                             f"{', '.join(GRID_TYPES)}")
        if n_cols % kind.block:
            raise ValueError(f"{kind.name} needs rows whose length is a multiple of "
                             f"{kind.block}, got {n_cols}")
        self.kind = kind
        self.n_cols = n_cols
        self.threads = threads

    @property
    def group_width(self) -> int:
        return self.kind.block

    def group_of(self, perm: np.ndarray) -> np.ndarray:
        """Group of each original column: its ggml block, whatever the processing order."""
        return np.arange(self.n_cols) // self.kind.block

    def group_columns(self, gid: int) -> np.ndarray:
        return np.arange(gid * self.kind.block, (gid + 1) * self.kind.block)

    def fix(self, gid: int, current: torch.Tensor, importance: np.ndarray) -> BlockGrid:
        x = np.ascontiguousarray(current.detach().cpu().numpy(), dtype=np.float32)
        imp = None
        if self.encoding.uses_imatrix:
            imp = np.ascontiguousarray(np.maximum(importance, 0), dtype=np.float32)
            if not np.any(imp > 0):
                imp = None
        header = self.encoding.quantize_rows(x, imatrix=imp, threads=self.threads)
        return BlockGrid(self.kind, header, _level_table(self.encoding, self.kind, header))

    def encode(self, q: np.ndarray, grids: dict[int, BlockGrid]) -> np.ndarray:
        """uint8 [rows, row_bytes]: every block's header and its packed integers."""
        rows = q.shape[0]
        nb = self.encoding.block_bytes
        out = np.empty((rows, self.n_cols // self.kind.block * nb), np.uint8)
        for gid in range(self.n_cols // self.kind.block):
            cols = self.group_columns(gid)
            out[:, gid * nb:(gid + 1) * nb] = grids[gid].pack(q[:, cols])
        return out
