"""Preset mixtures against llama.cpp itself: llama-quantize's choice for every tensor.

A small F32 llama GGUF is quantized by llama.cpp (through llama-cpp-python) with each file type;
the types it wrote must equal the plan's encodings tensor by tensor. Two shapes: one where every
row takes the 256-value k-quant blocks (16 layers, grouped-query attention, separate output), and
one with odd widths (fallbacks to Q5_0/Q5_1/Q8_0/Q4_0, tied embeddings).
"""

from __future__ import annotations

import ctypes

import gguf
import numpy as np
import pytest

from qtstudio.core.plan import resolve_plan
from qtstudio.core.presets import PRESETS, use_more_bits
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model


def write_llama_gguf(path, *, hidden, ffn, layers, heads, kv_heads, vocab, tied) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hidden // heads)
    w.add_file_type(0)
    rng = np.random.default_rng(0)
    kv = kv_heads * hidden // heads

    def add(name, shape):
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    add("token_embd.weight", (vocab, hidden))
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", (hidden,))
        add(f"blk.{i}.attn_q.weight", (hidden, hidden))
        add(f"blk.{i}.attn_k.weight", (kv, hidden))
        add(f"blk.{i}.attn_v.weight", (kv, hidden))
        add(f"blk.{i}.attn_output.weight", (hidden, hidden))
        add(f"blk.{i}.ffn_norm.weight", (hidden,))
        add(f"blk.{i}.ffn_gate.weight", (ffn, hidden))
        add(f"blk.{i}.ffn_up.weight", (ffn, hidden))
        add(f"blk.{i}.ffn_down.weight", (hidden, ffn))
    add("output_norm.weight", (hidden,))
    if not tied:
        add("output.weight", (vocab, hidden))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


MODELS = {
    "k-friendly": dict(hidden=256, ffn=256, layers=16, heads=8, kv_heads=2, vocab=64,
                       tied=False),
    "odd-widths": dict(hidden=96, ffn=160, layers=8, heads=4, kv_heads=4, vocab=40, tied=True),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def llama_gguf(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("llama") / f"{request.param}.gguf"
    write_llama_gguf(path, **MODELS[request.param])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_matches_llama_quantize(llama_gguf, preset, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    out = tmp_path / "out.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = PRESETS[preset].ftype
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(str(llama_gguf).encode(), str(out).encode(),
                                        ctypes.byref(params))
    assert rc == 0
    theirs = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    with open_model(llama_gguf) as model:
        plan = resolve_plan(model, Recipe(preset=preset))
        ours = {e.name: e.encoding for e in plan.entries}
    diff = {k: (ours.get(k), v) for k, v in theirs.items() if ours.get(k) != v}
    assert not diff, f"{preset}: (ours, llama.cpp) differ: {diff}"
    # The plan's sizes are the file's tensor sizes.
    sizes = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(out).tensors}
    assert {e.name: e.nbytes for e in plan.entries} == sizes


def test_use_more_bits_pattern():
    # n = 32: first 4, last 4, and every third from 4 + 2 on
    got = [i for i in range(32) if use_more_bits(i, 32)]
    assert got == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


def test_q4_k_m_layer_pattern(tmp_path):
    path = tmp_path / "m.gguf"
    write_llama_gguf(path, **MODELS["k-friendly"])
    with open_model(path) as model:
        plan = resolve_plan(model, Recipe(preset="Q4_K_M"))
    v6 = [i for i in range(16) if plan.entry(f"blk.{i}.attn_v.weight").encoding == "Q6_K"]
    assert v6 == [i for i in range(16) if use_more_bits(i, 16)]
    assert plan.entry("output.weight").encoding == "Q6_K"
    assert plan.entry("blk.3.attn_q.weight").encoding == "Q4_K"
    assert plan.entry("blk.3.attn_norm.weight").encoding == "F32"


def test_q2_k_uses_gqa(tmp_path):
    a, b = tmp_path / "gqa.gguf", tmp_path / "mha.gguf"
    write_llama_gguf(a, **MODELS["k-friendly"])  # n_gqa = 4
    write_llama_gguf(b, **{**MODELS["k-friendly"], "kv_heads": 8})
    with open_model(a) as ma, open_model(b) as mb:
        assert resolve_plan(ma, Recipe(preset="Q2_K")).entry(
            "blk.0.attn_v.weight").encoding == "Q4_K"
        assert resolve_plan(mb, Recipe(preset="Q2_K")).entry(
            "blk.0.attn_v.weight").encoding == "Q3_K"
