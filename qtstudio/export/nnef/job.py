"""The NNEF export job: trace, convert, encode each tensor, write atomically, report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtstudio.jobs import CancelToken, Job, Progress

from .archive import AtomicOutput
from .convert import convert
from .encode import encode_variable
from .policy import make_policy
from .q4_0 import CALIBRATIONS
from .trace import trace_module


@dataclass
class TensorReport:
    name: str
    label: str
    shape: tuple[int, ...]
    encoding: str
    requested: str | None
    fallback_from: str | None
    reason: str | None
    nbytes: int
    stats: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "label": self.label, "shape": list(self.shape),
                             "encoding": self.encoding, "nbytes": self.nbytes}
        if self.requested is not None:
            d["requested"] = self.requested
        if self.fallback_from is not None:
            d["fallback_from"] = self.fallback_from
            d["reason"] = self.reason
        d.update({k: _num(v) for k, v in self.stats.items()})
        return d


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 9)


@dataclass
class ExportReport:
    path: Path
    calibration: str
    tensors: list[TensorReport]
    constants: int
    total_bytes: int
    n_operations: int
    extensions: list[str]
    #: float32 values tract will compute with, by the module's parameter name
    decoded: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    verification: dict[str, Any] | None = None

    @property
    def fallbacks(self) -> list[TensorReport]:
        return [t for t in self.tensors if t.fallback_from is not None]

    def q4_0_gain(self) -> dict[str, float] | None:
        """MSE over all Q4_0 weights for min-max and for the chosen calibration."""
        q = [t for t in self.tensors if t.encoding == "Q4_0" and "mse_minmax" in t.stats]
        if not q:
            return None
        n = [int(np.prod(t.shape)) for t in q]
        mm = sum(t.stats["mse_minmax"] * k for t, k in zip(q, n, strict=True)) / sum(n)
        ch = sum(t.stats["mse"] * k for t, k in zip(q, n, strict=True)) / sum(n)
        return {"mse_minmax": mm, "mse": ch, "gain": (mm - ch) / mm if mm else 0.0}

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.encoding] = counts.get(t.encoding, 0) + 1
        return {
            "path": str(self.path), "format": "nnef", "calibration": self.calibration,
            "total_bytes": self.total_bytes, "n_operations": self.n_operations,
            "n_weights": len(self.tensors), "n_constants": self.constants,
            "encodings": counts, "extensions": self.extensions,
            "fallbacks": [t.to_dict() for t in self.fallbacks],
            "q4_0_calibration": self.q4_0_gain(),
            "tensors": [t.to_dict() for t in self.tensors],
            "verification": self.verification,
        }


def export_nnef_job(module: torch.nn.Module, plan: Any, example_inputs: Sequence[torch.Tensor],
                    path: str | Path, *, calibration: str = "minmax",
                    default_float: str = "F32", cancel: CancelToken | None = None,
                    threads: int | None = None, keep_decoded: bool = True,
                    name_map: dict[str, str] | None = None) -> Job[ExportReport]:
    """Export ``module`` to an NNEF folder or ``.nnef.tgz`` that tract runs.

    ``plan`` is a core Plan, a {tensor name: encoding} mapping, one encoding name for every
    matmul/conv/embedding weight, or None (all float). ``name_map`` translates module parameter
    names to the plan's (checkpoint) names. Yields Progress per tensor written.
    """
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown Q4_0 calibration {calibration!r}; choose one of "
                         f"{', '.join(CALIBRATIONS)}")
    path = Path(path)
    start = time.monotonic()
    cancel = cancel or CancelToken()
    yield Progress("trace", type(module).__name__, 0, 1, 0, 0, 0.0, "capturing the graph")
    traced = trace_module(module, example_inputs)
    cancel.check()
    policy = make_policy(plan, default_float=default_float, name_map=name_map)
    builder, outputs = convert(traced, policy)
    variables = builder.variables
    total = len(variables)
    bytes_total = sum(int(np.prod(v.shape, dtype=np.int64)) * 4 for v in variables)
    reports: list[TensorReport] = []
    decoded: dict[str, np.ndarray] = {}
    side_data: dict[str, np.ndarray] = {}
    quant_lines: list[str] = []
    done = 0
    with AtomicOutput(path) as out:
        for i, var in enumerate(variables):
            cancel.check()
            if var.side_of is not None:
                from .dat import array_dat
                h, p = array_dat(side_data.pop(var.ident))
                out.write(f"{var.label}.dat", h, p)
                continue
            try:
                enc = encode_variable(var, calibration=calibration, threads=threads)
            except ValueError as exc:
                raise ValueError(f"{var.source or var.label}: {exc}") from None
            n = out.write(f"{var.label}.dat", enc.header, enc.payload)
            side_data.update(enc.side)
            if enc.quant_line:
                quant_lines.append(enc.quant_line)
            if var.source is not None:
                values = enc.decoded.T if var.transposed else enc.decoded
                if keep_decoded:
                    decoded[var.source] = values
                reports.append(TensorReport(
                    (name_map or {}).get(var.source, var.source), var.label,
                    var.source_shape or var.shape, var.encoding, var.requested,
                    var.requested if var.fallback_reason else None, var.fallback_reason,
                    n, enc.stats))
            done += int(np.prod(var.shape, dtype=np.int64)) * 4
            yield Progress("write", var.source or var.label, i + 1, total, done, bytes_total,
                           time.monotonic() - start, var.encoding)
        cancel.check()
        out.write("graph.nnef", builder.text(outputs).encode())
        if quant_lines:
            out.write("graph.quant", ("\n".join(quant_lines) + "\n").encode())
        written = out.bytes_written
    yield Progress("done", str(path), total, total, bytes_total, bytes_total,
                   time.monotonic() - start, f"{written} bytes")
    return ExportReport(path, calibration, reports, total - len(reports) -
                        sum(1 for v in variables if v.side_of), written, len(builder.lines),
                        sorted(builder.extensions), decoded)


def export_checkpoint_job(model_path: str | Path, plan: Any, path: str | Path, *,
                          calibration: str = "minmax", seq_len: int | None = None,
                          verify: bool = False, cancel: CancelToken | None = None,
                          threads: int | None = None) -> Job[ExportReport]:
    """Rebuild a checkpoint's graph (the demo, or a Hugging Face folder) and export it.

    ``plan`` is usually ``resolve_plan(open_model(model_path), recipe, target_format="nnef")``;
    its tensor names are the checkpoint's. ``verify`` runs the result with tract afterwards.
    """
    from .sources import DEFAULT_SEQ_LEN, source_for

    yield Progress("build", str(model_path), 0, 1, 0, 0, 0.0, "building the torch graph")
    source = source_for(model_path, seq_len=seq_len or DEFAULT_SEQ_LEN)
    report = yield from export_nnef_job(
        source.module, plan, source.example_inputs, path, calibration=calibration,
        cancel=cancel, threads=threads, keep_decoded=verify, name_map=source.names)
    if verify:
        from .verify import verify_export

        yield Progress("verify", str(path), 0, 1, 0, 0, 0.0, "running the export with tract")
        report.verification = verify_export(report.path, source.module, source.example_inputs,
                                            report.decoded)
    return report
