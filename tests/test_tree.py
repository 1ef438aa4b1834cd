"""Model tree, tensor roles, quantizable flags, block indices and GGUF names."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save_file

from qtstudio.core.roles import effective_rank, is_quantizable
from qtstudio.formats import open_model
from tests.helpers.raw_checkpoints import write_hf_llama


def test_tree_aggregates_and_orders(tmp_path):
    write_hf_llama(tmp_path, layers=12, hidden=64, ffn=128)
    with open_model(tmp_path) as m:
        root = m.tree
        assert root.params == m.total_params and root.nbytes == m.total_bytes
        layers = root.find("model.layers")
        assert [c.name for c in layers.children] == [str(i) for i in range(12)]
        for node in root.walk():
            if node.children:
                assert node.params == sum(c.params for c in node.children) + (
                    node.tensor.params if node.tensor else 0)
        blk3 = root.find("model.layers.3")
        names = {t.name for t in blk3.iter_tensors()}
        assert len(names) == 9 and all(n.startswith("model.layers.3.") for n in names)
        leaf = root.find("model.layers.3.mlp.down_proj.weight")
        assert leaf.is_leaf and leaf.tensor.name == "model.layers.3.mlp.down_proj.weight"
        assert leaf.parent.path == "model.layers.3.mlp.down_proj"


def test_roles_quantizable_and_gguf_names(tmp_path):
    write_hf_llama(tmp_path, layers=2, hidden=64, ffn=128)
    with open_model(tmp_path) as m:
        t = {i.name: i for i in m.tensors}
        q = t["model.layers.1.self_attn.q_proj.weight"]
        assert (q.role, q.quantizable, q.block_index, q.gguf_name) == (
            "linear", True, 1, "blk.1.attn_q.weight")
        n = t["model.layers.0.input_layernorm.weight"]
        assert (n.role, n.quantizable, n.gguf_name) == ("norm", False, "blk.0.attn_norm.weight")
        e = t["model.embed_tokens.weight"]
        assert (e.role, e.quantizable, e.block_index, e.gguf_name) == (
            "embedding", True, None, "token_embd.weight")
        assert t["lm_head.weight"].gguf_name == "output.weight"
        assert t["model.norm.weight"].gguf_name == "output_norm.weight"
        assert m.n_head == 4 and m.n_head_kv == 2


def test_bert_position_and_token_type_embeddings_stay_float(tmp_path):
    rng = np.random.default_rng(0)
    names = {
        "embeddings.word_embeddings.weight": (50, 64),
        "embeddings.position_embeddings.weight": (32, 64),
        "embeddings.token_type_embeddings.weight": (2, 64),
        "encoder.layer.0.attention.self.query.weight": (64, 64),
        "encoder.layer.0.attention.self.query.bias": (64,),
        "encoder.layer.0.attention.output.LayerNorm.weight": (64,),
    }
    save_file({k: rng.standard_normal(s).astype(np.float32) for k, s in names.items()},
              tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"model_type": "bert", "num_hidden_layers": 1}')
    with open_model(tmp_path) as m:
        q = {t.name: t.quantizable for t in m.tensors}
        assert q == {
            "embeddings.word_embeddings.weight": True,
            "embeddings.position_embeddings.weight": False,
            "embeddings.token_type_embeddings.weight": False,
            "encoder.layer.0.attention.self.query.weight": True,
            "encoder.layer.0.attention.self.query.bias": False,
            "encoder.layer.0.attention.output.LayerNorm.weight": False,
        }
        assert m.tensor("embeddings.position_embeddings.weight").gguf_name == "position_embd.weight"
        assert m.tensor("encoder.layer.0.attention.self.query.bias").role == "bias"


def test_llama_quantize_rules_on_gguf_names():
    assert is_quantizable("x", (8, 32), "F32", "blk.0.ffn_gate_inp.weight") is False
    assert is_quantizable("x", (8, 32), "F32", "blk.0.attn_norm.weight") is False
    assert is_quantizable("x", (8, 32), "F32", "blk.0.ssm_conv1d.weight") is False
    assert is_quantizable("x", (8, 32), "F32", "blk.0.attn_q.bias") is False
    assert is_quantizable("x", (8, 4, 32), "F32", "blk.0.ffn_up_exps.weight") is True
    assert is_quantizable("x", (1, 32), "F32", "blk.0.attn_q.weight") is False  # one real dim
    assert is_quantizable("x", (8, 32), "I32", "blk.0.attn_q.weight") is False
    assert effective_rank((1, 1, 5)) == 1 and effective_rank((2, 1, 5)) == 3


def test_unknown_architecture_uses_checkpoint_names(tmp_path):
    rng = np.random.default_rng(0)
    save_file({"net.0.weight": rng.standard_normal((8, 32)).astype(np.float32),
               "net.0.bias": rng.standard_normal(8).astype(np.float32),
               "net.bn.running_var": rng.standard_normal(8).astype(np.float32)},
              tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        assert m.architecture is None and all(t.gguf_name is None for t in m.tensors)
        assert m.tensor("net.0.weight").quantizable and m.tensor("net.0.weight").block_index == 0
        assert not m.tensor("net.0.bias").quantizable
