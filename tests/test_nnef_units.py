"""NNEF export pieces without tract: .dat headers, Q4_0 calibration, capability, atomic output."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from qtstudio.core.qtensor import quantize
from qtstudio.export.nnef.archive import AtomicOutput
from qtstudio.export.nnef.capability import nnef_fallback, nnef_problem
from qtstudio.export.nnef.dat import array_dat, q4_0_dat, read_header
from qtstudio.export.nnef.q4_0 import quantize_q4_0


def test_q4_0_dat_header_is_tract_block_format():
    w = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    qt = quantize(w, "Q4_0")
    header, payload = q4_0_dat(qt.data, (6, 64))
    assert len(header) == 128
    assert header[:4] == b"\x4e\xef\x01\x00"
    assert header[48:52] == bytes([0x40, 0x30, 0x52, 0x54])  # vendor 0x5452, type 0x3040
    h = read_header(header)
    assert h["shape"] == (6, 64)
    assert h["bits"] == 0xFFFFFFFF
    assert h["data_len"] == 6 * 64 // 32 * 18 == len(payload)
    assert payload == qt.tobytes()
    # padding and the retired quantization fields are zero
    assert header[52:] == bytes(76)


def test_float_dat_headers():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    header, payload = array_dat(x.astype(np.float16))
    h = read_header(header)
    assert (h["shape"], h["bits"], h["item_type"]) == ((3, 4), 16, 0)
    assert np.frombuffer(payload, "<f2").reshape(3, 4).tolist() == x.tolist()
    header, _ = array_dat(x.astype(np.int8), quantized=True)
    assert read_header(header)["item_type"] == 3  # Khronos quantized signed int
    assert struct.unpack_from("<I", header, 4)[0] == 12


def test_q4_0_rejects_rows_not_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        q4_0_dat(b"", (4, 3, 5))
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q4_0(np.zeros((2, 48), np.float32))
    with pytest.raises(ValueError, match="calibration"):
        quantize_q4_0(np.zeros((2, 32), np.float32), "best")


def _demo_weights() -> list[np.ndarray]:
    from qtstudio.core.demo import demo_model_path
    from qtstudio.formats import open_model

    with open_model(demo_model_path()) as m:
        return [m.load(t.name) for t in m.tensors
                if len(t.shape) == 2 and t.shape[1] % 32 == 0]


def test_mse_grid_search_never_worse_than_minmax_on_trained_weights():
    import gguf

    weights = _demo_weights()
    assert weights, "the demo model has no Q4_0-shaped weights"
    total_mm = total_mse = 0.0
    for w in weights:
        mm = quantize_q4_0(w, "minmax")
        r = quantize_q4_0(w, "mse", grid=60)
        # per tensor and per block: the search starts at min-max, so it can only improve
        assert r.mse <= mm.mse
        x = w.reshape(w.shape[0], -1, 32)
        err_mm = ((x - mm.decoded.reshape(x.shape)) ** 2).mean(axis=2)
        err_r = ((x - r.decoded.reshape(x.shape)) ** 2).mean(axis=2)
        assert np.all(err_r <= err_mm + 1e-12)
        # the blocks are plain ggml Q4_0: the gguf package decodes them to the same values
        ref = gguf.quants.dequantize(r.blocks, gguf.GGMLQuantizationType.Q4_0)
        np.testing.assert_array_equal(ref.reshape(w.shape), r.decoded)
        total_mm += mm.mse * w.size
        total_mse += r.mse * w.size
    assert total_mse < total_mm  # real weights do gain something
    assert r.gain == pytest.approx((r.mse_minmax - r.mse) / r.mse_minmax)


def test_capability_and_fallbacks():
    assert nnef_problem("F16", (3, 5)) is None
    assert nnef_problem("INT8_PC_ASYM", (7,)) is None
    assert nnef_problem("Q4_0", (8, 64), uses={"matmul"}) is None
    assert nnef_problem("Q4_0", (8, 16, 4), uses={"conv"}) is None  # rows of 16*4
    enc, why = nnef_fallback("Q4_0", (8, 48), uses={"matmul"})
    assert enc == "F16" and "multiple of 32" in why
    enc, why = nnef_fallback("Q4_0", (8, 64), uses={"matmul", "other"})
    assert enc == "F16" and "elementwise" in why
    enc, why = nnef_fallback("Q4_0", (8, 64), role="norm")
    assert enc == "F16" and "norm" in why
    assert nnef_fallback("Q4_K", (8, 256))[0] == "F16"
    assert nnef_fallback("BF16", (8, 256))[0] == "F32"


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nnef"
    with pytest.raises(RuntimeError), AtomicOutput(target) as out:
        out.write("a.dat", b"123")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with AtomicOutput(target) as out:
        out.write("graph.nnef", b"version 1.0;")
    assert (target / "graph.nnef").read_bytes() == b"version 1.0;"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nnef"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an NNEF export"):
        AtomicOutput(tmp_path / "other")
