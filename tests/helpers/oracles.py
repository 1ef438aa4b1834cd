"""What the llama.cpp oracle tests and benchmarks share."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """llama.cpp logs to stderr from C: point file descriptor 2 at /dev/null for a while."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)



def llama_window_logits(path: str | Path, windows: Iterable[Sequence[int]], *, ctx: int,
                        threads: int = 2) -> np.ndarray:
    """llama.cpp's logits (llama-cpp-python) at every position of each window, each window
    from an empty cache: float64 [windows, positions, vocab]. ``ctx`` is the context size (at
    least the longest window); it is also the batch, so a window is one decode."""
    import llama_cpp

    out = []
    with quiet_stderr():
        llm = llama_cpp.Llama(str(path), n_ctx=ctx, n_batch=ctx, logits_all=True,
                              verbose=False, n_threads=threads)
        for w in windows:
            llm.reset()
            llm.eval([int(t) for t in w])
            out.append(np.array(llm.scores[: len(w)], dtype=np.float64))
        llm.close()
    return np.stack(out)


def mean_kl(ref: np.ndarray, got: np.ndarray) -> float:
    """KL(softmax(ref) || softmax(got)) over the last axis, in float64, averaged over the rest."""
    import torch

    lp = torch.log_softmax(torch.as_tensor(ref, dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.as_tensor(got, dtype=torch.float64), -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())
