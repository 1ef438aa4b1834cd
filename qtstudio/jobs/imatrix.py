"""The importance-matrix job: llama-imatrix's statistics from the streamed reference pass.

For every matrix multiplication (every linear layer's weight, by GGUF name) it sums, over every
calibration token, the square of each input column, and counts the tokens: llama-imatrix's
``in_sum2`` and ``counts``. As llama-imatrix by default, the output head is left out (it is
quantized without one) and the token embedding is a lookup, not a product. Written as llama.cpp's
GGUF imatrix, or as the legacy ``.dat`` when the file name ends in ``.dat``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qtstudio.calib import open_engine
from qtstudio.calib.data import CalibrationData
from qtstudio.core.model import Model
from qtstudio.formats.imatrix import ImportanceMatrix, save_imatrix_gguf, save_imatrix_legacy

from . import CancelToken, Progress
from .eval import calibration_start


@dataclass
class ImatrixResult:
    #: GGUF tensor name -> float64 [in_features] sum of squared inputs
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    #: GGUF tensor name -> tokens seen
    counts: dict[str, int] = field(default_factory=dict)
    chunk_count: int = 0
    chunk_size: int = 0
    dataset: str = ""
    model: str = ""
    elapsed: float = 0.0

    def to_importance_matrix(self) -> ImportanceMatrix:
        """The per-column weights the quantizers take (sum / count)."""
        return ImportanceMatrix({k: (v / max(1, self.counts[k])).astype(np.float32)
                                 for k, v in self.sums.items()},
                                [self.dataset], self.chunk_count, self.chunk_size)

    def save(self, path: str | Path) -> Path:
        """GGUF imatrix, or legacy .dat by extension; atomic (temp file, then rename)."""
        p = Path(path)
        if p.suffix.lower() == ".dat":
            ncall = max(1, self.chunk_count)
            # legacy files hold mean * ncall; readers divide by ncall again
            sums = {k: (v / max(1, self.counts[k]) * ncall).astype(np.float32)
                    for k, v in self.sums.items()}
            save_imatrix_legacy(p, sums, dict.fromkeys(sums, ncall),
                                chunk_count=self.chunk_count, dataset=self.dataset)
        else:
            save_imatrix_gguf(p, {k: v.astype(np.float32) for k, v in self.sums.items()},
                              {k: float(c) for k, c in self.counts.items()},
                              datasets=[self.dataset], chunk_count=self.chunk_count,
                              chunk_size=self.chunk_size)
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "entries": len(self.sums),
                "chunk_count": self.chunk_count, "chunk_size": self.chunk_size,
                "tokens": max(self.counts.values(), default=0),
                "elapsed": round(self.elapsed, 3)}


def imatrix_job(model: Model, data: str | Path | CalibrationData | None = None, *,
                ctx: int = 512, chunks: int | None = None, threads: int | None = None,
                cancel: CancelToken | None = None, batch_tokens: int = 4096,
                ) -> Generator[Progress, None, ImatrixResult]:
    import torch

    cancel = cancel or CancelToken()
    start = time.perf_counter()
    cd = yield from calibration_start(model, data, ctx=ctx, chunks=chunks, threads=threads,
                                      cancel=cancel)
    result = ImatrixResult(chunk_count=cd.n_items,
                           chunk_size=cd.windows.ctx if cd.windows is not None else 0,
                           dataset=cd.source, model=str(model.path))
    sums: dict[str, torch.Tensor] = {}

    def observe(name: str, x: torch.Tensor) -> None:
        s = (x.to(torch.float64) ** 2).sum(0)
        if name in sums:
            sums[name] += s
        else:
            sums[name] = s
        result.counts[name] = result.counts.get(name, 0) + int(x.shape[0])

    eng = open_engine(model, observer=observe, batch_tokens=batch_tokens)
    n = eng.n_blocks
    h = eng.embed(cd.inputs)
    for i in range(n):
        cancel.check()
        h = eng.run_block(i, h)
        yield Progress("imatrix", f"block {i}", i + 1, n, 0, 0, time.perf_counter() - start,
                       f"block {i + 1}/{n}")
    result.sums = {k: v.numpy() for k, v in sums.items()}
    result.elapsed = time.perf_counter() - start
    return result
