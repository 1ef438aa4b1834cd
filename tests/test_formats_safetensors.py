"""safetensors reader: single files, shards, folders, dtypes, and every kind of bad header."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

from qtstudio.formats import ModelFormatError, open_model


def _write_raw(path, header: dict, data: bytes = b"", *, length: int | None = None) -> None:
    text = json.dumps(header).encode()
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)


def test_single_file_values_and_lazy_views(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 32)).astype(np.float32)
    b = rng.standard_normal((4, 16)).astype(np.float16)
    save_file({"x.a.weight": a, "x.b.weight": b}, tmp_path / "m.safetensors",
              metadata={"k": "v"})
    with open_model(tmp_path / "m.safetensors") as m:
        assert m.format == "safetensors"
        assert m.metadata == {"k": "v"}
        assert sorted(t.name for t in m.tensors) == ["x.a.weight", "x.b.weight"]
        np.testing.assert_array_equal(m.load("x.a.weight"), a)
        np.testing.assert_array_equal(m.load("x.b.weight"), b.astype(np.float32))
        raw = m.load_raw("x.b.weight")
        assert raw.dtype == np.float16 and not raw.flags.writeable  # a view of the map
        assert m.tensor("x.a.weight").nbytes == a.nbytes
        assert m.total_params == a.size + b.size


def test_bf16_matches_torch(tmp_path):
    t = torch.randn(16, 64, dtype=torch.bfloat16)
    save_torch({"w": t}, tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        assert m.tensor("w").dtype == "BF16"
        np.testing.assert_array_equal(m.load("w"), t.float().numpy())


def test_sharded_and_folder(tmp_path):
    rng = np.random.default_rng(1)
    parts = {f"model.layers.{i}.mlp.down_proj.weight": rng.standard_normal((4, 32)).astype(
        np.float32) for i in range(4)}
    names = sorted(parts)
    save_file({n: parts[n] for n in names[:2]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({n: parts[n] for n in names[2:]}, tmp_path / "model-00002-of-00002.safetensors")
    wmap = {n: ("model-00001-of-00002.safetensors" if i < 2
                else "model-00002-of-00002.safetensors") for i, n in enumerate(names)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wmap}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama",
                                                      "num_hidden_layers": 4}))
    with open_model(tmp_path) as m:  # folder: the index is found, config read
        assert m.architecture == "llama" and m.n_blocks == 4
        assert sorted(t.name for t in m.tensors) == names
        for n in names:
            np.testing.assert_array_equal(m.load(n), parts[n])
        assert m.tensor(names[0]).gguf_name == "blk.0.ffn_down.weight"


def test_shard_index_naming_missing_file(tmp_path):
    save_file({"a": np.zeros(4, np.float32)}, tmp_path / "s1.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))
    with pytest.raises(ModelFormatError, match=r"index.json.*'b'.*s2.safetensors.*does not exist"):
        open_model(tmp_path / "model.safetensors.index.json")


def test_shard_index_pointing_outside_folder(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "../x.safetensors"}}))
    with pytest.raises(ModelFormatError, match="not a plain file name"):
        open_model(tmp_path / "model.safetensors.index.json")


def test_shard_index_disagreeing_with_shard(tmp_path):
    save_file({"a": np.zeros(4, np.float32)}, tmp_path / "s1.safetensors")
    save_file({"b": np.zeros(4, np.float32)}, tmp_path / "s2.safetensors")
    (tmp_path / "i.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "s2.safetensors", "b": "s2.safetensors"}}))
    with pytest.raises(ModelFormatError, match="does not hold it"):
        open_model(tmp_path / "i.safetensors.index.json")


def test_truncated_file(tmp_path):
    save_file({"w": np.ones((64, 64), np.float32)}, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-100])
    with pytest.raises(ModelFormatError, match=r"t.safetensors, tensor 'w'.*truncated"):
        open_model(tmp_path / "t.safetensors")


def test_header_length_past_end_of_file(tmp_path):
    p = tmp_path / "m.safetensors"
    _write_raw(p, {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4,
               length=2**62)  # a hostile length must be checked before anything is allocated
    with pytest.raises(ModelFormatError,
                       match=r"header length field says 4611686018427387904 bytes, but only 65"):
        open_model(p)


def test_file_too_short(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(b"\x01\x02")
    with pytest.raises(ModelFormatError, match="8-byte header length"):
        open_model(p)


def test_bad_json(tmp_path):
    p = tmp_path / "m.safetensors"
    body = b"{not json"
    p.write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        open_model(p)


def test_unsupported_dtype_is_one_unreadable_tensor(tmp_path):
    p = tmp_path / "m.safetensors"
    _write_raw(p, {"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]},
                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
               b"\0" * 4 + np.float32(2.5).tobytes())
    with open_model(p) as m:
        w = m.tensor("w")
        assert w.unreadable.startswith("storage type F8_E4M3 cannot be read")
        assert not w.quantizable and m.unreadable == [w]
        with pytest.raises(ModelFormatError,
                           match=r"m.safetensors, tensor 'w': storage type F8_E4M3 cannot be"):
            m.load("w")
        assert m.load("b").tolist() == [2.5]  # the rest of the file stays usable


def test_offsets_not_matching_shape(tmp_path):
    p = tmp_path / "m.safetensors"
    _write_raw(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16)
    with pytest.raises(ModelFormatError, match="needs 16"):
        open_model(p)


def test_overlapping_tensors(tmp_path):
    p = tmp_path / "m.safetensors"
    _write_raw(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                   "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24)
    with pytest.raises(ModelFormatError, match="overlaps"):
        open_model(p)


def test_missing_path(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        open_model(tmp_path / "nope.safetensors")


def test_deeply_nested_header(tmp_path):
    p = tmp_path / "m.safetensors"
    body = b"[" * 200_000
    p.write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        open_model(p)


def test_folder_of_unindexed_shards(tmp_path):
    save_file({"a.weight": np.ones((2, 32), np.float32)}, tmp_path / "part1.safetensors")
    save_file({"b.weight": np.zeros((2, 32), np.float16)}, tmp_path / "part2.safetensors")
    with open_model(tmp_path) as m:
        assert sorted(t.name for t in m.tensors) == ["a.weight", "b.weight"]
        assert m.load("a.weight").sum() == 64


def test_empty_folder(tmp_path):
    with pytest.raises(ModelFormatError, match="no model weights found"):
        open_model(tmp_path)
