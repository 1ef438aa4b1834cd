"""PyTorch state dicts: weights-only, memory-mapped; pickles that need code are refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from qtstudio.formats import ModelFormatError, open_model


def test_state_dict_dtypes(tmp_path):
    sd = {"enc.fc.weight": torch.randn(8, 32), "enc.fc.bias": torch.randn(8),
          "emb.weight": torch.randn(10, 32, dtype=torch.bfloat16),
          "h.weight": torch.randn(4, 32, dtype=torch.float16)}
    torch.save(sd, tmp_path / "m.pt")
    with open_model(tmp_path / "m.pt") as m:
        assert m.format == "torch"
        assert {t.name: t.dtype for t in m.tensors} == {
            "enc.fc.weight": "F32", "enc.fc.bias": "F32", "emb.weight": "BF16", "h.weight": "F16"}
        for name, t in sd.items():
            np.testing.assert_array_equal(m.load(name), t.float().numpy())
        assert m.tensor("enc.fc.bias").role == "bias"


def test_training_checkpoint_wrapper(tmp_path):
    torch.save({"epoch": 3, "state_dict": {"a.weight": torch.ones(2, 32)}}, tmp_path / "c.pth")
    with open_model(tmp_path / "c.pth") as m:
        assert [t.name for t in m.tensors] == ["a.weight"]


class _Payload:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED_MARKER",))


def test_pickle_with_code_payload_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A zip checkpoint whose pickle calls os.system.
    torch.save({"w": torch.ones(2), "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFormatError, match=r"evil.pt: refused: this pickle needs code"):
        open_model(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_legacy_raw_pickle_with_code_payload(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(ModelFormatError, match=r"evil.bin: refused.*references posix.system"):
        open_model(tmp_path / "evil.bin")
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_not_a_state_dict(tmp_path):
    torch.save([torch.ones(2)], tmp_path / "l.pt")
    with pytest.raises(ModelFormatError, match="not a state dict"):
        open_model(tmp_path / "l.pt")


def test_garbage_file(tmp_path):
    (tmp_path / "g.bin").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ModelFormatError, match=r"g\.bin"):
        open_model(tmp_path / "g.bin")


def test_unsupported_torch_dtype_is_one_unreadable_tensor(tmp_path):
    torch.save({"c": torch.zeros(4, dtype=torch.complex64), "w": torch.ones(2, 32)},
               tmp_path / "c.pt")
    with open_model(tmp_path / "c.pt") as m:
        assert m.tensor("c").dtype == "COMPLEX64"
        assert m.tensor("c").unreadable.startswith("dtype torch.complex64 cannot be read")
        with pytest.raises(ModelFormatError, match=r"c\.pt, tensor 'c': dtype torch.complex64"):
            m.load("c")
        np.testing.assert_array_equal(m.load("w"), np.ones((2, 32), np.float32))


def test_sharded_bin_folder_with_config(tmp_path):
    import json
    a, b = torch.randn(4, 32), torch.randn(8, 32)
    torch.save({"model.layers.0.mlp.up_proj.weight": a}, tmp_path / "pytorch_model-1.bin")
    torch.save({"model.layers.1.mlp.up_proj.weight": b}, tmp_path / "pytorch_model-2.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {
        "model.layers.0.mlp.up_proj.weight": "pytorch_model-1.bin",
        "model.layers.1.mlp.up_proj.weight": "pytorch_model-2.bin"}}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama",
                                                      "num_hidden_layers": 2}))
    with open_model(tmp_path) as m:
        assert m.format == "torch" and m.n_blocks == 2
        assert m.tensor("model.layers.1.mlp.up_proj.weight").gguf_name == "blk.1.ffn_up.weight"
        np.testing.assert_array_equal(m.load("model.layers.1.mlp.up_proj.weight"), b.numpy())
    with pytest.raises(ValueError, match="closed"):
        m.load("model.layers.0.mlp.up_proj.weight")
