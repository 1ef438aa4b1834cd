"""A small llama that has learned something, for every test that measures output quality.

KL, perplexity and imatrix effects are meaningless on random weights: a random model's outputs
are near-uniform and every perturbation looks alike. This builds a 2-block llama (hidden 256,
MLP 512: rows of 256 so every K-quant applies) with a byte-level BPE tokenizer, and trains it
for 150 steps of 8 x 64 tokens on the embedded default corpus (the standard library's ``pydoc_data``
help text) until it predicts that text far better than chance. It takes well under a minute on
two cores and is cached on disk, keyed by a hash of the builder's parameters, so it is built
once per machine (``QTSTUDIO_TEST_CACHE`` or ``~/.cache/qtstudio-tests``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

#: bump when the recipe changes in a way the parameters below do not show
VERSION = 1

PARAMS = dict(vocab=512, hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2, ctx=64,
              steps=150, batch=8, lr=4e-3, seed=0, train_chars=300_000)


def corpus_text() -> str:
    from qtstudio.calib import default_corpus

    return default_corpus().text


def corpus_file(path: Path, start: int, stop: int) -> Path:
    """Characters [start, stop) of the corpus written to ``path``: a calibration or held-out
    text (the model trained on the first ``train_chars``)."""
    path.write_text(corpus_text()[start:stop], encoding="utf-8")
    return path


def cache_root() -> Path:
    env = os.environ.get("QTSTUDIO_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "qtstudio-tests"


def _key(params: dict) -> str:
    doc = json.dumps({"version": VERSION, **params}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def trained_llama(**overrides) -> Path:
    """The folder of the trained model (config.json, model.safetensors, tokenizer files)."""
    params = {**PARAMS, **overrides}
    folder = cache_root() / f"trained_llama-{_key(params)}"
    if (folder / "done").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        _build(tmp, params)
        (tmp / "done").write_text(json.dumps(params, sort_keys=True))
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: use theirs
            if not (folder / "done").is_file():
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return folder


def _build(folder: Path, p: dict) -> None:
    import numpy as np
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = corpus_text()[: p["train_chars"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=p["vocab"], special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text.split("\n\n"), trainer)
    ids = np.asarray(tok.encode(text).ids, dtype=np.int64)
    config = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=p["hidden"],
        intermediate_size=p["intermediate"], num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"], num_key_value_heads=p["kv_heads"],
        max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=1)
    torch.manual_seed(p["seed"])
    rng = np.random.default_rng(p["seed"])
    model = transformers.LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p["lr"], total_steps=p["steps"],
                                                pct_start=0.1)
    ctx = p["ctx"]
    model.train()
    for _ in range(p["steps"]):
        starts = rng.integers(0, ids.size - ctx - 1, size=p["batch"])
        batch = torch.from_numpy(np.stack([ids[s:s + ctx] for s in starts]))
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": False,
        "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast"}))
    (folder / "train_loss.txt").write_text(f"{loss.item():.4f}\n")
