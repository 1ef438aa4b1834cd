"""`optimize --method gptq`: the kl objective when every planned type is filled by GPTQ.

Two pieces on top of qtstudio.jobs.gptq:

- :class:`GPTQCandidates` gives the sensitivity measurement GPTQ values instead of plain
  rounding. A candidate is still "this tensor alone quantized, everything else float", so the
  inputs the tensor sees are the float model's: its Hessian is accumulated from the float
  activations of its block (one observed pass per block, shared by every candidate) and each
  candidate is the GPTQ result on that Hessian. Candidate types without a GPTQ grid are plain
  rounded, as ``quantize --method gptq`` does with them.
- :func:`gptq_eval_job` is the check: the whole plan through sequential GPTQ (earlier blocks
  already quantized, exactly the bytes ``quantize``/``export --method gptq`` produce from the
  same tokens), then ``eval`` with those values. It also returns a digest of the bytes, so the
  optimizer's answer can be compared with a later export.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

import numpy as np

from qtstudio.calib import plan_weight_fn
from qtstudio.calib.data import CalibrationData
from qtstudio.core.model import Model, TensorInfo
from qtstudio.core.plan import Plan
from qtstudio.core.recipe import QuantMethod
from qtstudio.quant.ggml_grid import GRID_TYPES, GGMLGridScheme
from qtstudio.quant.gptq import GPTQOptions, gptq
from qtstudio.quant.hessian import HessianAccumulator

from . import CancelToken, Progress
from .eval import EvalResult, eval_job
from .gptq import GPTQRun, gptq_job
from .sensitivity import HEAD_CHUNK_VALUES, PlainCandidates


def gptq_options(method: QuantMethod) -> GPTQOptions:
    opt = GPTQOptions(damp_percent=method.damp_percent, block_size=method.block_size,
                      desc_act=method.desc_act)
    opt.validate()
    return opt


class GPTQCandidates(PlainCandidates):
    """GPTQ values of each candidate on the float model's Hessian of the tensor's input."""

    def __init__(self, options: GPTQOptions, threads: int | None = None) -> None:
        super().__init__(threads)
        self.options = options
        self.cache_extra = {"quant": "gptq", "damp": options.damp_percent,
                            "block_size": options.block_size, "desc_act": options.desc_act}
        self._hessians: dict[str, HessianAccumulator] = {}

    def _observe(self, name: str, x) -> None:
        acc = self._hessians.get(name)
        if acc is None:
            acc = self._hessians[name] = HessianAccumulator(int(x.shape[-1]))
        acc.add(x)

    def start_block(self, eng, i: int, h, weights) -> None:
        self._hessians = {}
        eng.run_block(i, h, weights=weights, observer=self._observe)

    def start_head(self, eng, h_final) -> None:
        self._hessians = {}
        head = eng.load_head()
        d = h_final.shape[-1]
        x = h_final[:, :-1].reshape(-1, d)  # the positions the KL scores
        rows = max(1, HEAD_CHUNK_VALUES // max(1, eng.vocab_size))
        for r in range(0, x.shape[0], rows):
            eng.logits(x[r:r + rows], head, observer=self._observe)

    def values(self, gguf_name: str, encoding: str, w: np.ndarray) -> np.ndarray:
        acc = self._hessians.get(gguf_name)
        if acc is None or encoding not in GRID_TYPES or w.ndim != 2:
            return super().values(gguf_name, encoding, w)
        scheme = GGMLGridScheme(encoding, int(w.shape[1]), threads=self.threads)
        res = gptq(np.ascontiguousarray(w, np.float32), acc.hessian(), scheme, self.options)
        return res.values


def gptq_weight_fn(model: Model, plan: Plan, run: GPTQRun, *, allow_requantize: bool = False,
                   threads: int | None = None):
    """The values of the exported model: GPTQ's bytes decoded where it ran, else the plan's
    plain rounding."""
    plain = plan_weight_fn(model, plan, allow_requantize=allow_requantize, threads=threads)

    def values(info: TensorInfo, arr: np.ndarray) -> np.ndarray:
        if info.name not in run.store:
            return plain(info, arr)
        qt = run.store[info.name]
        n = int(qt.shape[-1])
        return qt.encoding.dequantize_rows(np.ascontiguousarray(qt.data), n,
                                           threads=threads).reshape(qt.shape)
    return values


def store_digest(run: GPTQRun) -> str:
    """sha256 over the GPTQ tensors' names and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(run.store):
        h.update(name.encode())
        h.update(np.ascontiguousarray(run.store[name].data).tobytes())
    return h.hexdigest()


def tensor_digests(run: GPTQRun) -> dict[str, str]:
    return {name: hashlib.sha256(np.ascontiguousarray(run.store[name].data).tobytes()
                                 ).hexdigest() for name in sorted(run.store)}


def gptq_eval_job(model: Model, plan: Plan, data: CalibrationData, tokens: np.ndarray, *,
                  options: GPTQOptions, threads: int | None = None,
                  allow_requantize: bool = False, cancel: CancelToken | None = None,
                  ) -> Generator[Progress, None, tuple[EvalResult, dict[str, Any]]]:
    """``plan`` quantized by GPTQ on ``tokens``, scored by ``eval`` on ``data``. Returns the
    eval result and {"digest", "tensors": per-tensor sha256 of the GPTQ bytes}."""
    run = yield from gptq_job(model, plan, tokens, options=options, threads=threads,
                              cancel=cancel)
    try:
        fn = gptq_weight_fn(model, plan, run, allow_requantize=allow_requantize,
                            threads=threads)
        result = yield from eval_job(model, plan, data, allow_requantize=allow_requantize,
                                     threads=threads, cancel=cancel, weight_fn=fn)
        info = {"digest": store_digest(run), "tensors": tensor_digests(run)}
    finally:
        run.store.cleanup()
    return result, info


def method_tokens(model: Model, method: QuantMethod) -> np.ndarray:
    """GPTQ's calibration windows for ``method``: its text cut as ``quantize --method gptq``
    cuts ``--data`` with ``--calib-ctx`` / ``--calib-windows``."""
    from .gptq import gptq_tokens

    if method.data is None:
        raise ValueError("GPTQ needs calibration text: the method names no data file")
    return gptq_tokens(model, method.data, ctx=method.ctx, windows=method.windows)


class GPTQSetup:
    """What the kl optimizer needs for ``method``: GPTQ's tokens, options and threads."""

    def __init__(self, model: Model, method: QuantMethod, tokens: np.ndarray | None = None,
                 threads: int | None = None) -> None:
        self.model = model
        self.method = method
        self.options = gptq_options(method)
        self.tokens = method_tokens(model, method) if tokens is None else tokens
        self.threads = threads

    def candidates(self) -> GPTQCandidates:
        return GPTQCandidates(self.options, self.threads)

    def eval_job(self, plan: Plan, data: CalibrationData, *, allow_requantize: bool = False,
                 cancel: CancelToken | None = None,
                 ) -> Generator[Progress, None, tuple[EvalResult, dict[str, Any]]]:
        return gptq_eval_job(self.model, plan, data, self.tokens, options=self.options,
                             threads=self.threads, allow_requantize=allow_requantize,
                             cancel=cancel)
