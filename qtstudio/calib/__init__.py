"""Calibration: run a checkpoint on text, block by block, and measure what a plan does to it.

Plain Python and torch, no Qt. The pieces, in the order a job uses them:

- ``text``: the calibration text, a user's UTF-8 file (``read_text_file``) or the embedded
  default corpus (the standard library's ``pydoc_data`` help topics; always present, but weaker
  than the user's own data). Empty, binary, non-UTF-8 files: a one-line ``CalibrationError``.
- ``tokenizer``: the checkpoint's own tokenizer (HF ``tokenizer.json`` / ``tokenizer.model``;
  GGUF ``tokenizer.ggml.*`` metadata), encoding without special tokens as llama.cpp does.
- ``windows``: non-overlapping windows of ``ctx`` tokens, BOS first when the model wants it.
- ``weights``: ``TensorAccess`` (weights by GGUF name: override, else checkpoint through a
  ``weight_fn``) and ``plan_weight_fn`` (decode(quantize(w)) per the plan: what export stores).
- engines, all block-major: ``DecoderEngine`` (llama / mistral / qwen2, from HF folders, torch
  state dicts with config.json, GGUF files), ``EncoderEngine`` (bert, mean-pooled sentence
  embeddings), ``MLPEngine`` (the demo). ``open_engine`` picks one.
- ``metrics``: KL / perplexity / top-1 accumulated chunk by chunk (never a [windows x ctx x
  vocab] array for the run).

The streamed pass: embed every window, then for each block load that block's weights, run every
window's activations through it, drop the weights; then the output head, chunk by chunk. Peak
memory is one block's float32 weights plus the activations [windows, ctx, hidden].

The hooks the imatrix, GPTQ and sensitivity work build on::

    from qtstudio.calib import open_engine

    eng = open_engine(model)                      # float reference
    h = eng.embed(windows.tokens)                 # [windows, ctx, hidden]

    # (a) observer: the input of every linear layer, [tokens, in_features], by GGUF name
    def observe(name, x):                         # may be called once per window batch
        sums[name] = sums.get(name, 0) + (x.double() ** 2).sum(0)
    h1 = eng.run_block(0, h, observer=observe)

    # (c) one block alone on given inputs, weights loaded once and reused
    w0 = eng.load_block(0)
    ref = eng.run_block(0, h, weights=w0)

    # (b) one tensor swapped for a candidate encoding (stored layout, as model.load returns)
    name = "blk.0.attn_v.weight"
    info = eng.access.info(name)
    cand = dequantize(quantize(model.load(info.name), "Q4_K"))
    out = eng.run_block(0, h, weights=w0, overrides={name: cand})
    err = ((out - ref) ** 2).mean() / (ref ** 2).mean()

    # the head: logits of final activations [n, hidden] -> [n, vocab]
    logits = eng.logits(h_final.reshape(-1, h_final.shape[-1]), eng.load_head())

A whole plan is applied with ``open_engine(model, weight_fn=plan_weight_fn(model, plan))``; the
jobs in ``qtstudio.jobs.eval`` / ``qtstudio.jobs.imatrix`` drive these pieces with progress and
cancellation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decoder import DECODER_ARCHS, DecoderEngine, DecoderSpec, Observer
from .encoder import ENCODER_ARCHS, EncoderEngine, EncoderInputs, pad_sentences
from .errors import CalibrationError
from .mlp import MLPEngine
from .text import DEFAULT_CORPUS_NAME, CalibrationText, default_corpus, load_text, read_text_file
from .tokenizer import ModelTokenizer, load_tokenizer
from .weights import TensorAccess, WeightFn, plan_weight_fn
from .windows import DEFAULT_CTX, Windows, make_windows, sentences, tokenize_windows

if TYPE_CHECKING:
    from qtstudio.core.model import Model

__all__ = [
    "DEFAULT_CORPUS_NAME", "DEFAULT_CTX", "CalibrationError", "CalibrationText", "DecoderEngine",
    "DecoderSpec", "EncoderEngine", "EncoderInputs", "MLPEngine", "ModelTokenizer", "Observer",
    "TensorAccess", "WeightFn", "Windows", "default_corpus", "engine_kind", "load_text",
    "load_tokenizer", "make_windows", "open_engine", "pad_sentences", "plan_weight_fn",
    "read_text_file", "sentences", "tokenize_windows",
]

Engine = DecoderEngine | EncoderEngine | MLPEngine


def engine_kind(model: Model) -> str:
    """"decoder", "encoder" or "mlp"; a CalibrationError for anything else."""
    arch = model.architecture or ""
    if arch in DECODER_ARCHS:
        return "decoder"
    if arch in ENCODER_ARCHS:
        return "encoder"
    if isinstance(model.config.get("tensor_prefixes"), list) and model.config.get("layers"):
        return "mlp"
    raise CalibrationError(model.path, f"architecture {arch or 'unknown'!r} cannot be evaluated "
                                       "(llama, mistral, qwen2, bert and the demo MLP can)")


def open_engine(model: Model, *, weight_fn: WeightFn | None = None,
                observer: Observer | None = None, batch_tokens: int = 4096,
                activation_rounding: dict[str, str] | None = None) -> Engine:
    """The engine for ``model``; ``activation_rounding`` (decoders) rounds matmul inputs as
    llama.cpp's CPU backend does (see ``weights.plan_activation_rounding``)."""
    kind = engine_kind(model)
    if kind == "decoder":
        return DecoderEngine(model, weight_fn=weight_fn, observer=observer,
                             batch_tokens=batch_tokens, activation_rounding=activation_rounding)
    if kind == "encoder":
        return EncoderEngine(model, weight_fn=weight_fn, observer=observer,
                             batch_tokens=batch_tokens)
    return MLPEngine(model, weight_fn=weight_fn, observer=observer)
