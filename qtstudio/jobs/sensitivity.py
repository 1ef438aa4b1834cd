"""Measured output sensitivity: what each candidate encoding of one tensor does to the outputs.

For every quantizable tensor of a decoder and every option of the optimizer's cost table, the
tensor alone takes decode(quantize(w)) of that option, every other tensor stays float, and the
calibration windows run through the model. Two methods:

- ``kl``: the mean KL(reference || perturbed) over every scored position, the perturbed block
  feeding float blocks downstream to the logits. Exact for "this tensor alone", and the unit the
  end result is judged in. Costs the blocks after the tensor's own per option.
- ``block``: the squared error of the tensor's own block output (one block run per option),
  put into KL units by one downstream KL per block: every tensor of the block at its smallest
  option together, KL divided by that joint block error. Much cheaper on deep models.

The token embedding and the output head are always measured by KL (their effect is not a block
output). Both methods also record each option's relative block output error
||out - ref||^2 / ||ref||^2 (``out_err``), the "output error" the window shows.

Memory: the float activations of every window at one depth (twice: the reference and the
perturbed copy), one block's weights, plus the float weights of later blocks kept for the kl
method up to ``keep_bytes`` (beyond that they are reloaded per use). Each finished tensor is
written to the on-disk cache at once (qtstudio.core.sensitivity_cache), so a rerun is instant
and a killed run resumes with the tensors it had not finished.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qtstudio.calib import CalibrationError, engine_kind, open_engine
from qtstudio.calib.data import CalibrationData
from qtstudio.core.encodings import get_encoding
from qtstudio.core.model import Model
from qtstudio.core.optimize import CostTable, TensorCosts
from qtstudio.core.sensitivity_cache import SensitivityCache, measurement_key

from . import CancelToken, Progress

METHODS = ("kl", "block")
#: head rows per chunk: about 32 MiB of float64 log-probabilities at a time
HEAD_CHUNK_VALUES = 4 * 1024 * 1024
#: float weights of downstream blocks kept in memory between kl-method runs
KEEP_BYTES = 1 << 30
_FLOAT = ("F32", "F16", "BF16", "F64")


@dataclass
class SensitivityResult:
    table: CostTable
    method: str
    key: str
    cache_dir: Path | None
    #: tensors measured in this run / taken from the cache
    measured: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    #: relative block output error per tensor and encoding
    out_err: dict[str, dict[str, float]] = field(default_factory=dict)
    #: block index per tensor (-1 the embedding, n_blocks the head)
    depth: dict[str, int] = field(default_factory=dict)
    #: seconds spent measuring each block (this run; absent for cached blocks)
    block_seconds: dict[int, float] = field(default_factory=dict)
    elapsed: float = 0.0
    #: the calibration data measured on (its file or corpus name)
    data: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "key": self.key, "measured": self.measured,
                "reused": self.reused, "elapsed": round(self.elapsed, 3),
                "block_seconds": {str(k): round(v, 4) for k, v in self.block_seconds.items()},
                "tensors": [{"name": t.name, "depth": self.depth.get(t.name),
                             "options": [{"encoding": o.encoding, "nbytes": o.nbytes,
                                          "kl": o.error,
                                          "out_err": self.out_err.get(t.name, {}).get(
                                              o.encoding)} for o in t.options]}
                            for t in self.table.tensors]}


def _candidate_values(enc_name: str, w: np.ndarray, threads: int | None) -> np.ndarray:
    enc = get_encoding(enc_name)
    if enc.name == "F32" or (w.ndim < 2 and enc.name in ("F16", "BF16")):
        return w
    n = int(w.shape[-1])
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, n)
    return enc.dequantize_rows(enc.quantize_rows(x, threads=threads), n,
                               threads=threads).reshape(w.shape)


class PlainCandidates:
    """The candidate values a tensor takes: plain decode(quantize(w)). Subclasses fill them
    another way (GPTQ, :mod:`qtstudio.jobs.optimize_gptq`) and may look at the float inputs of
    each block (``start_block``) and of the head (``start_head``) before its tensors are asked.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        #: what makes these values differ from plain ones, for the cache key
        self.cache_extra: dict[str, Any] = {}

    def start_block(self, eng, i: int, h, weights) -> None:
        """Block i is next; ``h`` its float input, ``weights`` its float weights."""

    def start_head(self, eng, h_final) -> None:
        """The head is next; ``h_final`` the float output of the last block."""

    def values(self, gguf_name: str, encoding: str, w: np.ndarray) -> np.ndarray:
        return _candidate_values(encoding, w, self.threads)


class _KL:
    """Mean KL over scored positions of the reference logits against perturbed activations."""

    def __init__(self, eng, h_ref_final) -> None:
        import torch

        self.eng = eng
        d = h_ref_final.shape[-1]
        self.xr = h_ref_final[:, :-1].reshape(-1, d)
        self.head = eng.load_head()
        self.rows = max(1, HEAD_CHUNK_VALUES // max(1, eng.vocab_size))
        # reference log-probabilities kept when small (they are reused for every option)
        n, v = self.xr.shape[0], eng.vocab_size
        self.ref_chunks = None
        if n * v * 8 <= 512 * 2**20:
            self.ref_chunks = [torch.log_softmax(
                self.eng.logits(self.xr[r:r + self.rows], self.head).double(), -1)
                for r in range(0, n, self.rows)]

    def mean(self, h_final, head=None) -> float:
        import torch

        d = h_final.shape[-1]
        xq = h_final[:, :-1].reshape(-1, d)
        head = head or self.head
        total, n = 0.0, xq.shape[0]
        for k, r in enumerate(range(0, n, self.rows)):
            if self.ref_chunks is not None:
                lr = self.ref_chunks[k]
            else:
                lr = torch.log_softmax(self.eng.logits(self.xr[r:r + self.rows],
                                                       self.head).double(), -1)
            lq = torch.log_softmax(self.eng.logits(xq[r:r + self.rows], head).double(), -1)
            total += float((lr.exp() * (lr - lq)).sum(-1).clamp(min=0.0).sum())
        return total / max(1, n)


def sensitivity_job(model: Model, table: CostTable, data: CalibrationData, *,
                    method: str = "kl", cache: bool | Path = True,
                    threads: int | None = None, allow_requantize: bool = False,
                    keep_bytes: int = KEEP_BYTES, cancel: CancelToken | None = None,
                    candidates: PlainCandidates | None = None,
                    ) -> Generator[Progress, None, SensitivityResult]:
    """Fill every option's ``error`` of ``table`` with its measured KL (in place).

    ``cache``: True for the default cache root, a folder for another root, False for none.
    ``candidates``: how a tensor's candidate values are made (default plain rounding).
    """
    import torch

    if method not in METHODS:
        raise ValueError(f"unknown sensitivity method {method!r}; choose from "
                         f"{', '.join(METHODS)}")
    if engine_kind(model) != "decoder" or data.windows is None:
        raise CalibrationError(model.path, "output sensitivity is measured on language models "
                                           "(llama, mistral, qwen2); use --objective mse or "
                                           "imatrix for this model")
    if threads is not None:
        torch.set_num_threads(threads)
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    tokens = data.windows.tokens
    cand = candidates or PlainCandidates(threads)
    key = measurement_key(model.path, tokens, table.candidates, method,
                          {"float": table.float_encoding, "format": table.target_format,
                           **cand.cache_extra})
    store = None
    if cache is not False:
        root = None if cache is True else Path(cache)
        store = SensitivityCache(key, root, meta={"model": str(model.path),
                                                  "candidates": table.candidates,
                                                  "method": method, "data": data.source})
    eng = open_engine(model)
    by_gguf = {t.gguf_name or t.name: t for t in table.tensors}
    n = eng.n_blocks
    result = SensitivityResult(table, method, key, store.folder if store else None,
                               data=str(data.source))

    def depth_of(g: str) -> int:
        if g.startswith("blk."):
            return int(g.split(".")[1])
        return -1 if g == "token_embd.weight" else n

    for g, t in by_gguf.items():
        result.depth[t.name] = depth_of(g)
    if not allow_requantize:
        for t in table.tensors:
            dt = model.tensor(t.name).dtype
            if dt not in _FLOAT:
                raise CalibrationError(model.path, f"tensor {t.name} is already {dt}; measuring "
                                                   "candidates from its decoded values "
                                                   "compounds the error. Pass "
                                                   "--allow-requantize to do it anyway")

    def from_cache(t: TensorCosts) -> bool:
        if store is None:
            return False
        rec = store.get(t.name)
        if rec is None:
            return False
        got = {o["encoding"]: o for o in rec.get("options", [])}
        if any(o.encoding not in got for o in t.options):
            return False
        for o in t.options:
            o.error = float(got[o.encoding]["kl"])
        result.out_err[t.name] = {e: float(v["out_err"]) for e, v in got.items()
                                  if v.get("out_err") is not None}
        result.reused.append(t.name)
        return True

    pending = [t for t in table.tensors if not from_cache(t)]
    todo = {t.name for t in pending}
    total = len(table.tensors)
    finished = [total - len(pending)]

    def finish(t: TensorCosts, kl: dict[str, float], oe: dict[str, float | None]) -> Progress:
        for o in t.options:
            o.error = max(0.0, float(kl[o.encoding]))
        result.out_err[t.name] = {e: float(v) for e, v in oe.items() if v is not None}
        if store is not None:
            store.put(t.name, {"options": [{"encoding": o.encoding, "kl": o.error,
                                            "out_err": oe.get(o.encoding)}
                                           for o in t.options]})
        result.measured.append(t.name)
        finished[0] += 1
        return Progress("sensitivity", t.name, finished[0], total, 0, 0,
                        time.perf_counter() - start, f"{t.name}: {len(t.options)} options")

    yield Progress("sensitivity", "", finished[0], total, 0, 0, 0.0,
                   f"{len(result.reused)} tensors from cache, {len(pending)} to measure")
    if not pending:
        result.elapsed = time.perf_counter() - start
        return result

    # The reference pass, keeping each depth's float activations only as long as needed.
    kept: dict[int, dict[str, torch.Tensor]] = {}
    kept_bytes = [0]

    def block_weights(i: int) -> dict[str, torch.Tensor]:
        if i in kept:
            return kept[i]
        w = eng.load_block(i)
        size = sum(x.numel() * 4 for x in w.values())
        if method == "kl" and kept_bytes[0] + size <= keep_bytes:
            kept[i] = w
            kept_bytes[0] += size
        return w

    h_in = [eng.embed(tokens)]
    hs_final = h_in[0]
    for i in range(n):
        cancel.check()
        hs_final = eng.run_block(i, hs_final, weights=block_weights(i))
    klm = _KL(eng, hs_final)
    yield Progress("sensitivity", "reference", finished[0], total, 0, 0,
                   time.perf_counter() - start, "reference pass done")

    def downstream(i0: int, h: torch.Tensor) -> torch.Tensor:
        for j in range(i0, n):
            cancel.check()
            h = eng.run_block(j, h, weights=block_weights(j))
        return h

    # The token embedding: KL through the whole model (tied heads take the override too).
    emb = by_gguf.get("token_embd.weight")
    if emb is not None and emb.name in todo:
        w = model.load(emb.name)
        kl: dict[str, float] = {}
        for o in emb.options:
            cancel.check()
            ov = {"token_embd.weight": cand.values("token_embd.weight", o.encoding, w)}
            hq = downstream(0, eng.embed(tokens, ov))
            kl[o.encoding] = klm.mean(hq, eng.load_head(ov))
        del w
        yield finish(emb, kl, {})

    h = eng.embed(tokens)
    for i in range(n):
        t0 = time.perf_counter()
        in_block = [g for g in eng.block_tensor_names(i) if g in by_gguf]
        names = [g for g in in_block if by_gguf[g].name in todo]
        wts = block_weights(i)
        ref_out = eng.run_block(i, h, weights=wts)
        ref_sq = float(ref_out.double().pow(2).sum())
        scale = None
        if names:
            cand.start_block(eng, i, h, wts)
        if method == "block" and names:
            # one downstream KL of the block's tensors (all of them, cached or not, so a
            # resumed run gets the same scale) at their smallest option together
            ov = {g: cand.values(g, by_gguf[g].options[0].encoding,
                                 model.load(by_gguf[g].name)) for g in in_block}
            out = eng.run_block(i, h, weights=wts, overrides=ov)
            joint = float((out - ref_out).double().pow(2).sum())
            kl_joint = klm.mean(downstream(i + 1, out))
            scale = kl_joint / joint if joint > 0 else 0.0
            del ov, out
        for g in names:
            t = by_gguf[g]
            w = model.load(t.name)
            kl, oe = {}, {}
            for o in t.options:
                cancel.check()
                ov = {g: cand.values(g, o.encoding, w)}
                out = eng.run_block(i, h, weights=wts, overrides=ov)
                sq = float((out - ref_out).double().pow(2).sum())
                oe[o.encoding] = sq / ref_sq if ref_sq > 0 else 0.0
                if method == "kl":
                    kl[o.encoding] = klm.mean(downstream(i + 1, out))
                else:
                    kl[o.encoding] = sq * (scale or 0.0)
                del out
            del w
            yield finish(t, kl, oe)
        h = ref_out
        if i not in kept:
            del wts
        if names:
            result.block_seconds[i] = time.perf_counter() - t0

    # The output head on the float final activations.
    head = by_gguf.get("output.weight")
    if head is not None and head.name in todo:
        w = model.load(head.name)
        kl = {}
        cand.start_head(eng, hs_final)
        for o in head.options:
            cancel.check()
            ov = {"output.weight": cand.values("output.weight", o.encoding, w)}
            kl[o.encoding] = klm.mean(hs_final, eng.load_head(ov))
        yield finish(head, kl, {})
    missing = [t.name for t in table.tensors if not t.measured]
    if missing:
        raise CalibrationError(model.path, f"tensor {missing[0]} is not one the decoder "
                                           "uses; its sensitivity cannot be measured")
    result.elapsed = time.perf_counter() - start
    return result
