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

import time
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
    seconds: float = 0.0      # the algorithm's own time (the factorisation too, when done here)


@dataclass(frozen=True)
class PreparedHessian:
    """A Hessian made ready for GPTQ: processing order, dead columns, dampening and the upper
    Cholesky factor of its inverse. Linears that share an input (q/k/v, gate/up) share one,
    so the factorisation, the cost that grows with the cube of the width, is done once."""

    n: int
    perm: torch.Tensor          # processing order (original column indices)
    dead: torch.Tensor          # bool [n]: inputs that were always zero
    importance: np.ndarray      # float32 [n]: diag(H) before dampening, 0 for dead columns
    hinv: torch.Tensor          # float32 [n, n]: upper factor of H^-1, in processing order
    damp: float
    desc_act: bool
    damp_percent: float


def prepare_hessian(hessian: np.ndarray | torch.Tensor, options: GPTQOptions | None = None,
                    ) -> PreparedHessian:
    """Check, order, dampen and factorise ``hessian`` (``sum x x^T``, [cols, cols])."""
    opt = options or GPTQOptions()
    opt.validate()
    h = torch.as_tensor(np.asarray(hessian) if not isinstance(hessian, torch.Tensor)
                        else hessian)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise GPTQError(f"a Hessian must be square, got {tuple(h.shape)}")
    n = int(h.shape[0])
    h = h.to(torch.float64).clone()
    if not torch.isfinite(h).all():
        raise GPTQError("Hessian holds NaN or Inf (non-finite calibration activations)")
    # before dampening and with dead columns at 0: the codec's importance weights
    importance = torch.diagonal(h).clamp(min=0).to(torch.float32).numpy().copy()
    dead = torch.diagonal(h) <= 0
    h[dead, dead] = 1.0
    if opt.desc_act:
        perm = torch.argsort(torch.diagonal(h), descending=True, stable=True)
    else:
        perm = torch.arange(n)
    h = h[perm][:, perm]
    damp = opt.damp_percent * float(torch.mean(torch.diagonal(h)))
    h.diagonal().add_(damp)
    return PreparedHessian(n=n, perm=perm, dead=dead, importance=importance,
                           hinv=_inverse_cholesky_upper(h).to(torch.float32), damp=damp,
                           desc_act=opt.desc_act, damp_percent=opt.damp_percent)


def gptq(weight: np.ndarray, hessian: np.ndarray | torch.Tensor | PreparedHessian,
         scheme: GridScheme, options: GPTQOptions | None = None, *,
         cancel: CancelToken | None = None) -> GPTQResult:
    """Quantize ``weight`` [rows, cols] onto ``scheme``'s grids, compensating with ``hessian``
    (``sum x x^T`` over the calibration inputs, [cols, cols], or one prepared for ``options``
    by :func:`prepare_hessian`)."""
    start = time.perf_counter()
    opt = options or GPTQOptions()
    opt.validate()
    cancel = cancel or CancelToken()
    w_np = np.asarray(weight, dtype=np.float32)
    if w_np.ndim != 2:
        raise GPTQError(f"GPTQ takes a 2-D weight, got shape {w_np.shape}")
    rows, n = w_np.shape
    if not np.isfinite(w_np).all():
        raise GPTQError("weight holds NaN or Inf")
    if isinstance(hessian, PreparedHessian):
        if (hessian.desc_act, hessian.damp_percent) != (opt.desc_act, opt.damp_percent):
            raise ValueError("the Hessian was prepared with other GPTQ options")
        ph = hessian
    else:
        ph = prepare_hessian(hessian, opt)
    if ph.n != n:
        raise GPTQError(f"Hessian must be {n}x{n} for a matrix of {n} columns, "
                        f"got {ph.n}x{ph.n}")
    w = torch.from_numpy(w_np.copy())
    w[:, ph.dead] = 0.0
    perm, hinv, importance_all, damp = ph.perm, ph.hinv, ph.importance, ph.damp
    perm_np = perm.numpy()
    group_of = np.asarray(scheme.group_of(perm_np))
    w = w[:, perm]

    # transposed, [columns, rows]: a column is one contiguous row, and the tail update of a
    # batch is one matrix product on contiguous memory
    wt = w.T.contiguous()
    q_t = torch.zeros((n, rows), dtype=torch.int32)
    v_t = torch.zeros((n, rows), dtype=torch.float32)
    grids: dict[int, Any] = {}
    pos_of = np.empty(n, np.int64)  # processing position of each original column
    pos_of[perm_np] = np.arange(n)
    members: dict[int, np.ndarray] = {}
    for gid in np.unique(group_of):
        members[int(gid)] = np.flatnonzero(group_of == gid)  # original columns, ascending
    first_of = {gid: int(pos_of[cols].min()) for gid, cols in members.items()}
    index_in_group = np.empty(n, np.int64)
    for cols in members.values():
        index_in_group[cols] = np.arange(len(cols))
    col_gid = group_of[perm_np]            # group of each processing position
    col_k = index_in_group[perm_np]        # its index inside the group
    bs = opt.block_size
    for i1 in range(0, n, bs):
        cancel.check()
        i2 = min(i1 + bs, n)
        w1 = wt[i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            gid = int(col_gid[i1 + i])
            if first_of[gid] == i1 + i:
                cols = members[gid]
                current = _current_columns(wt, w1, err1, hinv, pos_of[cols], i1, i2, i)
                grids[gid] = scheme.fix(gid, current, importance_all[cols])
            x = w1[i]
            q, v = grids[gid].round(int(col_k[i1 + i]), x)
            q_t[i1 + i] = q
            v_t[i1 + i] = v
            e = (x - v) / hinv1[i, i]
            if i + 1 < i2 - i1:
                w1[i + 1:].addr_(hinv1[i, i + 1:], e, alpha=-1.0)
            err1[i] = e
        if i2 < n:
            wt[i2:].addmm_(hinv[i1:i2, i2:].T, err1, alpha=-1.0)
    inv = torch.argsort(perm)
    return GPTQResult(values=v_t[inv].T.contiguous().numpy(),
                      q=q_t[inv].T.contiguous().numpy(), grids=grids, perm=perm_np,
                      group_of=group_of, dead_columns=int(ph.dead.sum()), damp=damp,
                      seconds=time.perf_counter() - start)


def _current_columns(wt: torch.Tensor, w1: torch.Tensor, err1: torch.Tensor,
                     hinv: torch.Tensor, positions: np.ndarray, i1: int, i2: int, i: int,
                     ) -> torch.Tensor:
    """The group's columns [rows, len] as they stand now: batch columns from the batch copy,
    later ones with the updates of this batch's already-rounded columns applied (pending)."""
    if np.any(positions < i1 + i):
        raise AssertionError("group column rounded before its grid was fixed")
    pos = torch.from_numpy(positions)
    inside = pos < i2
    out = torch.empty((len(positions), wt.shape[1]), dtype=torch.float32)
    out[inside] = w1[pos[inside] - i1]
    later = pos[~inside]
    if len(later):
        rest = wt[later]
        if i:
            rest = rest - hinv[i1:i1 + i][:, later].T @ err1[:i]
        out[~inside] = rest
    return out.T


def _inverse_cholesky_upper(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor U of H^-1 (H^-1 = U^T U); GPTQError when H is not positive
    definite. With J the order reversal and J H J = L L^T, H = (J L J)(J L J)^T, so
    U = (J L J)^-1 = J L^-1 J: one factorisation and one triangular inverse."""
    low, info = torch.linalg.cholesky_ex(torch.flip(h, (0, 1)))
    if int(info) != 0 or not torch.isfinite(low).all():
        raise GPTQError("the dampened Hessian is not positive definite; raise the dampening "
                        "(--gptq-damp) or give more calibration data")
    return torch.flip(_lower_inverse(low), (0, 1))


def _lower_inverse(low: torch.Tensor) -> torch.Tensor:
    """Inverse of a lower triangular matrix by halves, [[A, 0], [B, C]]^-1 =
    [[A^-1, 0], [-C^-1 B A^-1, C^-1]]: matrix products do the work (torch has no trtri)."""
    n = low.shape[0]
    if n <= 256:
        eye = torch.eye(n, dtype=low.dtype)
        return torch.linalg.solve_triangular(low, eye, upper=False)
    k = n // 2
    a = _lower_inverse(low[:k, :k])
    c = _lower_inverse(low[k:, k:])
    out = torch.zeros_like(low)
    out[:k, :k] = a
    out[k:, k:] = c
    out[k:, :k] = -(c @ (low[k:, :k] @ a))
    return out


def hessian_error(weight: np.ndarray, values: np.ndarray, hessian: np.ndarray) -> float:
    """tr((W - Q) H (W - Q)^T): the summed squared output error over the calibration inputs."""
    e = torch.from_numpy(np.asarray(weight, np.float64) - np.asarray(values, np.float64))
    h = torch.as_tensor(np.asarray(hessian), dtype=torch.float64)
    return float(((e @ h) * e).sum())
