"""Calibration data in the shape each engine takes, from a text file or the default corpus.

Decoders get token windows; encoders get one sentence per line (CLS ... SEP, cut to the model's
positions, at most ``chunks`` sentences); the demo MLP gets its held-out digits (the text file is
not used: the demo is an image classifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .encoder import EncoderInputs, EncoderSpec, pad_sentences
from .errors import CalibrationError
from .text import load_text
from .tokenizer import load_tokenizer
from .windows import Windows, sentences, tokenize_windows

if TYPE_CHECKING:
    from qtstudio.core.model import Model


@dataclass
class CalibrationData:
    kind: str  # "decoder" | "encoder" | "mlp"
    #: a file name, or the default corpus's name, or "demo test set"
    source: str
    windows: Windows | None = None
    encoder_inputs: EncoderInputs | None = None
    #: demo: inputs [n, features] and labels [n]
    mlp_inputs: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        if self.windows is not None:
            return self.windows.n_windows
        if self.encoder_inputs is not None:
            return int(self.encoder_inputs.ids.shape[0])
        return 0 if self.mlp_inputs is None else int(self.mlp_inputs.shape[0])

    @property
    def tokens(self) -> int:
        """Positions evaluated: predicted tokens, real sentence tokens, or images."""
        if self.windows is not None:
            return self.windows.scored_positions
        if self.encoder_inputs is not None:
            return int(self.encoder_inputs.mask.sum())
        return self.n_items

    @property
    def inputs(self):
        if self.windows is not None:
            return self.windows.tokens
        return self.encoder_inputs if self.encoder_inputs is not None else self.mlp_inputs


def prepare_data(model: Model, kind: str, data: str | Path | None, *, ctx: int,
                 chunks: int | None = None) -> CalibrationData:
    """Read, validate and tokenize the calibration data for ``model`` (engine ``kind``)."""
    if kind == "mlp":
        from qtstudio.core import demo

        x, y = demo.load_test_set()
        if chunks is not None:
            x, y = x[:chunks], y[:chunks]
        return CalibrationData("mlp", "demo digits test set", mlp_inputs=x, labels=y)
    text = load_text(data)
    tok = load_tokenizer(model)
    if kind == "encoder":
        lines = sentences(text.text, limit=chunks)
        if not lines:
            raise CalibrationError(text.path, "has no sentences (no non-blank lines)")
        limit = min(ctx, EncoderSpec.from_model(model).max_positions)
        ids = [tok.encode(s) for s in lines]
        if not any(ids):
            raise CalibrationError(text.path, "gives no tokens with the model's tokenizer")
        inputs = pad_sentences(ids, tok.cls_id, tok.sep_id, limit)
        return CalibrationData("encoder", text.source, encoder_inputs=inputs)
    if tok.vocab_size is not None:
        n_embd = next((t.shape[0] for t in model.tensors
                       if t.gguf_name == "token_embd.weight"), None)
        if n_embd is not None and tok.vocab_size > n_embd:
            raise CalibrationError(tok.source, f"the tokenizer has {tok.vocab_size} tokens, the "
                                               f"model's embedding only {n_embd}")
    windows = tokenize_windows(tok, text.text, ctx, chunks=chunks, source=text.source,
                               path=text.path or text.source)
    return CalibrationData("decoder", text.source, windows=windows)
