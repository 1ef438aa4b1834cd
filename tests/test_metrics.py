"""Error metrics against direct torch computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qtstudio.core.metrics import MetricsAccumulator, tensor_metrics


def test_metrics_match_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    y = x + rng.normal(0, 0.05, x.shape).astype(np.float32)
    m = tensor_metrics(x, y)
    tx, ty = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    assert m.rmse == pytest.approx(torch.sqrt(torch.mean((tx - ty) ** 2)).item(), rel=1e-12)
    assert m.rel_error == pytest.approx((torch.linalg.norm(tx - ty) / torch.linalg.norm(tx))
                                        .item(), rel=1e-12)
    assert m.snr_db == pytest.approx(-20 * math.log10(m.rel_error), rel=1e-12)
    assert m.cosine == pytest.approx(torch.nn.functional.cosine_similarity(
        tx.flatten(), ty.flatten(), dim=0).item(), rel=1e-12)
    assert m.max_abs == pytest.approx(torch.max(torch.abs(tx - ty)).item())


def test_chunked_accumulation_equals_whole():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 32))
    y = x + rng.normal(0, 0.1, x.shape)
    acc = MetricsAccumulator(32)
    for i in range(0, 30, 7):
        acc.update(x[i:i + 7], y[i:i + 7])
    whole, parts = tensor_metrics(x, y), acc.result()
    for k in ("rmse", "rel_error", "snr_db", "cosine", "max_abs"):
        assert getattr(parts, k) == pytest.approx(getattr(whole, k), rel=1e-12)


def test_imatrix_weighting():
    x = np.ones((2, 4))
    y = x.copy()
    y[:, 0] += 1.0  # all error in column 0
    w = np.array([0.0, 1.0, 1.0, 1.0])
    m = tensor_metrics(x, y, imatrix=w)
    assert m.rmse == 0.0 and m.snr_db == math.inf  # column 0 does not matter
    w2 = np.array([3.0, 1.0, 0.0, 0.0])
    m2 = tensor_metrics(x, y, imatrix=w2)
    # weighted mse: sum(w * e^2) / sum(w) over rows = (3 * 1) / 4
    assert m2.rmse == pytest.approx(math.sqrt(3 / 4))
    assert m2.rel_error == pytest.approx(math.sqrt(3 / 4))
    with pytest.raises(ValueError, match="one weight per column"):
        tensor_metrics(x, y, imatrix=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        tensor_metrics(x, y, imatrix=-np.ones(4))


def test_exact_and_degenerate():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    m = tensor_metrics(x, x)
    assert (m.rmse, m.rel_error, m.snr_db, m.cosine, m.max_abs) == (0, 0, math.inf, 1.0, 0)
    assert m.to_dict()["snr_db"] is None  # JSON-safe
    z = tensor_metrics(np.zeros((2, 4)), np.zeros((2, 4)))
    assert z.cosine == 1.0 and z.rmse == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        tensor_metrics(np.zeros((2, 4)), np.zeros((4, 2)))
