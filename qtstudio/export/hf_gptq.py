"""Hugging Face GPTQ checkpoints: the folder AutoGPTQ / GPTQModel / transformers load.

Every decoder-block linear ``P.weight`` [out, in] becomes (``checkpoint_format: "gptq"``):

- ``P.qweight`` int32 [in * bits / 32, out]: the levels of ``32 / bits`` consecutive input
  columns per word, column ``k * (32 / bits) + j`` in bits ``j * bits`` and up;
- ``P.qzeros`` int32 [groups, out * bits / 32]: zero points minus one (the "v1" convention the
  format kept from AutoGPTQ), packed the same way along the outputs;
- ``P.scales`` float16 [groups, out];
- ``P.g_idx`` int32 [in]: the group of each input column (not sorted under act order);
- ``P.bias`` float16, when the layer has one.

A weight decodes as ``scales[g_idx[i], o] * (level[i, o] - (qzeros[g_idx[i], o] + 1))``.
Everything else (embeddings, norms, the output head) is stored as float16. ``config.json``
carries ``quantization_config``; ``quantize_config.json`` repeats it for AutoGPTQ.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtstudio.core.model import Model
from qtstudio.formats.atomic import ExportError
from qtstudio.jobs import CancelToken, Progress
from qtstudio.quant.gptq import GPTQOptions, GPTQResult
from qtstudio.quant.int_grid import IntGridConfig, IntGridScheme

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "tokenizer.model", "generation_config.json")


@dataclass
class HFGPTQReport:
    path: Path
    tensors: list[str] = field(default_factory=list)
    block_seconds: list[float] = field(default_factory=list)
    bytes_written: int = 0
    elapsed: float = 0.0


def pack_levels(q: np.ndarray, bits: int) -> np.ndarray:
    """uint levels [rows, cols] -> int32 [rows * bits / 32, cols], along the rows."""
    per = 32 // bits
    r = np.ascontiguousarray(q, dtype=np.uint32).reshape(q.shape[0] // per, per, q.shape[1])
    shifts = (np.arange(per, dtype=np.uint32) * bits)[None, :, None]
    return np.bitwise_or.reduce(r << shifts, axis=1).view(np.int32)


def quantization_config(cfg: IntGridConfig, opt: GPTQOptions) -> dict[str, Any]:
    return {"quant_method": "gptq", "bits": cfg.bits, "group_size": cfg.group_size,
            "desc_act": opt.desc_act, "sym": cfg.sym, "damp_percent": opt.damp_percent,
            "true_sequential": True, "static_groups": False, "checkpoint_format": "gptq",
            "model_name_or_path": None, "model_file_base_name": "model"}


def gptq_tensors(res: GPTQResult, scheme: IntGridScheme, prefix: str,
                 ) -> dict[str, np.ndarray]:
    cfg = scheme.config
    out_features = res.q.shape[0]
    if out_features % (32 // cfg.bits):
        raise ExportError(f"{prefix}: {out_features} outputs do not pack into int32 words")
    n_groups = int(res.group_of.max()) + 1
    scales = np.empty((n_groups, out_features), np.float16)
    zeros = np.empty((n_groups, out_features), np.uint32)
    for gid, grid in res.grids.items():
        scales[gid] = grid.scale.numpy().astype(np.float16)
        zeros[gid] = (grid.zero.numpy().astype(np.int64) - 1).astype(np.uint32) & cfg.maxq
    # C order throughout: safetensors writes an array's buffer as it lies in memory
    return {prefix + ".qweight": np.ascontiguousarray(pack_levels(res.q.T, cfg.bits)),
            prefix + ".qzeros": np.ascontiguousarray(pack_levels(zeros.T, cfg.bits).T),
            prefix + ".scales": np.ascontiguousarray(scales),
            prefix + ".g_idx": np.ascontiguousarray(res.group_of, dtype=np.int32)}


def export_hf_gptq_job(model: Model, tokens: np.ndarray, out_dir: str | Path, *,
                       grid: IntGridConfig, options: GPTQOptions | None = None,
                       cancel: CancelToken | None = None,
                       ) -> Generator[Progress, None, HFGPTQReport]:
    """GPTQ every decoder-block linear onto ``grid`` and write the checkpoint folder. The folder
    appears whole at the end (built beside it, then renamed); a stop leaves nothing."""
    from safetensors.numpy import save_file

    from qtstudio.jobs.gptq import check_gptq_model, sequential_gptq

    options = options or GPTQOptions()
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    out = Path(out_dir)
    if out.exists():
        raise ExportError(f"{out}: already exists; choose a new folder for the checkpoint")
    src = model.path if model.path.is_dir() else model.path.parent
    if not (src / "config.json").is_file():
        raise ExportError(f"{model.path}: a Hugging Face GPTQ checkpoint needs the source "
                          "folder's config.json")
    check_gptq_model(model)  # before any work
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    report = HFGPTQReport(path=out)
    try:
        tensors: dict[str, np.ndarray] = {}
        quantized: set[str] = set()

        def scheme_for(name: str, shape: tuple[int, ...]) -> IntGridScheme | None:
            if not name.startswith("model.layers.") or len(shape) != 2:
                return None
            return IntGridScheme(grid, shape[1])

        def sink(name: str, res: GPTQResult, scheme: Any, h: torch.Tensor) -> None:
            prefix = name[:-len(".weight")]
            tensors.update(gptq_tensors(res, scheme, prefix))
            quantized.add(name)
            report.tensors.append(name)

        timings = yield from sequential_gptq(model, tokens, scheme_for, sink, options=options,
                                             cancel=cancel)
        report.block_seconds = [t.seconds for t in timings]
        for info in model.tensors:
            if info.name in quantized:
                continue
            cancel.check()
            tensors[info.name] = np.ascontiguousarray(model.load(info.name), np.float32) \
                .astype(np.float16)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = json.loads((src / "config.json").read_text(encoding="utf-8"))
        qc = quantization_config(grid, options)
        config["quantization_config"] = qc
        config["torch_dtype"] = "float16"
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "quantize_config.json").write_text(json.dumps(qc, indent=2) + "\n",
                                                  encoding="utf-8")
        for f in _TOKENIZER_FILES:
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / f)
        report.bytes_written = sum(p.stat().st_size for p in tmp.iterdir())
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.elapsed = time.perf_counter() - start
    yield Progress("done", "", 1, 1, 0, 0, report.elapsed, f"wrote {out}")
    return report
