"""The GPTQ job: calibration windows through the model block by block (calibration's
DecoderEngine, so every source it reads: Hugging Face folders, torch state dicts, GGUF files),
every planned linear of a block quantized by GPTQ on the inputs it really sees (blocks before it
already quantized), the bytes kept on disk until the exporter or the report takes them.

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

from qtstudio.calib import CalibrationError, DecoderEngine, WeightFn, engine_kind, plan_weight_fn
from qtstudio.core.metrics import MetricsAccumulator
from qtstudio.core.model import Model, TensorInfo
from qtstudio.core.plan import Plan
from qtstudio.core.qtensor import QTensor
from qtstudio.quant.ggml_grid import GRID_TYPES, GGMLGridScheme
from qtstudio.quant.gptq import GPTQOptions, GPTQResult, gptq, hessian_error, prepare_hessian
from qtstudio.quant.hessian import HessianAccumulator

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
class BlockTiming:
    """Where one block's time went: the calibration forward passes that measure the Hessians
    (one per group of linears sharing an input, and the pass to the next block) and GPTQ itself
    (factorisations and the column loops)."""

    block: int                 # the output head counts as block n_layers
    seconds: float = 0.0
    measure_seconds: float = 0.0
    gptq_seconds: float = 0.0


@dataclass
class GPTQRun:
    store: GPTQStore
    tensors: list[dict[str, Any]] = field(default_factory=list)
    block_seconds: list[float] = field(default_factory=list)
    block_timings: list[BlockTiming] = field(default_factory=list)
    windows: int = 0
    ctx: int = 0
    elapsed: float = 0.0


def ggml_schemes(plan: Plan, threads: int | None = None) -> SchemeFor:
    """GPTQ for every planned tensor whose encoding has a ggml grid; the rest goes plain. A
    tensor already stored in its planned type keeps its bytes (as the export keeps them)."""
    encodings = {e.name: e.encoding for e in plan.entries if e.source_dtype != e.encoding}

    def scheme(name: str, shape: tuple[int, ...]) -> GGMLGridScheme | None:
        enc = encodings.get(name)
        if enc not in GRID_TYPES or len(shape) != 2:
            return None
        return GGMLGridScheme(enc, shape[1], threads=threads)
    return scheme


#: linears whose inputs are computed one group after another (the earlier group quantized);
#: GGUF names, as the calibration engine calls them, inside ``blk.N.``
SEQUENTIAL_GROUPS = (("attn_q", "attn_k", "attn_v"), ("attn_output",), ("ffn_gate", "ffn_up"),
                     ("ffn_down",))


def check_gptq_model(model: Model) -> None:
    """A CalibrationError naming the file unless calibration's decoder engine runs ``model``."""
    _decoder_engine(model, None)


def gptq_tokens(model: Model, data: str | Path, *, ctx: int, windows: int) -> np.ndarray:
    """int64 [windows, ctx]: GPTQ's calibration windows, ``data`` cut by the model's own
    tokenizer (Hugging Face files or GGUF metadata). One definition for the CLI, the window and
    the optimizer, so each cuts the same windows from the same settings."""
    from qtstudio.calib.data import prepare_data

    if not Path(data).is_file():
        raise ValueError(f"{data}: no such calibration file")
    check_gptq_model(model)
    return prepare_data(model, "decoder", str(data), ctx=ctx, chunks=windows).windows.tokens


def _decoder_engine(model: Model, weight_fn: WeightFn | None) -> DecoderEngine:
    if engine_kind(model) != "decoder":
        raise CalibrationError(model.path, f"GPTQ runs decoder language models (llama, "
                                           f"mistral, qwen2); this one is "
                                           f"{model.architecture or 'of unknown architecture'}")
    return DecoderEngine(model, weight_fn=weight_fn)


def _head_hessian(engine: DecoderEngine, h: torch.Tensor) -> HessianAccumulator:
    """Inputs of the output matrix (final norm applied), chunk by chunk of tokens."""
    head = engine.load_head()
    acc = HessianAccumulator(int(h.shape[-1]))
    flat = h.reshape(-1, h.shape[-1])
    for t0 in range(0, flat.shape[0], engine.batch_tokens):
        engine.logits(flat[t0:t0 + engine.batch_tokens], head,
                      observer=lambda _name, x: acc.add(x))
    return acc


def sequential_gptq(model: Model, tokens: np.ndarray, scheme_for: SchemeFor,
                    sink: ResultSink, *, options: GPTQOptions | None = None,
                    weight_fn: WeightFn | None = None, cancel: CancelToken | None = None,
                    ) -> Generator[Progress, None, list[BlockTiming]]:
    """Run GPTQ block after block on calibration's decoder engine (any source it reads: Hugging
    Face folders, torch state dicts, GGUF files); returns each block's timing (the head last,
    if GPTQ'd). ``scheme_for`` and ``sink`` take checkpoint tensor names. GPTQ works on
    the stored layout: a GGUF llama's q/k rows are interleaved, but GPTQ treats rows
    independently and its Hessian is over input columns, so the row order does not matter.

    ``weight_fn`` (calibration's kind) gives the values the tensors GPTQ does not touch will
    have (their plain quantization), so later blocks see the inputs the exported model
    computes. Memory: one block's weights, one Hessian per input, the hidden states."""
    cancel = cancel or CancelToken()
    options = options or GPTQOptions()
    access = _decoder_engine(model, None).access

    def scheme_of(gguf: str) -> Any:
        if not access.has(gguf):
            return None
        info = access.info(gguf)
        return scheme_for(info.name, tuple(info.shape))

    def values(info: TensorInfo, w: np.ndarray) -> np.ndarray:
        if weight_fn is None or scheme_for(info.name, tuple(info.shape)) is not None:
            return w
        return weight_fn(info, w)

    engine = _decoder_engine(model, values)
    n_layers = engine.n_blocks
    head = engine.head_name
    head_scheme = scheme_of(head) if head == "output.weight" else None
    total = n_layers + (1 if head_scheme is not None else 0)
    start = time.perf_counter()
    timings: list[BlockTiming] = []
    yield Progress("gptq", "embedding", 0, total, 0, 0, 0.0,
                   f"{tokens.shape[0]} windows of {tokens.shape[1]} tokens")
    h = engine.embed(tokens)
    for i in range(n_layers):
        cancel.check()
        t0 = time.perf_counter()
        timing = BlockTiming(i)
        weights = engine.load_block(i)
        done: dict[str, np.ndarray] = {}   # GGUF name -> GPTQ values, stored layout
        for group in SEQUENTIAL_GROUPS:
            names = [f"blk.{i}.{k}.weight" for k in group]
            todo = [(n, sch) for n in names if (sch := scheme_of(n)) is not None]
            if not todo:
                continue
            acc = HessianAccumulator(int(access.info(names[0]).shape[-1]))

            def observe(name: str, x: torch.Tensor, first=names[0], acc=acc) -> None:
                if name == first:
                    acc.add(x)
            t1 = time.perf_counter()
            engine.run_block(i, h, weights=weights, overrides=done, observer=observe)
            t2 = time.perf_counter()
            timing.measure_seconds += t2 - t1
            prepared = prepare_hessian(acc.hessian(), options)
            timing.gptq_seconds += time.perf_counter() - t2
            for name, sch in todo:
                cancel.check()
                info = access.info(name)
                yield Progress("gptq", info.name, i, total, 0, 0, time.perf_counter() - start,
                               f"block {i}: {name.split('.')[2]}")
                w = np.ascontiguousarray(model.load(info.name), np.float32)
                res = gptq(w, prepared, sch, options, cancel=cancel)
                timing.gptq_seconds += res.seconds
                sink(info.name, res, sch, acc.hessian())
                done[name] = res.values
            del prepared
        t1 = time.perf_counter()
        h = engine.run_block(i, h, weights=weights, overrides=done)
        timing.measure_seconds += time.perf_counter() - t1
        timing.seconds = time.perf_counter() - t0
        timings.append(timing)
        del weights, done
    if head_scheme is not None:
        cancel.check()
        t0 = time.perf_counter()
        info = access.info(head)
        yield Progress("gptq", info.name, n_layers, total, 0, 0,
                       time.perf_counter() - start, "output head")
        acc = _head_hessian(engine, h)
        measured = time.perf_counter() - t0
        w = np.ascontiguousarray(model.load(info.name), np.float32)
        res = gptq(w, acc.hessian(), head_scheme, options, cancel=cancel)
        sink(info.name, res, head_scheme, acc.hessian())
        timings.append(BlockTiming(n_layers, time.perf_counter() - t0, measured, res.seconds))
    return timings


def gptq_job(model: Model, plan: Plan, tokens: np.ndarray, *,
             options: GPTQOptions | None = None, threads: int | None = None,
             cancel: CancelToken | None = None, workdir: str | Path | None = None,
             allow_requantize: bool = False) -> Generator[Progress, None, GPTQRun]:
    """GPTQ every block linear (and the output head) whose planned encoding has a ggml grid;
    returns the bytes (a :class:`GPTQStore`; call ``cleanup`` when done) and per tensor the
    Hessian-weighted output error of GPTQ against plain rounding to the same type."""
    start = time.perf_counter()
    plain = plan_weight_fn(model, plan, allow_requantize=allow_requantize, threads=threads)
    store = GPTQStore(workdir)
    run = GPTQRun(store=store, windows=int(tokens.shape[0]), ctx=int(tokens.shape[1]))

    def sink(name: str, res: GPTQResult, scheme: GGMLGridScheme, h: torch.Tensor) -> None:
        w = np.ascontiguousarray(model.load(name), np.float32)
        qt = QTensor(scheme.encode(res.q, res.grids), w.shape, scheme.encoding)
        store.put(name, qt)
        imp = np.ascontiguousarray(torch.diagonal(h).numpy(), np.float32)
        enc = scheme.encoding
        rounded = enc.dequantize_rows(enc.quantize_rows(w, imatrix=imp, threads=threads),
                                      w.shape[1])
        hn = h.numpy()
        run.tensors.append({"name": name, "encoding": enc.name, "shape": list(w.shape),
                            "gptq_seconds": res.seconds,
                            "output_error_gptq": hessian_error(w, res.values, hn),
                            "output_error_plain": hessian_error(w, rounded, hn),
                            "dead_columns": res.dead_columns})

    try:
        run.block_timings = yield from sequential_gptq(
            model, tokens, ggml_schemes(plan, threads), sink, options=options,
            weight_fn=plain, cancel=cancel)
        run.block_seconds = [t.seconds for t in run.block_timings]
    except BaseException:
        store.cleanup()
        raise
    run.elapsed = time.perf_counter() - start
    return run


def gptq_quantize_job(model: Model, plan: Plan, tokens: np.ndarray, *,
                      options: GPTQOptions | None = None, threads: int | None = None,
                      cancel: CancelToken | None = None, allow_requantize: bool = True,
                      ) -> Generator[Progress, None, QuantizeReport]:
    """``quantize --method gptq``: the quantize report, GPTQ tensors measured from their bytes
    (and with their output error against plain rounding), the others quantized as usual. A
    report writes no file, so a quantized source is re-encoded as plain ``quantize`` does."""
    run = yield from gptq_job(model, plan, tokens, options=options, threads=threads,
                              cancel=cancel, allow_requantize=allow_requantize)
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
