"""GPTQ: round a linear layer's weights one input column at a time, pushing each column's
rounding error onto the columns not yet rounded, weighted by the inverse Hessian of the layer's
output error (Frantar et al., "GPTQ", 2022; the Optimal Brain Surgeon update, done in order).

For ``y = W x`` and calibration inputs X, the output error of a weight change E is
``sum ||E x||^2 = tr(E H E^T)`` with ``H = sum x x^T``. Rounding column j costs
``(w_j - q_j)^2 / [H^-1]_jj`` and the best correction of the remaining columns is
``-(w_j - q_j) / [H^-1]_jj * [H^-1]_j,rest``. With the upper Cholesky factor U of H^-1
(``H^-1 = U^T U``), the rows of U carry exactly those updates for a left-to-right order, so one
factorisation serves the whole matrix.

- **Dampening**: ``percdamp * mean(diag H)`` is added to the diagonal so H is safely positive
  definite when calibration data is short or columns are collinear.
- **Dead columns** (inputs that were always zero) cannot affect the output: their weights are
  set to zero and their diagonal to 1 so the factorisation stays defined.
- **Lazy batches**: updates inside a batch of ``block_size`` columns are applied at once to the
  rest of the matrix (one matrix product per batch instead of one rank-1 update per column).
- **Act order** (``desc_act``): columns are processed by decreasing ``diag(H)``, the ones the
  output feels most first, while the most error can still be compensated; the permutation is
  undone for the output, and grids keep their groups (ggml blocks are contiguous in the file).
- **Grids** come from a scheme (:mod:`qtstudio.quant.ggml_grid`, :mod:`qtstudio.quant.int_grid`):
  a group's grid is fixed from the group's current, error-compensated weights when GPTQ reaches
  its first column, including the updates still pending inside the current batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from qtstudio.core.progress import CancelToken


class Grid(Protocol):
    def round(self, k: int, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class GridScheme(Protocol):
    def group_of(self, perm: np.ndarray) -> np.ndarray: ...
    def fix(self, gid: int, current: torch.Tensor, importance: np.ndarray) -> Any: ...


class GPTQError(ValueError):
    """The inputs cannot be quantized (shape mismatch, non-finite Hessian)."""


@dataclass(frozen=True)
class GPTQOptions:
    """The algorithm's knobs. ``bits``/``group_size``/``sym`` of the seed's quantization config
    belong to the grid (a ggml type fixes them; the Hugging Face export takes them)."""

    damp_percent: float = 0.01
    block_size: int = 128
    desc_act: bool = False

    def validate(self) -> None:
        if not 0 < self.damp_percent < 1:
            raise ValueError(f"GPTQ dampening must be in (0, 1), got {self.damp_percent}")
        if self.block_size < 1:
            raise ValueError(f"GPTQ block size must be at least 1, got {self.block_size}")


@dataclass
class GPTQResult:
    values: np.ndarray        # float32 [rows, cols]: what the grids decode to, original order
    q: np.ndarray             # int32 [rows, cols]: level of each value, original order
    grids: dict[int, Any]     # group id -> fixed grid
    perm: np.ndarray          # processing order (original column indices)
    group_of: np.ndarray      # group id of each original column
    dead_columns: int
    damp: float               # the value added to the diagonal


def _prepare_hessian(h: np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    h = torch.as_tensor(np.asarray(h) if not isinstance(h, torch.Tensor) else h)
    if h.shape != (n, n):
        raise GPTQError(f"Hessian must be {n}x{n} for a matrix of {n} columns, "
                        f"got {tuple(h.shape)}")
    h = h.to(torch.float64).clone()
    if not torch.isfinite(h).all():
        raise GPTQError("Hessian holds NaN or Inf (non-finite calibration activations)")
    return h


def gptq(weight: np.ndarray, hessian: np.ndarray | torch.Tensor, scheme: GridScheme,
         options: GPTQOptions | None = None, *, cancel: CancelToken | None = None,
         ) -> GPTQResult:
    """Quantize ``weight`` [rows, cols] onto ``scheme``'s grids, compensating with ``hessian``
    (``sum x x^T`` over the calibration inputs, [cols, cols])."""
    opt = options or GPTQOptions()
    opt.validate()
    cancel = cancel or CancelToken()
    w_np = np.asarray(weight, dtype=np.float32)
    if w_np.ndim != 2:
        raise GPTQError(f"GPTQ takes a 2-D weight, got shape {w_np.shape}")
    rows, n = w_np.shape
    if not np.isfinite(w_np).all():
        raise GPTQError("weight holds NaN or Inf")
    h = _prepare_hessian(hessian, n)
    w = torch.from_numpy(w_np.copy())

    # before dampening and with dead columns at 0: the codec's importance weights
    importance_all = torch.diagonal(h).clamp(min=0).to(torch.float32).numpy().copy()
    dead = torch.diagonal(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    if opt.desc_act:
        perm = torch.argsort(torch.diagonal(h), descending=True, stable=True)
    else:
        perm = torch.arange(n)
    perm_np = perm.numpy()
    group_of = np.asarray(scheme.group_of(perm_np))
    w = w[:, perm].contiguous()
    h = h[perm][:, perm]

    damp = opt.damp_percent * float(torch.mean(torch.diagonal(h)))
    h.diagonal().add_(damp)
    hinv = _inverse_cholesky_upper(h).to(torch.float32)

    q_levels = torch.zeros((rows, n), dtype=torch.int32)
    values = torch.zeros((rows, n), dtype=torch.float32)
    grids: dict[int, Any] = {}
    pos_of = np.empty(n, np.int64)  # processing position of each original column
    pos_of[perm_np] = np.arange(n)
    members: dict[int, np.ndarray] = {}
    for gid in np.unique(group_of):
        members[int(gid)] = np.flatnonzero(group_of == gid)  # original columns, ascending
    bs = opt.block_size
    for i1 in range(0, n, bs):
        cancel.check()
        i2 = min(i1 + bs, n)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm_np[i1 + i])
            gid = int(group_of[col])
            grid = grids.get(gid)
            if grid is None:
                cols = members[gid]
                current = _current_columns(w, w1, err1, hinv, pos_of[cols], i1, i2, i)
                grid = grids[gid] = scheme.fix(gid, current, importance_all[cols])
            k = int(np.searchsorted(members[gid], col))
            x = w1[:, i]
            q, v = grid.round(k, x)
            q_levels[:, i1 + i] = q.to(torch.int32)
            values[:, i1 + i] = v
            d = hinv1[i, i]
            e = (x - v) / d
            w1[:, i:] -= e[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    inv = torch.argsort(perm)
    return GPTQResult(values=values[:, inv].numpy(), q=q_levels[:, inv].numpy(), grids=grids,
                      perm=perm_np, group_of=group_of, dead_columns=int(dead.sum()), damp=damp)


def _current_columns(w: torch.Tensor, w1: torch.Tensor, err1: torch.Tensor, hinv: torch.Tensor,
                     positions: np.ndarray, i1: int, i2: int, i: int) -> torch.Tensor:
    """The group's columns as they stand now: batch columns from the batch copy, later ones
    with the updates of this batch's already-rounded columns applied (they are pending)."""
    out = torch.empty((w.shape[0], len(positions)), dtype=torch.float32)
    for j, p in enumerate(positions):
        p = int(p)
        if i1 <= p < i2:
            out[:, j] = w1[:, p - i1]
        elif p >= i2:
            out[:, j] = w[:, p] - (err1[:, :i] @ hinv[i1:i1 + i, p] if i else 0.0)
        else:  # already rounded: cannot happen at a group's first column
            raise AssertionError("group column rounded before its grid was fixed")
    return out


def _inverse_cholesky_upper(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H^-1; raises GPTQError when H is not positive definite."""
    try:
        low = torch.linalg.cholesky(h)
        hinv = torch.cholesky_inverse(low)
        return torch.linalg.cholesky(hinv, upper=True)
    except torch.linalg.LinAlgError:
        raise GPTQError("the dampened Hessian is not positive definite; raise the dampening "
                        "(--gptq-damp) or give more calibration data") from None


def hessian_error(weight: np.ndarray, values: np.ndarray, hessian: np.ndarray) -> float:
    """tr((W - Q) H (W - Q)^T): the summed squared output error over the calibration inputs."""
    e = torch.from_numpy(np.asarray(weight, np.float64) - np.asarray(values, np.float64))
    h = torch.as_tensor(np.asarray(hessian), dtype=torch.float64)
    return float(((e @ h) * e).sum())
