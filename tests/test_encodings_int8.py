"""int8 encodings against torch's own quantizer (per-tensor and per-channel affine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qtstudio
from qtstudio.core.encodings import get_encoding


@pytest.mark.filterwarnings("ignore:.*quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("name", ["INT8_PT_SYM", "INT8_PT_ASYM", "INT8_PC_SYM", "INT8_PC_ASYM"])
def test_int8_matches_torch_quantizer(name):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 40)) + rng.uniform(-1, 1, (6, 1))).astype(np.float32)
    enc = get_encoding(name)
    qt = qtstudio.quantize(x, enc)
    q, scale, zp = enc.split(qt.data, 40)
    assert qt.nbytes == 6 * (40 + enc.header_bytes)
    lo = -127 if enc.symmetric else -128
    if enc.per_channel:
        tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(
            scale.astype(np.float64)), torch.from_numpy(zp.astype(np.int64)), 0, torch.qint8)
    else:
        assert np.all(scale == scale[0]) and np.all(zp == zp[0])
        tq = torch.quantize_per_tensor(torch.from_numpy(x), float(scale[0]), int(zp[0]),
                                       torch.qint8)
    expected = np.clip(tq.int_repr().numpy(), lo, 127)
    np.testing.assert_array_equal(q, expected)
    y = qtstudio.dequantize(qt)
    np.testing.assert_allclose(y, (q.astype(np.float32) - zp[:, None]) * scale[:, None])
    # the error is at most half a step
    step = scale[:, None]
    assert np.all(np.abs(y - x) <= step * 0.5 + 1e-6)


def test_int8_symmetric_scale_and_zero_rows():
    x = np.zeros((2, 8), np.float32)
    x[0] = np.linspace(-2, 1, 8)
    enc = get_encoding("INT8_PC_SYM")
    q, scale, zp = enc.split(enc.quantize_rows(x), 8)
    assert scale[0] == np.float32(2 / 127) and scale[1] == 0
    assert q[0, 0] == -127 and np.all(q[1] == 0) and np.all(zp == 0)
    np.testing.assert_array_equal(enc.dequantize_rows(enc.quantize_rows(x), 8)[1], 0)


def test_int8_geometry_and_formats():
    e = get_encoding("int8_pc_asym")
    assert e.row_bytes(100) == 108 and e.accepts_shape((3, 7))
    assert "nnef" in e.export_formats and "gguf" not in e.export_formats
    assert e.needs_whole_tensor is False and get_encoding("INT8_PT_SYM").needs_whole_tensor
