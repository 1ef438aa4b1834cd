"""The GPTQ job: calibration windows through the model block by block, every planned linear of a
block quantized by GPTQ on the inputs it really sees (blocks before it already quantized), the
bytes kept on disk until the exporter or the report takes them.

Memory: one decoder block's float weights, one Hessian per group of linears sharing an input,
and the calibration set's hidden states; the quantized bytes go to a temporary folder, not RAM.

``method="gptq"`` on ``qtstudio-cli quantize`` / ``export`` runs this job first, then the usual
quantize or export job with the GPTQ bytes as precomputed tensors (everything the job did not
touch, such as embeddings and norms, goes the ordinary way).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtstudio.core.encodings import get_encoding
from qtstudio.core.metrics import MetricsAccumulator
from qtstudio.core.model import Model
from qtstudio.core.plan import Plan
from qtstudio.core.qtensor import QTensor
from qtstudio.quant.ggml_grid import GRID_TYPES, GGMLGridScheme
from qtstudio.quant.gptq import GPTQOptions, GPTQResult, gptq, hessian_error
from qtstudio.quant.hessian import HessianAccumulator
from qtstudio.quant.llama_blocks import SEQUENTIAL_GROUPS, LlamaBlocks, linear_name

from . import CancelToken, Progress
from .quantize import QuantizeReport, quantize_job

#: (checkpoint tensor name, its shape) -> the grid scheme GPTQ rounds onto, or None: not GPTQ's
SchemeFor = Callable[[str, tuple[int, ...]], Any]
#: (tensor name, GPTQ result, the scheme, the Hessian) -> stored; called as each tensor finishes
ResultSink = Callable[[str, GPTQResult, Any, torch.Tensor], None]


class GPTQStore(Mapping[str, QTensor]):
    """GPTQ bytes by checkpoint tensor name, in a temporary folder (memory-mapped on read)."""

    def __init__(self, parent: str | Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="qtstudio-gptq-", dir=parent))
        self._meta: dict[str, tuple[tuple[int, ...], str, str]] = {}

    def put(self, name: str, qt: QTensor) -> None:
        file = self.folder / f"{len(self._meta):05d}.npy"
        np.save(file, qt.data)
        self._meta[name] = (tuple(qt.shape), qt.encoding.name, file.name)

    def __getitem__(self, name: str) -> QTensor:
        shape, enc, file = self._meta[name]
        return QTensor(np.load(self.folder / file, mmap_mode="r"), shape, enc)

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class GPTQRun:
    store: GPTQStore
    tensors: list[dict[str, Any]] = field(default_factory=list)
    block_seconds: list[float] = field(default_factory=list)
    windows: int = 0
    ctx: int = 0
    elapsed: float = 0.0


def ggml_schemes(plan: Plan, threads: int | None = None) -> SchemeFor:
    """GPTQ for every planned tensor whose encoding has a ggml grid; the rest goes plain."""
    encodings = {e.name: e.encoding for e in plan.entries}

    def scheme(name: str, shape: tuple[int, ...]) -> GGMLGridScheme | None:
        enc = encodings.get(name)
        if enc not in GRID_TYPES or len(shape) != 2:
            return None
        return GGMLGridScheme(enc, shape[1], threads=threads)
    return scheme


def sequential_gptq(model: Model, tokens: np.ndarray, scheme_for: SchemeFor,
                    sink: ResultSink, *, options: GPTQOptions | None = None,
                    fixed_weights: Callable[[str, np.ndarray], np.ndarray] | None = None,
                    cancel: CancelToken | None = None,
                    ) -> Generator[Progress, None, list[float]]:
    """Run GPTQ block after block; returns the seconds each block took (the head last, if any).

    ``fixed_weights(name, w)`` gives the values a tensor GPTQ does not touch will have (its
    plain quantization), so later blocks see the inputs the exported model computes."""
    cancel = cancel or CancelToken()
    options = options or GPTQOptions()
    engine = LlamaBlocks(model)
    n_layers = engine.shape.n_layers
    head_scheme = scheme_for(engine.head_name, tuple(model.tensor(engine.head_name).shape)) \
        if engine.head_name != "model.embed_tokens.weight" else None
    total = n_layers + (1 if head_scheme is not None else 0)
    start = time.perf_counter()
    seconds: list[float] = []
    yield Progress("gptq", "embedding", 0, total, 0, 0, 0.0,
                   f"{tokens.shape[0]} windows of {tokens.shape[1]} tokens")
    h = engine.embed(tokens)
    for i in range(n_layers):
        cancel.check()
        t0 = time.perf_counter()
        weights = engine.load_block(i)
        for short in [s for g in SEQUENTIAL_GROUPS for s in g]:
            name = linear_name(i, short)
            if scheme_for(name, tuple(weights[short].shape)) is None and fixed_weights:
                weights[short] = torch.from_numpy(
                    np.ascontiguousarray(fixed_weights(name, weights[short].numpy())))
        for group in SEQUENTIAL_GROUPS:
            names = {s: linear_name(i, s) for s in group}
            schemes = {s: scheme_for(n, tuple(weights[s].shape)) for s, n in names.items()}
            todo = [s for s in group if schemes[s] is not None]
            if not todo:
                continue
            acc = HessianAccumulator(weights[group[0]].shape[1])

            def observe(short: str, x: torch.Tensor, group=group, acc=acc) -> None:
                if short == group[0]:
                    acc.add(x)
            engine.run_block(weights, h, observe)
            for s in todo:
                cancel.check()
                yield Progress("gptq", names[s], i, total, 0, 0, time.perf_counter() - start,
                               f"block {i}: {s}")
                w = weights[s].numpy()
                res = gptq(w, acc.hessian(), schemes[s], options, cancel=cancel)
                sink(names[s], res, schemes[s], acc.hessian())
                weights[s] = torch.from_numpy(res.values)
        h = engine.run_block(weights, h)
        seconds.append(time.perf_counter() - t0)
        del weights
    if head_scheme is not None:
        cancel.check()
        t0 = time.perf_counter()
        yield Progress("gptq", engine.head_name, n_layers, total, 0, 0,
                       time.perf_counter() - start, "output head")
        x = engine.head_input(h)
        acc = HessianAccumulator(x.shape[-1])
        acc.add(x)
        w = np.ascontiguousarray(model.load(engine.head_name), np.float32)
        res = gptq(w, acc.hessian(), head_scheme, options, cancel=cancel)
        sink(engine.head_name, res, head_scheme, acc.hessian())
        seconds.append(time.perf_counter() - t0)
    return seconds


def _plain_values(plan: Plan, threads: int | None) -> Callable[[str, np.ndarray], np.ndarray]:
    encodings = {e.name: e.encoding for e in plan.entries}

    def values(name: str, w: np.ndarray) -> np.ndarray:
        enc = get_encoding(encodings.get(name, "F32"))
        if enc.name == "F32" or w.ndim != 2:
            return w
        return enc.dequantize_rows(enc.quantize_rows(np.ascontiguousarray(w, np.float32),
                                                     threads=threads), w.shape[1])
    return values


def gptq_job(model: Model, plan: Plan, tokens: np.ndarray, *,
             options: GPTQOptions | None = None, threads: int | None = None,
             cancel: CancelToken | None = None, workdir: str | Path | None = None,
             ) -> Generator[Progress, None, GPTQRun]:
    """GPTQ every block linear (and the output head) whose planned encoding has a ggml grid;
    returns the bytes (a :class:`GPTQStore`; call ``cleanup`` when done) and per tensor the
    Hessian-weighted output error of GPTQ against plain rounding to the same type."""
    start = time.perf_counter()
    store = GPTQStore(workdir)
    run = GPTQRun(store=store, windows=int(tokens.shape[0]), ctx=int(tokens.shape[1]))

    def sink(name: str, res: GPTQResult, scheme: GGMLGridScheme, h: torch.Tensor) -> None:
        w = np.ascontiguousarray(model.load(name), np.float32)
        qt = QTensor(scheme.encode(res.q, res.grids), w.shape, scheme.encoding)
        store.put(name, qt)
        imp = np.ascontiguousarray(torch.diagonal(h).numpy(), np.float32)
        enc = scheme.encoding
        plain = enc.dequantize_rows(enc.quantize_rows(w, imatrix=imp, threads=threads),
                                    w.shape[1])
        hn = h.numpy()
        run.tensors.append({"name": name, "encoding": enc.name, "shape": list(w.shape),
                            "output_error_gptq": hessian_error(w, res.values, hn),
                            "output_error_plain": hessian_error(w, plain, hn),
                            "dead_columns": res.dead_columns})

    try:
        run.block_seconds = yield from sequential_gptq(
            model, tokens, ggml_schemes(plan, threads), sink, options=options,
            fixed_weights=_plain_values(plan, threads), cancel=cancel)
    except BaseException:
        store.cleanup()
        raise
    run.elapsed = time.perf_counter() - start
    return run


def gptq_quantize_job(model: Model, plan: Plan, tokens: np.ndarray, *,
                      options: GPTQOptions | None = None, threads: int | None = None,
                      cancel: CancelToken | None = None,
                      ) -> Generator[Progress, None, QuantizeReport]:
    """``quantize --method gptq``: the quantize report, GPTQ tensors measured from their bytes
    (and with their output error against plain rounding), the others quantized as usual."""
    run = yield from gptq_job(model, plan, tokens, options=options, threads=threads,
                              cancel=cancel)
    try:
        rest = Plan(entries=[e for e in plan.entries if e.name not in run.store],
                    target_format=plan.target_format, preset=plan.preset,
                    original_bytes=plan.original_bytes)
        report = yield from quantize_job(model, rest, threads=threads, cancel=cancel)
        by_name = {t["name"]: t for t in run.tensors}
        for entry in plan.entries:
            if entry.name not in run.store:
                continue
            w = np.ascontiguousarray(model.load(entry.name), np.float32)
            qt = run.store[entry.name]
            acc = MetricsAccumulator(w.shape[1], None)
            acc.update(w, qt.encoding.dequantize_rows(np.ascontiguousarray(qt.data),
                                                      w.shape[1]))
            row = {"name": entry.name, "gguf_name": entry.gguf_name,
                   "shape": list(entry.shape), "source_dtype": entry.source_dtype,
                   "encoding": entry.encoding, "requested": entry.requested,
                   "fallback_from": entry.fallback_from, "params": entry.params,
                   "nbytes": entry.nbytes, "source_nbytes": model.tensor(entry.name).nbytes,
                   "bpw": round(entry.bpw, 4), "nonfinite": 0, "error": None,
                   "method": "gptq"}
            row.update(acc.result().to_dict())
            extra = by_name[entry.name]
            row["output_error_gptq"] = extra["output_error_gptq"]
            row["output_error_plain"] = extra["output_error_plain"]
            report.tensors.append(row)
            report._e2 += acc.e2
            report._s2 += acc.s2
        report.elapsed += run.elapsed
        order = {e.name: k for k, e in enumerate(plan.entries)}
        report.tensors.sort(key=lambda t: order.get(t["name"], 0))
        return report
    finally:
        run.store.cleanup()
