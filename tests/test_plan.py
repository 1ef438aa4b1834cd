"""Plans: precedence, fallbacks with their cost, format limits, and sizes equal to real bytes."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import qtstudio
from qtstudio.core.plan import MEMORY_OVERHEAD, resolve_plan
from qtstudio.core.recipe import Recipe, Rule
from qtstudio.formats import open_model
from tests.helpers.raw_checkpoints import write_hf_llama


@pytest.fixture()
def llama(tmp_path):
    with open_model(write_hf_llama(tmp_path / "m", layers=2)) as m:
        yield m


def test_rules_first_match_wins_over_preset(llama):
    recipe = Recipe(preset="Q4_K_M", rules=[
        Rule(r"attn_v", "Q8_0", target="gguf_name"),
        Rule(r"blk\.0\.", "Q5_K", target="gguf_name"),
        Rule("model.layers.*.mlp.*", "Q2_K", syntax="glob"),
    ])
    plan = resolve_plan(llama, recipe)
    e = {x.name: x for x in plan.entries}
    assert e["model.layers.0.self_attn.v_proj.weight"].encoding == "Q8_0"
    assert e["model.layers.0.self_attn.v_proj.weight"].origin == "rule 1"
    assert e["model.layers.0.self_attn.q_proj.weight"].encoding == "Q5_K"
    assert e["model.layers.0.mlp.up_proj.weight"].encoding == "Q5_K"  # rule 2 came first
    assert e["model.layers.1.mlp.up_proj.weight"].encoding == "Q2_K"
    assert e["model.layers.1.self_attn.q_proj.weight"].origin == "preset"
    assert e["model.layers.1.input_layernorm.weight"].origin == "float"


def test_override_beats_rules_and_norm_cannot_be_quantized(llama):
    recipe = Recipe(preset="Q4_0", rules=[Rule(".*", "Q8_0")], overrides={
        "model.layers.1.self_attn.q_proj.weight": "F16",
        "model.layers.1.input_layernorm.weight": "Q4_0"})
    plan = resolve_plan(llama, recipe)
    assert plan.entry("model.layers.1.self_attn.q_proj.weight").encoding == "F16"
    assert plan.entry("model.layers.1.self_attn.q_proj.weight").origin == "override"
    norm = plan.entry("model.layers.1.input_layernorm.weight")
    assert norm.encoding == "F32" and norm.fallback_from == "Q4_0"
    assert "not quantizable" in norm.reason


def test_shape_fallbacks_are_visible_with_their_cost(tmp_path):
    rng = np.random.default_rng(0)
    save_file({"a.weight": rng.standard_normal((4, 96)).astype(np.float32),
               "b.weight": rng.standard_normal((4, 40)).astype(np.float32),
               "c.weight": rng.standard_normal((4, 512)).astype(np.float32)},
              tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        plan = resolve_plan(m, Recipe(default_encoding="Q4_K"))
    a, b, c = (plan.entry(n) for n in ("a.weight", "b.weight", "c.weight"))
    assert (a.encoding, a.fallback_from) == ("Q5_0", "Q4_K")
    assert "row length 96 is not a multiple of Q4_K's block of 256" in a.reason
    assert a.bpw_cost == pytest.approx(5.5 - 4.5)
    assert (b.encoding, b.fallback_from) == ("F16", "Q4_K")
    assert b.bpw_cost == pytest.approx(16 - 4.5)
    assert c.fallback_from is None and c.encoding == "Q4_K"
    assert [e.name for e in plan.fallbacks] == ["a.weight", "b.weight"]
    total_p = 4 * (96 + 40 + 512)
    assert plan.fallback_bpw_cost == pytest.approx((1.0 * 4 * 96 + 11.5 * 4 * 40) / total_p)


def test_export_format_fallbacks(llama):
    nnef = resolve_plan(llama, Recipe(rules=[Rule("q_proj", "Q4_K"), Rule("k_proj", "Q6_K")]),
                        target_format="nnef")
    q = nnef.entry("model.layers.0.self_attn.q_proj.weight")
    k = nnef.entry("model.layers.0.self_attn.k_proj.weight")
    # NNEF falls back to a float type (issue 6), never silently to another quantizer.
    assert (q.encoding, q.fallback_from) == ("F16", "Q4_K") and "NNEF" in q.reason
    assert (k.encoding, k.fallback_from) == ("F16", "Q6_K")
    assert q.bpw_cost == pytest.approx(16.0 - 4.5)
    bf = resolve_plan(llama, Recipe(float_encoding="BF16"), target_format="nnef")
    norm = bf.entry("model.norm.weight")
    assert (norm.encoding, norm.fallback_from) == ("F32", "BF16")
    ok = resolve_plan(llama, Recipe(rules=[Rule("q_proj", "Q4_0")]), target_format="nnef")
    assert ok.entry("model.layers.0.self_attn.q_proj.weight").fallback_from is None
    gg = resolve_plan(llama, Recipe(rules=[Rule("q_proj", "INT8_PC_ASYM")]))
    assert gg.entry("model.layers.0.self_attn.q_proj.weight").encoding == "Q8_0"
    free = resolve_plan(llama, Recipe(rules=[Rule("q_proj", "INT8_PC_ASYM")]),
                        target_format=None)
    assert free.entry("model.layers.0.self_attn.q_proj.weight").encoding == "INT8_PC_ASYM"


def test_sizes_are_the_encoded_bytes(llama):
    plan = resolve_plan(llama, Recipe(preset="Q3_K_M"), target_format=None)
    for e in plan.entries[:6]:
        qt = qtstudio.quantize(llama.load(e.name), e.encoding)
        assert qt.nbytes == e.nbytes, e.name
    assert plan.total_bytes == sum(e.nbytes for e in plan.entries)
    assert plan.original_bytes == llama.total_bytes
    assert plan.avg_bpw == pytest.approx(8 * plan.total_bytes / llama.total_params)
    assert plan.memory_estimate_bytes == round(
        llama.total_params * plan.avg_bpw / 8 * MEMORY_OVERHEAD)


def test_float_presets_and_float_encoding(llama):
    plan = resolve_plan(llama, Recipe(preset="F16", float_encoding="BF16"))
    assert plan.entry("model.layers.0.self_attn.q_proj.weight").encoding == "F16"
    assert plan.entry("model.norm.weight").encoding == "BF16"
    nothing = resolve_plan(llama, Recipe())
    assert set(nothing.counts()) == {"F32"}


def test_output_and_token_embedding_types(llama):
    plan = resolve_plan(llama, Recipe(preset="Q4_K_M", output_tensor_type="Q8_0",
                                      token_embedding_type="Q6_K"))
    assert plan.entry("lm_head.weight").encoding == "Q8_0"
    assert plan.entry("model.embed_tokens.weight").encoding == "Q6_K"


def test_plan_dict_fields(llama):
    d = resolve_plan(llama, Recipe(preset="Q4_K_M")).to_dict()
    t = d["tensors"][0]
    assert {"name", "gguf_name", "encoding", "nbytes"} <= set(t)
    assert {"total_bytes", "avg_bpw", "memory_estimate_bytes", "total_params"} <= set(d)


def test_unknown_architecture_counts_layers_in_numeric_order(tmp_path):
    rng = np.random.default_rng(0)
    t = {}
    for i in range(12):
        t[f"net.{i}.attn.v_proj.weight"] = rng.standard_normal((4, 256)).astype(np.float32)
        t[f"net.{i}.mlp.down_proj.weight"] = rng.standard_normal((4, 256)).astype(np.float32)
    save_file(t, tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        assert m.architecture is None and m.n_blocks == 12
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
    from qtstudio.core.presets import use_more_bits
    want = [i for i in range(12) if use_more_bits(i, 12)]
    assert [i for i in range(12) if plan.entry(f"net.{i}.attn.v_proj.weight").encoding
            == "Q6_K"] == want
    assert [i for i in range(12) if plan.entry(f"net.{i}.mlp.down_proj.weight").encoding
            == "Q6_K"] == want


def test_integer_tensors_keep_their_dtype_through_plan_and_gguf(tmp_path):
    """An I64 position_ids tensor is planned as I64 at its real size (never F32), and the GGUF
    export stores ggml's I64 type with the exact values (read back by the gguf package)."""
    from gguf import GGMLQuantizationType, GGUFReader

    from qtstudio.export.gguf import export_gguf

    ids = (np.arange(512, dtype=np.int64) * 3_000_000_007)[None]  # beyond float32's exact range
    path = tmp_path / "m.safetensors"
    save_file({"w.weight": np.random.default_rng(0).standard_normal((64, 256)).astype(
        np.float32), "position_ids": ids}, path)
    with open_model(path) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_0"))
        e = plan.entry("position_ids")
        assert (e.encoding, e.nbytes, e.quantizable) == ("I64", ids.nbytes, False)
        assert plan.entry("w.weight").encoding == "Q4_0"
        out = tmp_path / "m.gguf"
        export_gguf(m, plan, out)
    t = {x.name: x for x in GGUFReader(out).tensors}["position_ids"]
    assert t.tensor_type == GGMLQuantizationType.I64
    assert np.array_equal(np.asarray(t.data).reshape(-1), ids.reshape(-1))
