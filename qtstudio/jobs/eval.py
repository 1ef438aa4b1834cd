"""The evaluation job: the model as opened against the model under a plan, on calibration data.

Both models run through the same streamed, block-major engine (qtstudio.calib). For language
models, every window position that predicts a next token is scored: KL(reference || quantized),
the negative log-likelihood of the true next token under each, and whether their top-1 tokens
agree. Encoders compare mean-pooled sentence embeddings (cosine); the demo MLP compares class
probabilities and accuracy. The GUI and ``qtstudio-cli eval`` drive the same generator.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qtstudio.calib import engine_kind, open_engine, plan_weight_fn
from qtstudio.calib.data import CalibrationData, prepare_data
from qtstudio.calib.metrics import KLAccumulator, kl_summary, perplexity
from qtstudio.calib.weights import plan_activation_rounding
from qtstudio.core.model import Model
from qtstudio.core.plan import Plan

from . import CancelToken, Progress

#: logits rows per head chunk: about 32 MiB of float64 log-probabilities at a time
HEAD_CHUNK_VALUES = 4 * 1024 * 1024


def _kl_statistic(key: str) -> property:
    """One of kl_summary's statistics (``key``) of a result's per-position KL, as a property."""
    return property(lambda self: kl_summary(self.kl)[key],
                    doc=f"kl_summary(self.kl)[{key!r}]")


@dataclass
class EvalResult:
    """What a plan does to the model's outputs. ``to_dict()`` is the CLI's --json."""

    kind: str
    model: str
    data: str
    n_windows: int
    ctx: int
    plan: dict[str, Any] = field(default_factory=dict)
    #: whether matmul inputs were rounded as llama.cpp's CPU backend rounds them
    llama_cpp_activations: bool = True
    #: per scored position (decoder), per sentence (encoder: 1 - cosine), per image (mlp)
    kl: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nll_reference: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nll_quantized: np.ndarray = field(default_factory=lambda: np.zeros(0))
    top1: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: encoder only: cosine of reference and quantized sentence embeddings
    cosine: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: mlp only: accuracy of each model on the labelled test set
    accuracy_reference: float | None = None
    accuracy_quantized: float | None = None
    elapsed: float = 0.0

    # --- summaries --------------------------------------------------------------------------
    @property
    def tokens(self) -> int:
        return int(self.kl.size if self.kind != "encoder" else self.cosine.size)

    kl_mean = _kl_statistic("kl_mean")
    kl_median = _kl_statistic("kl_median")
    kl_p99 = _kl_statistic("kl_p99")
    kl_max = _kl_statistic("kl_max")

    @property
    def ppl_reference(self) -> float:
        return perplexity(self.nll_reference)

    @property
    def ppl_quantized(self) -> float:
        return perplexity(self.nll_quantized)

    @property
    def top1_agreement(self) -> float:
        return float(self.top1.mean()) if self.top1.size else float("nan")

    @property
    def tokens_per_second(self) -> float:
        """Positions through both passes per second of the whole job."""
        return self.tokens / self.elapsed if self.elapsed > 0 else 0.0

    def kl_by_position(self) -> np.ndarray:
        """Mean KL at each position in the window, over windows: [ctx - 1] (decoder only)."""
        if self.kind != "decoder" or not self.kl.size:
            return np.zeros(0)
        return self.kl.reshape(self.n_windows, -1).mean(0)

    def kl_histogram(self, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of KL over positions on a log scale, for plotting."""
        kl = self.kl[self.kl > 0]
        if not kl.size:
            return np.zeros(bins, np.int64), np.linspace(0, 1, bins + 1)
        lo, hi = np.log10(kl.min()), np.log10(kl.max())
        edges = np.logspace(lo, hi if hi > lo else lo + 1, bins + 1)
        # 10 ** log10(x) may land a hair inside x: keep the extremes in the outer bins
        edges[0], edges[-1] = min(edges[0], kl.min()), max(edges[-1], kl.max())
        counts, _ = np.histogram(kl, edges)
        return counts, edges

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "model": self.model, "data": self.data,
                             "windows": self.n_windows, "ctx": self.ctx, "tokens": self.tokens}
        if self.kind == "encoder":
            d.update({"cosine_mean": float(self.cosine.mean()),
                      "cosine_min": float(self.cosine.min()), "sentences": int(self.cosine.size)})
        else:
            d.update(kl_summary(self.kl))
            d["top1_agreement"] = self.top1_agreement
        if self.kind == "decoder":
            d["ppl_reference"] = self.ppl_reference
            d["ppl_quantized"] = self.ppl_quantized
        if self.kind == "mlp":
            d["accuracy_reference"] = self.accuracy_reference
            d["accuracy_quantized"] = self.accuracy_quantized
        d["plan"] = self.plan
        d["llama_cpp_activations"] = self.llama_cpp_activations
        d["elapsed"] = round(self.elapsed, 3)
        d["tokens_per_second"] = round(self.tokens_per_second, 1)
        return d


def _plan_summary(plan: Plan) -> dict[str, Any]:
    return {"preset": plan.preset, "avg_bpw": round(plan.avg_bpw, 4),
            "total_bytes": plan.total_bytes, "encodings": plan.counts()}


def calibration_start(model: Model, data: str | Path | CalibrationData | None, *, ctx: int,
                      chunks: int | None, threads: int | None, cancel: CancelToken,
                      ) -> Generator[Progress, None, CalibrationData]:
    """What every calibration job does first: torch's thread count, then the tokenized data
    (``data``: a text file, None for the default corpus, or CalibrationData already made)."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        torch.set_num_threads(threads)
    yield Progress("tokenize", "", 0, 1, 0, 0, 0.0, "reading calibration data")
    cd = data if isinstance(data, CalibrationData) else prepare_data(
        model, engine_kind(model), data, ctx=ctx, chunks=chunks)
    cancel.check()
    return cd


def eval_job(model: Model, plan: Plan, data: str | Path | CalibrationData | None = None, *,
             ctx: int = 512, chunks: int | None = None, imatrix=None,
             allow_requantize: bool = False, threads: int | None = None,
             cancel: CancelToken | None = None, batch_tokens: int = 4096,
             llama_cpp_activations: bool = True, weight_fn=None,
             ) -> Generator[Progress, None, EvalResult]:
    """Evaluate ``plan`` on ``data`` (a text file, None for the default corpus, or prepared
    CalibrationData). Yields Progress per block of each pass and per head chunk.

    ``llama_cpp_activations``: the quantized pass also rounds each matmul's input as
    llama.cpp's CPU backend does for the planned weight type (Q8_0 / Q8_K blocks, half
    precision), so the KL is the one llama.cpp will show; False measures the weights alone.
    ``weight_fn``: the quantized pass's values when they are not the plan's plain rounding
    (GPTQ bytes, :mod:`qtstudio.jobs.optimize_gptq`).
    """
    import torch

    cancel = cancel or CancelToken()
    start = time.perf_counter()
    kind = engine_kind(model)
    cd = yield from calibration_start(model, data, ctx=ctx, chunks=chunks, threads=threads,
                                      cancel=cancel)
    weight_fn = weight_fn or plan_weight_fn(model, plan, imatrix=imatrix,
                                            allow_requantize=allow_requantize, threads=threads)
    ref = open_engine(model, batch_tokens=batch_tokens)
    rounding = plan_activation_rounding(plan) if llama_cpp_activations else None
    qnt = open_engine(model, weight_fn=weight_fn, batch_tokens=batch_tokens,
                      activation_rounding=rounding)
    n = ref.n_blocks
    total = 2 * (n + 1) + 1

    def step(stage: str, name: str, idx: int, msg: str) -> Progress:
        return Progress(stage, name, idx, total, 0, 0, time.perf_counter() - start, msg)

    hs = []
    for p, (label, eng) in enumerate((("reference", ref), ("quantized", qnt))):
        base = p * (n + 1)
        h = eng.embed(cd.inputs)
        yield step(label, "embeddings", base + 1, f"{label}: embeddings")
        for i in range(n):
            cancel.check()
            h = eng.run_block(i, h)
            yield step(label, f"block {i}", base + i + 2, f"{label}: block {i + 1}/{n}")
        hs.append(h)
    cancel.check()
    result = EvalResult(kind=kind, model=str(model.path), data=cd.source,
                        n_windows=cd.n_items,
                        ctx=cd.windows.ctx if cd.windows is not None else 0,
                        plan=_plan_summary(plan),
                        llama_cpp_activations=rounding is not None)
    if kind == "decoder":
        yield from _score_decoder(ref, qnt, hs[0], hs[1], cd, result, cancel, step, total)
    elif kind == "encoder":
        import torch.nn.functional as F  # noqa: N812

        mask = torch.from_numpy(cd.encoder_inputs.mask)
        a, b = ref.pool(hs[0], mask), qnt.pool(hs[1], mask)
        result.cosine = F.cosine_similarity(a.double(), b.double(), dim=-1).numpy()
    else:
        acc = KLAccumulator()
        acc.add(hs[0], hs[1], None)
        result.kl, result.top1 = acc.kl, acc.top1
        y = cd.labels
        result.accuracy_reference = float((hs[0].argmax(-1).numpy() == y).mean())
        result.accuracy_quantized = float((hs[1].argmax(-1).numpy() == y).mean())
    result.elapsed = time.perf_counter() - start
    yield step("done", "", total, "done")
    return result


def _score_decoder(ref, qnt, h_ref, h_q, cd: CalibrationData, result: EvalResult,
                   cancel: CancelToken, step, total: int) -> Generator[Progress, None, None]:
    import torch

    tokens = torch.from_numpy(cd.windows.tokens)
    d = h_ref.shape[-1]
    # every position but the last predicts the next token of its window
    xr = h_ref[:, :-1].reshape(-1, d)
    xq = h_q[:, :-1].reshape(-1, d)
    targets = tokens[:, 1:].reshape(-1)
    head_r, head_q = ref.load_head(), qnt.load_head()
    rows = max(1, HEAD_CHUNK_VALUES // max(1, ref.vocab_size))
    acc = KLAccumulator()
    n = xr.shape[0]
    for r0 in range(0, n, rows):
        cancel.check()
        lr = ref.logits(xr[r0:r0 + rows], head_r)
        lq = qnt.logits(xq[r0:r0 + rows], head_q)
        acc.add(lr, lq, targets[r0:r0 + rows])
        yield step("head", "output", total - 1, f"scoring {min(n, r0 + rows)}/{n} positions")
    result.kl, result.top1 = acc.kl, acc.top1
    result.nll_reference, result.nll_quantized = acc.nll_reference, acc.nll_quantized
