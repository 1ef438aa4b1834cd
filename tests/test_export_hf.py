"""Hugging Face -> GGUF mapping pieces: hyperparameters, names, row order, tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gguf import TokenType

from qtstudio.export.hf_to_gguf import hparams_kv, map_tensor_names, tokenizer_kv
from qtstudio.formats.atomic import ExportError

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
    with pytest.raises(ExportError, match="not valid JSON"):
        tokenizer_kv(empty, "llama", None)


# --- tokenizer.ggml.pre from the tokenizer.json split ---------------------------------------

def _split_then_bytes(*patterns, use_regex=False, **byte_level):
    steps = [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
             for p in patterns]
    byte_step = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": use_regex, **byte_level}
    return {"type": "Sequence", "pretokenizers": [*steps, byte_step]}


def test_pre_tokenizer_detection_table():
    from qtstudio.calib.bpe_pretokenizer import (
        GPT2_PATTERN,
        LLAMA3_PATTERN,
        QWEN2_PATTERN,
        detect_pre_tokenizer,
    )

    def name(pt):
        return detect_pre_tokenizer(pt).name

    assert name({"type": "ByteLevel", "add_prefix_space": False}) == "gpt-2"
    assert name(_split_then_bytes(GPT2_PATTERN)) == "gpt-2"
    assert name(_split_then_bytes(LLAMA3_PATTERN)) == "llama-bpe"
    assert name(_split_then_bytes(QWEN2_PATTERN)) == "qwen2"
    # trivial spelling differences: contractions spelled case by case, real CR/LF characters
    spelled = LLAMA3_PATTERN.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)",
                                     "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])")
    assert name(_split_then_bytes(spelled.replace(r"\r\n", "\r\n"))) == "llama-bpe"
    tekken = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
              r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
              r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    assert name(_split_then_bytes(tekken)) == "tekken"
    starcoder = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}
    assert name(starcoder) == "starcoder"
    coder = {"type": "Sequence", "pretokenizers": [
        *_split_then_bytes("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+",
                           "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+")["pretokenizers"][:-1],
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    assert name(coder) == "deepseek-coder"
    # order matters: the Llama 3 split after a digit split is not Llama 3
    assert name(_split_then_bytes(r"\p{N}", LLAMA3_PATTERN)) == "default"
    # unknown patterns, non-byte-level splits and dropped text fall back loudly
    for pt in (_split_then_bytes(r"\w+|\s+"), {"type": "Whitespace"}, None,
               _split_then_bytes(LLAMA3_PATTERN, use_regex=True)):
        choice = detect_pre_tokenizer(pt)
        assert choice.name == "default" and "'default'" in choice.warning, pt
    removed = _split_then_bytes(LLAMA3_PATTERN)
    removed["pretokenizers"][0]["behavior"] = "Removed"
    assert detect_pre_tokenizer(removed).name == "default"
    # a known split with a llama.cpp-foreign option keeps the name but says so
    prefixed = detect_pre_tokenizer({"type": "ByteLevel", "add_prefix_space": True})
    assert prefixed.name == "gpt-2" and "add_prefix_space" in prefixed.warning


def test_bpe_pre_tokenizer_written_and_fallback_reported(tmp_path):
    from qtstudio.calib.bpe_pretokenizer import LLAMA3_PATTERN

    vocab = {"a": 0, "b": 1, "ab": 2}
    model = {"type": "BPE", "vocab": vocab, "merges": ["a b"]}
    _write(tmp_path, {"model": model, "pre_tokenizer": _split_then_bytes(LLAMA3_PATTERN)})
    warnings: list[str] = []
    kv = _kv(tokenizer_kv(tmp_path, "llama", None, warnings))
    assert kv["tokenizer.ggml.pre"] == "llama-bpe" and warnings == []
    _write(tmp_path, {"model": model, "pre_tokenizer": {"type": "Whitespace"}})
    kv = _kv(tokenizer_kv(tmp_path, "llama", None, warnings))
    assert kv["tokenizer.ggml.pre"] == "default"
    assert len(warnings) == 1 and "tokenizer.json" in warnings[0] and "'default'" in warnings[0]


_SPLIT_TEXTS = ["12345 678", "don't I'll", "DON'T shout: I'LL 1000000 x 42",
                "tabs\tand  two spaces,   three;\n\nnew lines!!! ...and (parens)"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama-bpe", "gpt-2", "qwen2", "tekken"])
def test_llama_cpp_splits_like_hf(tmp_path, kind, monkeypatch):
    """Exported with the detected pre-tokenizer, llama.cpp tokenizes as the HF tokenizer does;
    with llama.cpp's 'default' split at least one of the texts comes out differently."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from tokenizers import Tokenizer

    from qtstudio.calib.bpe_pretokenizer import (
        LLAMA3_PATTERN,
        QWEN2_PATTERN,
        TEKKEN_PATTERN,
        PreTokenizerChoice,
    )
    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe
    from qtstudio.export import hf_to_gguf
    from qtstudio.export.gguf import export_gguf
    from qtstudio.formats import open_model
    from tests.helpers.tiny_models import GPT2_SPLIT, build_tiny_llama

    split = {"llama-bpe": LLAMA3_PATTERN, "gpt-2": GPT2_SPLIT, "qwen2": QWEN2_PATTERN,
             "tekken": TEKKEN_PATTERN}[kind]
    # Llama 3's and Tekken's tokenizer.json take a word found whole in the vocabulary as one
    # token, as llama.cpp does for those two names
    folder = build_tiny_llama(tmp_path / "hf", hidden=64, intermediate=128, layers=1, heads=2,
                              kv_heads=1, pre_split=split,
                              ignore_merges=kind in ("llama-bpe", "tekken"))
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    want = [hf.encode(t).ids for t in _SPLIT_TEXTS]

    def llama_cpp_ids(out):
        with open_model(folder) as m:
            report = export_gguf(m, resolve_plan(m, Recipe(preset="F32")), out)
        llm = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
        try:
            return report, [llm.tokenize(t.encode(), add_bos=False) for t in _SPLIT_TEXTS]
        finally:
            llm.close()

    report, got = llama_cpp_ids(tmp_path / "detected.gguf")
    import gguf

    field = gguf.GGUFReader(tmp_path / "detected.gguf").fields["tokenizer.ggml.pre"]
    assert field.contents() == kind
    assert not any("tokenizer.ggml.pre" in w for w in report.warnings)
    assert got == want
    monkeypatch.setattr(hf_to_gguf, "detect_pre_tokenizer",
                        lambda pt: PreTokenizerChoice("default", "forced for the test"))
    report, got_default = llama_cpp_ids(tmp_path / "default.gguf")
    assert any("forced for the test" in w for w in report.warnings)
    assert got_default != want
