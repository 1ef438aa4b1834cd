"""qtstudio.save_tensors / load_tensors round trips, read back by the gguf package too."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import qtstudio


def test_round_trip_arrays_qtensors_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    tensors = {
        "f32": x,
        "f16": x.astype(np.float16),
        "i32": np.arange(-3, 9, dtype=np.int32).reshape(3, 4),
        "scalar": np.array(2.5, dtype=np.float32),
        "q4k": qtstudio.quantize(x, "Q4_K"),
        "q8": qtstudio.quantize(x, "Q8_0"),
        "int8pc": qtstudio.quantize(x, "INT8_PC_ASYM"),  # not a ggml type
    }
    path = tmp_path / "t.gguf"
    qtstudio.save_tensors(path, tensors, {"author": "test", "step": 12, "lr": 0.5,
                                          "tags": ["a", "b"], "ok": True})
    back, meta = qtstudio.load_tensors(path, with_metadata=True)
    assert list(back) == list(tensors)
    np.testing.assert_array_equal(back["f32"], x)
    assert back["f16"].dtype == np.float16
    np.testing.assert_array_equal(back["f16"], tensors["f16"])
    np.testing.assert_array_equal(back["i32"], tensors["i32"])
    assert back["scalar"].shape == (1,)
    for name in ("q4k", "q8", "int8pc"):
        assert isinstance(back[name], qtstudio.QTensor)
        assert back[name].encoding == tensors[name].encoding
        assert back[name].shape == tensors[name].shape
        np.testing.assert_array_equal(back[name].data, tensors[name].data)
    np.testing.assert_array_equal(qtstudio.dequantize(back["int8pc"]),
                                  qtstudio.dequantize(tensors["int8pc"]))
    assert meta["author"] == "test" and meta["step"] == 12 and meta["tags"] == ["a", "b"]
    # an independent reader sees ggml types and values
    r = gguf.GGUFReader(path)
    t = {tt.name: tt for tt in r.tensors}
    assert t["q4k"].tensor_type == gguf.GGMLQuantizationType.Q4_K
    deq = gguf.quants.dequantize(t["q4k"].data, t["q4k"].tensor_type)
    np.testing.assert_array_equal(deq.reshape(x.shape), qtstudio.dequantize(tensors["q4k"]))
    assert r.fields["step"].contents() == 12


@pytest.mark.parametrize("bad,match", [
    ({"x": [1, 2, 3]}, "QTensor or numpy array"),
    ({"x": np.zeros(3, np.complex64)}, "no GGUF type"),
    ({"": np.zeros(3, np.float32)}, "non-empty"),
    ({"n" * 64: np.zeros(3, np.float32)}, "at most 63"),
])
def test_bad_input(tmp_path, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        qtstudio.save_tensors(tmp_path / "x.gguf", bad)
    assert list(tmp_path.iterdir()) == []


def test_bad_metadata_and_bad_file(tmp_path):
    with pytest.raises(ValueError, match="cannot store"):
        qtstudio.save_tensors(tmp_path / "x.gguf", {}, {"obj": object()})
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    with pytest.raises(ValueError, match=r"junk\.gguf"):
        qtstudio.load_tensors(junk)
