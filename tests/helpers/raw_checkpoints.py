"""Small checkpoints written with numpy alone (no tokenizer, no transformers) for the core tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_hf_llama(folder: Path, *, layers: int = 2, hidden: int = 256, ffn: int = 512,
                   vocab: int = 100, heads: int = 4, kv_heads: int = 2, seed: int = 0,
                   dtype=np.float16) -> Path:
    """A Hugging Face llama-named folder (config.json + model.safetensors) of random weights."""
    rng = np.random.default_rng(seed)
    kv = hidden // heads * kv_heads
    t: dict[str, np.ndarray] = {}

    def add(name, shape):
        t[name] = (rng.standard_normal(shape) * 0.05).astype(dtype)

    add("model.embed_tokens.weight", (vocab, hidden))
    for i in range(layers):
        p = f"model.layers.{i}."
        add(p + "self_attn.q_proj.weight", (hidden, hidden))
        add(p + "self_attn.k_proj.weight", (kv, hidden))
        add(p + "self_attn.v_proj.weight", (kv, hidden))
        add(p + "self_attn.o_proj.weight", (hidden, hidden))
        add(p + "mlp.gate_proj.weight", (ffn, hidden))
        add(p + "mlp.up_proj.weight", (ffn, hidden))
        add(p + "mlp.down_proj.weight", (hidden, ffn))
        add(p + "input_layernorm.weight", (hidden,))
        add(p + "post_attention_layernorm.weight", (hidden,))
    add("model.norm.weight", (hidden,))
    add("lm_head.weight", (vocab, hidden))
    folder.mkdir(parents=True, exist_ok=True)
    save_file(t, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": layers, "hidden_size": hidden,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "intermediate_size": ffn, "vocab_size": vocab}))
    return folder
