"""Tiny Hugging Face checkpoints built on the spot: no downloads, a few hundred kB each.

``build_tiny_llama`` writes a llama-architecture folder (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json) with random weights and a byte-level BPE tokenizer
trained on a few sentences; ``build_tiny_bert`` does the same for a BERT encoder with a
WordPiece tokenizer. Dimensions are chosen so K-quants apply (rows of 256).
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a small model for testing quantization and export",
    "llama cpp loads gguf files and runs them on the cpu",
    "mixed precision plans keep sensitive tensors in more bits",
    "numbers like 12345 and 678 appear in text too",
    "hello world, hello tokens; goodbye floats!",
] * 4

# Text whose split differs between pre-tokenizers: digit runs, contractions, runs of mixed
# whitespace and punctuation; trained on, so merges across those boundaries exist.
SPLIT_CORPUS = [
    "don't I'll we've they're she'd it's 12345 678 9012345 year 2024",
    "tabs\tand  two spaces,   three;\n\nnew lines!!! ...and (parens) \"quotes\"",
    "DON'T shout: I'LL 1000000 x 42 == 43?",
] * 6

#: build_bpe_tokenizer's pre_split for GPT-2's ByteLevel split trained on SPLIT_CORPUS too
GPT2_SPLIT = "gpt2"


def _save_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def build_bpe_tokenizer(vocab_size: int = 320, pre_split: str | None = None,
                        ignore_merges: bool = False):
    """Byte-level BPE. ``pre_split``: None (the original tiny tokenizer: GPT-2's ByteLevel
    split), ``GPT2_SPLIT`` (the same, trained on SPLIT_CORPUS too) or a regex, written as a
    Split step before a regex-free ByteLevel as Llama 3 / Qwen2 tokenizer.json files do."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    corpus = CORPUS
    if pre_split is None or pre_split == GPT2_SPLIT:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pre_split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if pre_split is not None:
        corpus = CORPUS + SPLIT_CORPUS
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return tok


def build_tiny_llama(folder: str | Path, *, seed: int = 0, hidden: int = 256, layers: int = 2,
                     heads: int = 4, kv_heads: int = 2, intermediate: int = 512,
                     model_type: str = "llama", tie_embeddings: bool = False,
                     init_range: float = 0.08, dtype: str = "float32",
                     pre_split: str | None = None, ignore_merges: bool = False) -> Path:
    """A llama (or mistral / qwen2) folder with random weights; returns the folder.
    ``pre_split`` / ``ignore_merges`` choose the tokenizer (see build_bpe_tokenizer)."""
    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_bpe_tokenizer(pre_split=pre_split, ignore_merges=ignore_merges)
    vocab = tok.get_vocab_size()
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv_heads, max_position_embeddings=128,
                  rms_norm_eps=1e-5, initializer_range=init_range,
                  tie_word_embeddings=tie_embeddings, bos_token_id=0, eos_token_id=1)
    if model_type == "llama":
        config = transformers.LlamaConfig(**common)
        cls = transformers.LlamaForCausalLM
    elif model_type == "mistral":
        config = transformers.MistralConfig(**common, sliding_window=None)
        cls = transformers.MistralForCausalLM
    elif model_type == "qwen2":
        config = transformers.Qwen2Config(**common)
        cls = transformers.Qwen2ForCausalLM
    else:
        raise ValueError(f"unknown tiny model type {model_type!r}")
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        # random norms and biases too, so a wrong mapping of either shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    model.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True)
    tok.save(str(folder / "tokenizer.json"))
    _save_json(folder / "tokenizer_config.json", {
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": False,
        "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"})
    return folder


def build_wordpiece_tokenizer(vocab_size: int = 400):
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special,
                                        show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return tok


def build_tiny_bert(folder: str | Path, *, seed: int = 0, hidden: int = 256, layers: int = 2,
                    heads: int = 4, intermediate: int = 512) -> Path:
    """A BERT encoder folder (BertModel weights, WordPiece tokenizer); returns the folder."""
    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_wordpiece_tokenizer()
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=128,
        type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu", initializer_range=0.08)
    torch.manual_seed(seed)
    model = transformers.BertModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder, safe_serialization=True)
    tok.save(str(folder / "tokenizer.json"))
    _save_json(folder / "tokenizer_config.json", {
        "cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]",
        "mask_token": "[MASK]", "do_lower_case": True, "model_max_length": 128,
        "tokenizer_class": "BertTokenizerFast"})
    return folder


def use_sentencepiece_tokenizer(folder: str | Path, vocab_size: int = 310) -> bytes:
    """Replace a folder's tokenizer.json by a SentencePiece tokenizer.model (BPE with byte
    fallback, as Llama 2 and Mistral ship); returns the model bytes."""
    import io

    import sentencepiece as spm

    folder = Path(folder)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, minloglevel=2)
    (folder / "tokenizer.json").unlink(missing_ok=True)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    _save_json(folder / "tokenizer_config.json", {"bos_token": "<s>", "eos_token": "</s>",
                                                  "unk_token": "<unk>", "add_bos_token": True})
    return buf.getvalue()
