"""Accumulating a linear layer's input Hessian ``H = sum x x^T`` from calibration activations."""

from __future__ import annotations

import numpy as np
import torch


class HessianAccumulator:
    """Sum of ``x^T x`` over every row of every batch of inputs fed to one linear layer.

    Kept in float64: a sum over many thousand tokens in float32 loses the small eigenvalues
    GPTQ's Cholesky factorisation depends on. Memory is one [n, n] matrix per layer.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.h = torch.zeros((n, n), dtype=torch.float64)
        self.rows = 0

    def add(self, x: np.ndarray | torch.Tensor) -> None:
        t = torch.as_tensor(x)
        if t.shape[-1] != self.n:
            raise ValueError(f"activations of width {t.shape[-1]} for a layer of {self.n} inputs")
        t = t.reshape(-1, self.n).to(torch.float64)
        if not torch.isfinite(t).all():
            raise ValueError("calibration activations hold NaN or Inf")
        self.h.addmm_(t.T, t)
        self.rows += t.shape[0]

    def hessian(self) -> torch.Tensor:
        """The sum (not the mean: GPTQ's updates and dampening are scale-free)."""
        return self.h
