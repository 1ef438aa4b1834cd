"""Hugging Face -> GGUF mapping pieces: hyperparameters, names, row order, tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gguf import TokenType

from qtstudio.export.atomic import ExportError
from qtstudio.export.hf_to_gguf import hparams_kv, map_tensor_names, tokenizer_kv

LLAMA_CFG = {"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2,
             "num_key_value_heads": 1, "num_hidden_layers": 1, "intermediate_size": 16,
             "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 64}


def _kv(items):
    return {k.key: k.value for k in items}


def test_hparams_llama_and_bert(tmp_path):
    kv = _kv(hparams_kv("llama", LLAMA_CFG, tmp_path))
    assert kv["llama.attention.head_count_kv"] == 1
    assert kv["llama.rope.dimension_count"] == 4
    assert kv["llama.rope.freq_base"] == 500000.0
    assert kv["llama.context_length"] == 64
    bert = {"hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
            "intermediate_size": 16, "layer_norm_eps": 1e-12, "type_vocab_size": 2}
    kv = _kv(hparams_kv("bert", bert, tmp_path))
    assert kv["bert.attention.causal"] is False
    assert kv["bert.pooling_type"] == 1  # mean, unless sentence-transformers says CLS
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert _kv(hparams_kv("bert", bert, tmp_path))["bert.pooling_type"] == 2
    with pytest.raises(ExportError, match="missing 'hidden_size'"):
        hparams_kv("llama", {"num_attention_heads": 2}, tmp_path)
    with pytest.raises(ExportError, match="rope scaling 'yarn'"):
        hparams_kv("llama", {**LLAMA_CFG, "rope_scaling": {"rope_type": "yarn"}}, tmp_path)


def test_rotary_rows_are_interleaved_per_head(tmp_path):
    attn = "model.layers.0.self_attn."
    names = [attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight",
             attn + "rotary_emb.inv_freq"]
    conv = map_tensor_names("llama", names, 1, LLAMA_CFG, tmp_path)
    assert conv.names[names[0]] == "blk.0.attn_q.weight"
    assert conv.names[names[3]] is None and conv.skipped == [names[3]]
    assert "blk.0.attn_v.weight" not in conv.transforms
    q = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    # per head of 4 rows, HF keeps the halves [0 1 | 2 3]; ggml wants pairs (0 2)(1 3)
    np.testing.assert_array_equal(conv.transforms["blk.0.attn_q.weight"](q)[:, 0],
                                  [0, 2, 1, 3, 4, 6, 5, 7])
    k = np.arange(4, dtype=np.float32)[:, None]  # one KV head
    np.testing.assert_array_equal(conv.transforms["blk.0.attn_k.weight"](k)[:, 0], [0, 2, 1, 3])
    with pytest.raises(ExportError, match="no GGUF name"):
        map_tensor_names("llama", ["model.mystery.weight"], 1, LLAMA_CFG, tmp_path)


def _write(folder, doc, cfg=None):
    (folder / "tokenizer.json").write_text(json.dumps(doc))
    if cfg is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def test_wordpiece_becomes_bert_vocab(tmp_path):
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "##lo": 5}
    added = [{"id": i, "content": t, "special": True} for t, i in list(vocab.items())[:4]]
    _write(tmp_path, {"model": {"type": "WordPiece", "vocab": vocab}, "added_tokens": added},
           {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]",
            "pad_token": "[PAD]"})
    kv = _kv(tokenizer_kv(tmp_path, "bert", None))
    assert kv["tokenizer.ggml.model"] == "bert"
    assert kv["tokenizer.ggml.tokens"] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u2581hello",
                                           "lo"]
    assert list(kv["tokenizer.ggml.token_type"]) == [3, 3, 3, 3, 1, 1]
    assert kv["tokenizer.ggml.bos_token_id"] == 2  # [CLS]
    assert kv["tokenizer.ggml.seperator_token_id"] == 3


def test_byte_fallback_bpe_becomes_llama_vocab(tmp_path):
    vocab = {"<unk>": 0, "<s>": 1, "<0x41>": 2, "\u2581a": 3, "b": 4}
    _write(tmp_path, {"model": {"type": "BPE", "vocab": vocab, "merges": [["\u2581", "a"]],
                                "byte_fallback": True, "unk_token": "<unk>"},
                      "added_tokens": [{"id": 1, "content": "<s>", "special": True}]})
    kv = _kv(tokenizer_kv(tmp_path, "llama", 7))  # embedding has 2 padding rows
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.tokens"][-2:] == ["[PAD5]", "[PAD6]"]
    types = list(kv["tokenizer.ggml.token_type"])
    assert types == [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.BYTE, TokenType.NORMAL,
                     TokenType.NORMAL, TokenType.UNUSED, TokenType.UNUSED]
    scores = list(kv["tokenizer.ggml.scores"])
    assert scores[3] > scores[4]  # earlier pieces rank first


def test_unigram_and_missing_tokenizer(tmp_path):
    _write(tmp_path, {"model": {"type": "Unigram", "unk_id": 0,
                                "vocab": [["<unk>", 0.0], ["\u2581x", -1.5], ["y", -2.5]]}})
    kv = _kv(tokenizer_kv(tmp_path, "llama", None))
    assert list(kv["tokenizer.ggml.scores"]) == [0.0, -1.5, -2.5]
    assert kv["tokenizer.ggml.token_type"][0] == TokenType.UNKNOWN
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match=r"no tokenizer\.json or tokenizer\.model"):
        tokenizer_kv(empty, "llama", None)
    (empty / "tokenizer.json").write_text("{not json")
    with pytest.raises(ExportError, match="not readable JSON"):
        tokenizer_kv(empty, "llama", None)
