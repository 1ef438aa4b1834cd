"""Output-quality measures accumulated chunk by chunk.

``KLAccumulator`` takes reference and quantized logits for a chunk of positions and keeps only
per-position numbers (KL, both negative log-likelihoods, top-1 agreement): memory grows with the
number of positions, never with positions x vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class KLAccumulator:
    def __init__(self) -> None:
        self._kl: list[np.ndarray] = []
        self._nll_ref: list[np.ndarray] = []
        self._nll_q: list[np.ndarray] = []
        self._top1: list[np.ndarray] = []

    def add(self, ref_logits: torch.Tensor, q_logits: torch.Tensor,
            targets: torch.Tensor | None) -> None:
        """Logits [n, vocab] of the same n positions; targets [n] (the next tokens) or None."""
        import torch

        lr = torch.log_softmax(ref_logits.to(torch.float64), dim=-1)
        lq = torch.log_softmax(q_logits.to(torch.float64), dim=-1)
        kl = (lr.exp() * (lr - lq)).sum(-1).clamp(min=0.0)
        self._kl.append(kl.numpy())
        self._top1.append((ref_logits.argmax(-1) == q_logits.argmax(-1)).numpy())
        if targets is not None:
            t = targets.reshape(-1, 1)
            self._nll_ref.append((-lr.gather(-1, t)).reshape(-1).numpy())
            self._nll_q.append((-lq.gather(-1, t)).reshape(-1).numpy())

    @staticmethod
    def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    @property
    def kl(self) -> np.ndarray:
        return self._cat(self._kl, np.float64)

    @property
    def nll_reference(self) -> np.ndarray:
        return self._cat(self._nll_ref, np.float64)

    @property
    def nll_quantized(self) -> np.ndarray:
        return self._cat(self._nll_q, np.float64)

    @property
    def top1(self) -> np.ndarray:
        return self._cat(self._top1, bool)


def kl_summary(kl: np.ndarray) -> dict[str, float]:
    if kl.size == 0:
        return {"kl_mean": 0.0, "kl_median": 0.0, "kl_p99": 0.0, "kl_max": 0.0}
    return {"kl_mean": float(kl.mean()), "kl_median": float(np.median(kl)),
            "kl_p99": float(np.percentile(kl, 99)), "kl_max": float(kl.max())}


def perplexity(nll: np.ndarray) -> float:
    return float(np.exp(nll.mean())) if nll.size else float("nan")
