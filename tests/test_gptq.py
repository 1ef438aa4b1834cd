"""GPTQ on synthetic Hessians: bytes decode bit for bit to the values GPTQ used (our decoder and
the gguf package's independent one), the output error beats plain rounding to the same type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qtstudio
from qtstudio.core.qtensor import QTensor
from qtstudio.jobs import Cancelled, CancelToken
from qtstudio.quant.ggml_grid import GRID_TYPES, GGMLGridScheme
from qtstudio.quant.gptq import GPTQError, GPTQOptions, gptq, hessian_error
from qtstudio.quant.hessian import HessianAccumulator
from qtstudio.quant.int_grid import IntGridConfig, IntGridScheme

gguf_quants = pytest.importorskip("gguf.quants")
from gguf import GGMLQuantizationType  # noqa: E402


def _problem(n: int = 512, rows: int = 24, seed: int = 0):
    """Correlated activations with very unequal column energies, as real layers have."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((n, n)).astype(np.float32) * (rng.random(n) ** 3)[None]
    x = rng.standard_normal((1024, n)).astype(np.float32) @ mix * 0.1
    x += 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    acc = HessianAccumulator(n)
    acc.add(x[:512])
    acc.add(torch.from_numpy(x[512:]))
    w = rng.standard_normal((rows, n)).astype(np.float32)
    return w, acc.hessian().numpy(), x


@pytest.mark.parametrize("desc_act", [False, True])
@pytest.mark.parametrize("enc", list(GRID_TYPES))
def test_bytes_decode_to_the_values_gptq_used_and_beat_plain_rounding(enc, desc_act):
    w, h, _ = _problem()
    scheme = GGMLGridScheme(enc, w.shape[1])
    res = gptq(w, h, scheme, GPTQOptions(desc_act=desc_act, block_size=96))
    data = scheme.encode(res.q, res.grids)
    qt = QTensor(data, w.shape, enc)
    ours = qtstudio.dequantize(qt)
    assert np.array_equal(ours.view(np.uint32), res.values.view(np.uint32))
    theirs = gguf_quants.dequantize(data, GGMLQuantizationType[enc]).reshape(w.shape)
    assert np.array_equal(theirs.astype(np.float32).view(np.uint32), res.values.view(np.uint32))
    # plain rounding, with the same importance weights GPTQ gave the codec
    plain = qtstudio.dequantize(qtstudio.quantize(w, enc, imatrix=np.diag(h).astype(np.float32)))
    assert qt.nbytes == qtstudio.quantize(w, enc).nbytes
    assert hessian_error(w, res.values, h) < 0.85 * hessian_error(w, plain, h)


def test_hessian_error_is_the_summed_output_error():
    w, h, x = _problem(n=256, rows=8)
    q = np.round(w * 2) / 2
    direct = float(((x.astype(np.float64) @ (w - q).T.astype(np.float64)) ** 2).sum())
    assert hessian_error(w, q, h) == pytest.approx(direct, rel=1e-6)


def test_dead_columns_get_zero_and_the_rest_still_quantizes():
    w, h, _ = _problem(n=256, rows=8)
    h[:, 5] = 0
    h[5, :] = 0
    res = gptq(w, h, GGMLGridScheme("Q8_0", 256), GPTQOptions())
    assert res.dead_columns == 1
    assert np.all(res.values[:, 5] == 0)
    assert np.abs(res.values - w)[:, 6:].max() < 0.2  # compensation moves weights a little


def test_act_order_processes_columns_by_decreasing_energy():
    w, h, _ = _problem(n=256, rows=8)
    res = gptq(w, h, GGMLGridScheme("Q4_0", 256), GPTQOptions(desc_act=True))
    d = np.diag(h)[res.perm]
    assert np.all(np.diff(d) <= 0) and sorted(res.perm.tolist()) == list(range(256))


def test_int_grid_values_are_scale_times_level_minus_zero():
    w, h, _ = _problem(n=256, rows=8)
    for sym in (True, False):
        cfg = IntGridConfig(bits=4, group_size=64, sym=sym)
        res = gptq(w, h, IntGridScheme(cfg, 256), GPTQOptions(desc_act=True))
        assert res.q.min() >= 0 and res.q.max() <= 15
        for gid, grid in res.grids.items():
            cols = np.flatnonzero(res.group_of == gid)
            assert len(cols) == 64
            scale = grid.scale.numpy()[:, None]
            assert np.array_equal(scale, scale.astype(np.float16).astype(np.float32))
            want = scale * (res.q[:, cols] - grid.zero.numpy()[:, None])
            assert np.array_equal(want.astype(np.float32), res.values[:, cols])


def test_bad_inputs_are_clear_errors():
    w, h, _ = _problem(n=256, rows=8)
    with pytest.raises(GPTQError, match="256x256"):
        gptq(w, h[:128, :128], GGMLGridScheme("Q4_0", 256))
    bad = h.copy()
    bad[0, 0] = np.nan
    with pytest.raises(GPTQError, match="NaN"):
        gptq(w, bad, GGMLGridScheme("Q4_0", 256))
    with pytest.raises(GPTQError, match="positive definite"):
        gptq(w, 2 * np.eye(256) - np.ones((256, 256)),  # indefinite
             GGMLGridScheme("Q4_0", 256), GPTQOptions(damp_percent=1e-9))
    with pytest.raises(ValueError, match="multiple of 256"):
        GGMLGridScheme("Q4_K", 96)
    with pytest.raises(ValueError, match="cannot produce TQ2_0"):
        GGMLGridScheme("TQ2_0", 256)
    with pytest.raises(ValueError, match="dampening"):
        gptq(w, h, GGMLGridScheme("Q4_0", 256), GPTQOptions(damp_percent=0))
    with pytest.raises(ValueError, match="bits"):
        IntGridScheme(IntGridConfig(bits=3), 256)


def test_cancel_stops_between_batches():
    w, h, _ = _problem(n=256, rows=8)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        gptq(w, h, GGMLGridScheme("Q4_0", 256), cancel=token)
