"""GGUF reader against the gguf package, and hostile headers that must fail fast and small."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from qtstudio.formats import ModelFormatError, open_model

Q = gguf.GGMLQuantizationType


@pytest.fixture()
def sample_gguf(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_string("general.name", "tiny")
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    w.add_array("tokenizer.ggml.scores", [0.5, 1.5, 2.5])
    w.add_bool("x.flag", True)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    w.add_tensor("blk.0.attn_q.weight", x)
    w.add_tensor("blk.0.attn_k.weight", x.astype(np.float16))
    for qt in (Q.Q8_0, Q.Q4_K, Q.Q6_K, Q.IQ4_NL):
        w.add_tensor(f"blk.0.{qt.name.lower()}.weight", gguf.quants.quantize(x, qt)
                     if qt in (Q.Q8_0,) else _quantize_via_native(x, qt), raw_dtype=qt)
    w.add_tensor("output_norm.weight", x[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _quantize_via_native(x, qt):
    from qtstudio import kernels
    return kernels.quantize_rows(int(qt), x)


def test_metadata_and_tensors_match_gguf_reader(sample_gguf):
    ref = gguf.GGUFReader(sample_gguf)
    with open_model(sample_gguf) as m:
        assert m.format == "gguf" and m.architecture == "llama" and m.n_blocks == 1
        assert m.metadata["general.name"] == "tiny"
        assert m.metadata["tokenizer.ggml.tokens"] == ["a", "bb", "ccc"]
        assert m.metadata["tokenizer.ggml.scores"] == [0.5, 1.5, 2.5]
        assert m.metadata["x.flag"] is True
        assert [t.name for t in m.tensors] == [t.name for t in ref.tensors]
        for rt in ref.tensors:
            info = m.tensor(rt.name)
            assert info.dtype == rt.tensor_type.name
            assert info.shape == tuple(int(d) for d in reversed(rt.shape.tolist()))
            assert info.nbytes == int(rt.n_bytes)
            assert info.gguf_name == rt.name
            expected = gguf.quants.dequantize(rt.data, rt.tensor_type).reshape(info.shape)
            np.testing.assert_array_equal(m.load(rt.name), expected.astype(np.float32))
        q = m.load_raw("blk.0.q4_k.weight")
        assert q.dtype == np.uint8 and q.shape == (4, 144)
        assert m.tensor("output_norm.weight").quantizable is False
        assert m.tensor("blk.0.attn_q.weight").quantizable is True


def _header(*, magic=b"GGUF", version=3, n_tensors=0, n_kv=0) -> bytes:
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def _string(s: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(s) if length is None else length) + s


def test_bad_magic(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(_header(magic=b"GGML") + b"\0" * 32)
    with pytest.raises(ModelFormatError, match=r"m.gguf: bad magic b'GGML'"):
        open_model(p)


@pytest.mark.parametrize("version", [1, 4, 0xFFFFFFFF])
def test_bad_version(tmp_path, version):
    p = tmp_path / "m.gguf"
    p.write_bytes(_header(version=version) + b"\0" * 32)
    with pytest.raises(ModelFormatError, match=f"GGUF version {version} is not supported"):
        open_model(p)


def test_absurd_tensor_count(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(_header(n_tensors=2**63) + b"\0" * 64)
    with pytest.raises(ModelFormatError, match=r"tensor count .* is absurd"):
        open_model(p)


def test_absurd_kv_count(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(_header(n_kv=2**40) + b"\0" * 64)
    with pytest.raises(ModelFormatError, match=r"metadata count .* is absurd"):
        open_model(p)


def test_absurd_string_length(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(_header(n_kv=1) + _string(b"key", length=2**60) + b"\0" * 64)
    with pytest.raises(ModelFormatError, match="claims 1152921504606846976 bytes"):
        open_model(p)


def test_absurd_array_length(tmp_path):
    p = tmp_path / "m.gguf"
    body = _string(b"arr") + struct.pack("<iiQ", 9, 4, 2**50)  # array of u32, 2^50 items
    p.write_bytes(_header(n_kv=1) + body + b"\0" * 64)
    with pytest.raises(ModelFormatError, match="claims 1125899906842624 items"):
        open_model(p)


def test_truncated_tensor_data(tmp_path, sample_gguf):
    data = sample_gguf.read_bytes()
    p = tmp_path / "t.gguf"
    p.write_bytes(data[:-200])
    with pytest.raises(ModelFormatError, match="truncated"):
        open_model(p)


def test_unknown_ggml_type(tmp_path):
    p = tmp_path / "m.gguf"
    info = _string(b"w") + struct.pack("<I", 1) + struct.pack("<q", 32) + struct.pack(
        "<iQ", 999, 0)
    p.write_bytes(_header(n_tensors=1) + info + b"\0" * 200)
    with pytest.raises(ModelFormatError, match="tensor 'w': unsupported ggml type id 999"):
        open_model(p)


def test_too_many_dimensions(tmp_path):
    p = tmp_path / "m.gguf"
    info = _string(b"w") + struct.pack("<I", 9) + b"\0" * 200
    p.write_bytes(_header(n_tensors=1) + info)
    with pytest.raises(ModelFormatError, match="9 dimensions"):
        open_model(p)


def test_type_without_native_codec_decodes_through_gguf_package(tmp_path):
    from qtstudio import kernels

    qt = Q.IQ2_XXS
    assert kernels.native_type(int(qt)) is None or not kernels.native_type(int(qt)).can_dequantize
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (2, 66), dtype=np.uint8)  # two rows of one 256-value block
    raw[:, 0:2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)  # a sane fp16 scale
    path = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open_model(path) as m:
        info = m.tensor("blk.0.attn_q.weight")
        assert (info.dtype, info.shape, info.nbytes) == ("IQ2_XXS", (2, 256), 132)
        np.testing.assert_array_equal(m.load(info.name), gguf.quants.dequantize(raw, qt))


def test_string_array_beyond_limit(tmp_path, monkeypatch):
    from qtstudio.formats import gguf_reader

    monkeypatch.setattr(gguf_reader, "MAX_LIST_ITEMS", 10)
    p = tmp_path / "m.gguf"
    items = b"".join(_string(b"t") for _ in range(11))
    body = _string(b"tokenizer.ggml.tokens") + struct.pack("<iiQ", 9, 8, 11) + items
    p.write_bytes(_header(n_kv=1) + body + b"\0" * 64)
    with pytest.raises(ModelFormatError, match="holds 11 strings"):
        open_model(p)
