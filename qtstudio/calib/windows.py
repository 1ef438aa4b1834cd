"""Cutting a token stream into evaluation windows.

Each window is a fresh context of ``ctx`` tokens (non-overlapping), as llama-perplexity and
llama-imatrix cut their chunks. When the model expects BOS at the start of a context, the window
is BOS followed by ``ctx - 1`` text tokens. Every position but the last predicts the next token
of its window, so a window scores ``ctx - 1`` positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CalibrationError
from .tokenizer import ModelTokenizer

DEFAULT_CTX = 512


@dataclass(frozen=True)
class Windows:
    #: int64 [n_windows, ctx]
    tokens: np.ndarray
    #: text tokens the file gave (before cutting)
    text_tokens: int
    source: str

    @property
    def n_windows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def ctx(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def scored_positions(self) -> int:
        return self.n_windows * (self.ctx - 1)


def make_windows(ids: list[int] | np.ndarray, ctx: int, *, chunks: int | None = None,
                 bos_id: int | None = None, source: str = "", path=None) -> Windows:
    """Non-overlapping windows of ``ctx`` tokens; ``chunks`` caps how many."""
    if ctx < 2:
        raise CalibrationError(path, f"--ctx {ctx}: a window needs at least 2 tokens")
    if chunks is not None and chunks < 1:
        raise CalibrationError(path, f"--chunks {chunks}: must be at least 1")
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    per = ctx - 1 if bos_id is not None else ctx
    n = arr.size // per
    if n == 0:
        raise CalibrationError(path, f"{arr.size} tokens are shorter than one window of {ctx} "
                                     "tokens; give more text or a smaller --ctx")
    if chunks is not None:
        n = min(n, chunks)
    body = arr[: n * per].reshape(n, per)
    if bos_id is not None:
        body = np.concatenate([np.full((n, 1), bos_id, dtype=np.int64), body], axis=1)
    return Windows(np.ascontiguousarray(body), int(arr.size), source)


def tokenize_windows(tokenizer: ModelTokenizer, text: str, ctx: int, *,
                     chunks: int | None = None, source: str = "", path=None) -> Windows:
    """Tokenize ``text`` with the model's tokenizer and cut it into windows.

    Only as much text as ``chunks`` windows need is tokenized (with a margin), so a small
    evaluation of a big file stays quick.
    """
    if chunks is not None and chunks >= 1:
        # tokens are rarely shorter than 1 character on average: 8 chars per token is a margin
        budget = chunks * ctx * 8
        if len(text) > budget:
            cut = text.rfind("\n", 0, budget)
            text = text[: cut if cut > budget // 2 else budget]
    ids = tokenizer.encode(text)
    bos = tokenizer.bos_id if tokenizer.add_bos else None
    return make_windows(ids, ctx, chunks=chunks, bos_id=bos, source=source, path=path)


def sentences(text: str, *, limit: int | None = None) -> list[str]:
    """One sentence per non-blank line, for encoder models."""
    out = [line.strip() for line in text.splitlines() if line.strip()]
    return out[:limit] if limit else out
