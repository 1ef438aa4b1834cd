"""A tiny llama trained on a toy grammar, for GPTQ quality tests: no downloads, seconds on CPU.

Random weights would make "GPTQ beats rounding" meaningless (nothing to preserve), so the model
learns a small language first: sentences from a grammar with agreement and a few long-range
choices. Calibration and held-out text come from different random streams of the same grammar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "every child", "the robot",
            "our teacher", "a small bird", "the farmer", "this engine"]
VERBS = ["sees", "likes", "builds", "finds", "paints", "moves", "carries", "counts",
         "follows", "opens"]
OBJECTS = ["the red box", "a green tree", "seven stones", "the long road", "two blue cups",
           "a quiet house", "the wooden door", "many letters", "the bright star", "one apple"]
ENDINGS = ["today", "at night", "in the morning", "with care", "again", "slowly", "for fun",
           "near the river"]


def grammar_text(seed: int, sentences: int) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(sentences):
        s, v, o = rng.integers(len(SUBJECTS)), rng.integers(len(VERBS)), rng.integers(len(OBJECTS))
        # the ending depends on the subject: something worth learning across the sentence
        e = (s + int(rng.integers(2))) % len(ENDINGS)
        out.append(f"{SUBJECTS[s]} {VERBS[v]} {OBJECTS[o]} {ENDINGS[e]}.")
    return " ".join(out)


def build_trained_llama(folder: str | Path, *, steps: int = 80, seed: int = 0) -> Path:
    """Train and save a llama folder (hidden 256 so K-quants apply); returns the folder."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = grammar_text(seed + 100, 3000)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text[i:i + 2000] for i in range(0, len(text), 2000)],
                            trainers.BpeTrainer(
                                vocab_size=384, special_tokens=["<s>", "</s>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False))
    ids = torch.tensor(tok.encode(text).ids)
    config = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    ctx, batch = 32, 8
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - ctx - 1, (batch,), generator=gen)
        x = torch.stack([ids[s:s + ctx] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": False,
        "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"}),
        encoding="utf-8")
    (folder / "train_loss.txt").write_text(f"{float(loss.detach()):.4f}\n", encoding="utf-8")
    return folder
