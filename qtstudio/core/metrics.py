"""How far a decoded tensor is from the original: the numbers shown per tensor everywhere."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from qtstudio.kernels.api import column_weights


@dataclass(frozen=True)
class TensorMetrics:
    rmse: float
    #: ||x - y|| / ||x||
    rel_error: float
    #: 10 log10(signal power / error power); inf when exact
    snr_db: float
    cosine: float
    max_abs: float

    def to_dict(self) -> dict[str, float | None]:
        # JSON has no inf/nan: an exact reconstruction reports snr_db as null.
        return {k: (v if math.isfinite(v) else None) for k, v in asdict(self).items()}


class MetricsAccumulator:
    """Sums for :class:`TensorMetrics` over row chunks, so a tensor never needs a decoded copy.

    With ``imatrix`` (one non-negative importance per input column, the last axis) every squared
    error and signal term is weighted by its column's importance, as llama.cpp weighs the
    quantization error when it searches scales.
    """

    def __init__(self, n_per_row: int, imatrix: np.ndarray | None = None) -> None:
        self.n = n_per_row
        self.w: np.ndarray | None = None
        if imatrix is not None:
            w = column_weights(imatrix, n_per_row, np.float64)
            if not np.any(w > 0):
                raise ValueError("imatrix weights are all zero")
            self.w = w
        self.e2 = self.s2 = self.xy = self.y2 = self.weight = 0.0
        self.max_abs = 0.0
        self.count = 0

    def update(self, original: np.ndarray, decoded: np.ndarray) -> None:
        x = np.asarray(original, dtype=np.float64).reshape(-1, self.n)
        y = np.asarray(decoded, dtype=np.float64).reshape(-1, self.n)
        if x.shape != y.shape:
            raise ValueError(f"shapes differ: original {x.shape}, decoded {y.shape}")
        if x.size == 0:
            return
        err = y - x
        self.max_abs = max(self.max_abs, float(np.max(np.abs(err))))
        self.count += x.size
        if self.w is None:
            self.e2 += float(np.einsum("ij,ij->", err, err))
            self.s2 += float(np.einsum("ij,ij->", x, x))
            self.xy += float(np.einsum("ij,ij->", x, y))
            self.y2 += float(np.einsum("ij,ij->", y, y))
            self.weight += x.size
        else:
            w = self.w
            self.e2 += float(np.einsum("ij,ij,j->", err, err, w))
            self.s2 += float(np.einsum("ij,ij,j->", x, x, w))
            self.xy += float(np.einsum("ij,ij,j->", x, y, w))
            self.y2 += float(np.einsum("ij,ij,j->", y, y, w))
            self.weight += float(w.sum()) * x.shape[0]

    def result(self) -> TensorMetrics:
        if self.count == 0:
            return TensorMetrics(0.0, 0.0, math.inf, 1.0, 0.0)
        e2, s2, y2 = self.e2, self.s2, self.y2
        rmse = math.sqrt(e2 / self.weight)
        rel = math.sqrt(e2 / s2) if s2 > 0 else (0.0 if e2 == 0 else math.inf)
        if e2 == 0:
            snr = math.inf
        elif s2 == 0:
            snr = -math.inf
        else:
            snr = 10.0 * math.log10(s2 / e2)
        denom = math.sqrt(s2 * y2)
        cosine = self.xy / denom if denom > 0 else (1.0 if s2 == y2 == 0 else 0.0)
        return TensorMetrics(rmse, rel, snr, cosine, self.max_abs)


def tensor_metrics(original: np.ndarray, decoded: np.ndarray,
                   imatrix: np.ndarray | None = None) -> TensorMetrics:
    """Error of ``decoded`` against ``original`` (same shape); see :class:`MetricsAccumulator`."""
    x = np.asarray(original)
    y = np.asarray(decoded)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: original {x.shape}, decoded {y.shape}")
    n = x.shape[-1] if x.ndim else 1
    acc = MetricsAccumulator(max(n, 1), imatrix)
    if x.size:
        acc.update(x, y)
    return acc.result()
