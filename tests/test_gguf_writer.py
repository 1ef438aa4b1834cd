"""The streaming GGUF writer, checked against the gguf package's reader and core's reader."""

from __future__ import annotations

import io
import struct

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

import qtstudio
from qtstudio.formats import open_model
from qtstudio.formats.gguf_writer import GGUFStreamWriter, GGUFWriteError, tensor_nbytes


def _write(path, build):
    with open(path, "wb") as f:
        w = GGUFStreamWriter(f)
        build(w)


def test_metadata_types_and_tensors_read_back_by_gguf_package(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 64)).astype(np.float32)
    q = qtstudio.quantize(rng.standard_normal((2, 256)).astype(np.float32), "Q4_K")
    h = rng.standard_normal(7).astype(np.float16)

    def build(w):
        w.add_kv("general.architecture", "llama")
        w.add_kv("t.u8", 200, V.UINT8)
        w.add_kv("t.i16", -300, V.INT16)
        w.add_kv("t.u64", 2**40, V.UINT64)
        w.add_kv("t.f64", 0.125, V.FLOAT64)
        w.add_kv("t.bool", True)
        w.add_kv("t.strs", ["a", "bé", ""], V.ARRAY, V.STRING)
        w.add_kv("t.f32s", np.array([1.5, -2.0], np.float32), V.ARRAY, V.FLOAT32)
        w.add_kv("t.i32s", [], V.ARRAY, V.INT32)
        w.add_tensor_info("a", a.shape, "F32")
        w.add_tensor_info("q", q.shape, T.Q4_K)
        w.add_tensor_info("h", h.shape, T.F16)
        w.write_header()
        w.write_tensor_data("a", a)
        w.write_tensor_data("q", [q.data[:1], q.data[1:]])  # pieces
        w.write_tensor_data("h", h)
        w.finish()

    p = tmp_path / "x.gguf"
    _write(p, build)
    r = gguf.GGUFReader(p)
    f = r.fields
    assert f["t.u8"].types == [V.UINT8] and f["t.u8"].contents() == 200
    assert f["t.i16"].contents() == -300 and f["t.i16"].types == [V.INT16]
    assert f["t.u64"].contents() == 2**40
    assert f["t.f64"].contents() == 0.125
    assert f["t.bool"].contents() is True
    assert f["t.strs"].contents() == ["a", "bé", ""]
    assert f["t.f32s"].contents() == [1.5, -2.0]
    assert f["t.i32s"].contents() == []
    ts = {t.name: t for t in r.tensors}
    assert [t.name for t in r.tensors] == ["a", "q", "h"]
    np.testing.assert_array_equal(ts["a"].data, a)
    assert ts["q"].tensor_type == T.Q4_K
    np.testing.assert_array_equal(np.asarray(ts["q"].data).reshape(-1), q.data.reshape(-1))
    np.testing.assert_array_equal(ts["h"].data, h)
    # offsets: running sum of sizes padded to 32, as ggml requires
    offs = [t.data_offset for t in r.tensors]
    assert offs[1] - offs[0] == 32 * ((a.nbytes + 31) // 32)
    assert all(o % 32 == 0 for o in offs)
    # and core's bounds-checked reader agrees
    with open_model(p) as m:
        np.testing.assert_array_equal(m.load("q"), qtstudio.dequantize(q))
        assert m.tensor("q").dtype == "Q4_K"


def test_alignment_key_is_honoured(tmp_path):
    p = tmp_path / "a.gguf"

    def build(w):
        w.add_kv("general.alignment", 64, V.UINT32)
        w.add_tensor_info("x", (5,), "F32")
        w.add_tensor_info("y", (5,), "F32")
        w.write_header()
        w.write_tensor_data("x", np.ones(5, np.float32))
        w.write_tensor_data("y", np.full(5, 2, np.float32))
        w.finish()

    _write(p, build)
    r = gguf.GGUFReader(p)
    assert r.alignment == 64
    assert [t.data_offset % 64 for t in r.tensors] == [0, 0]
    np.testing.assert_array_equal(r.tensors[1].data, np.full(5, 2, np.float32))


def test_raw_kv_is_copied_verbatim(tmp_path):
    src = tmp_path / "src.gguf"

    def build(w):
        w.add_kv("k.u16", 7, V.UINT16)
        w.add_kv("k.arr", [1, 2, 3], V.ARRAY, V.INT64)
        w.write_header()
        w.finish()

    _write(src, build)
    r = gguf.GGUFReader(src)
    buf = io.BytesIO()
    w = GGUFStreamWriter(buf)
    for key in ("k.u16", "k.arr"):
        w.add_kv_raw(key, b"".join(bytes(p.tobytes()) for p in r.fields[key].parts[2:]))
    w.write_header()
    w.finish()
    assert buf.getvalue() == src.read_bytes()


@pytest.mark.parametrize("problem", ["long_name", "duplicate", "block", "five_dims"])
def test_declaration_errors(problem):
    w = GGUFStreamWriter(io.BytesIO())
    with pytest.raises(GGUFWriteError):
        if problem == "long_name":
            w.add_tensor_info("x" * 64, (32,), "F32")
        elif problem == "duplicate":
            w.add_tensor_info("x", (32,), "F32")
            w.add_tensor_info("x", (32,), "F32")
        elif problem == "block":
            w.add_tensor_info("x", (2, 100), "Q4_0")
        else:
            w.add_tensor_info("x", (1, 1, 1, 1, 32), "F32")


def test_data_errors():
    w = GGUFStreamWriter(io.BytesIO())
    w.add_tensor_info("a", (4,), "F32")
    w.add_tensor_info("b", (4,), "F32")
    with pytest.raises(GGUFWriteError, match="write_header"):
        w.write_tensor_data("a", np.zeros(4, np.float32))
    w.write_header()
    with pytest.raises(GGUFWriteError, match="out of order"):
        w.write_tensor_data("b", np.zeros(4, np.float32))
    with pytest.raises(GGUFWriteError, match="declared 16"):
        w.write_tensor_data("a", np.zeros(3, np.float32))
    w2 = GGUFStreamWriter(io.BytesIO())
    w2.add_tensor_info("a", (4,), "F32")
    w2.write_header()
    with pytest.raises(GGUFWriteError, match="no data"):
        w2.finish()
    with pytest.raises(GGUFWriteError, match="already written"):
        w2.add_kv("late", 1)


def test_header_layout_by_hand():
    buf = io.BytesIO()
    w = GGUFStreamWriter(buf)
    w.add_kv("k", 5, V.UINT32)
    w.add_tensor_info("t", (2, 3), "F32")
    w.write_header()
    head = buf.getvalue()
    assert head[:4] == b"GGUF"
    assert struct.unpack_from("<IQQ", head, 4) == (3, 1, 1)
    # key "k" (u64 length + byte), type u32, value 5
    assert head[24:24 + 8 + 1 + 4 + 4] == struct.pack("<Q", 1) + b"k" + struct.pack("<iI", 4, 5)
    pos = 24 + 17
    assert head[pos:pos + 9] == struct.pack("<Q", 1) + b"t"
    # n_dims, ne[0]=3 (fastest), ne[1]=2, type F32, offset 0
    assert struct.unpack_from("<Iqqiq", head, pos + 9) == (2, 3, 2, 0, 0)
    assert len(head) % 32 == 0


def test_tensor_nbytes_matches_gguf_sizes():
    for t, (blk, size) in gguf.GGML_QUANT_SIZES.items():
        assert tensor_nbytes((3, blk * 2), t) == 3 * 2 * size
