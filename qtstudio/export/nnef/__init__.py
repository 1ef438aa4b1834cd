"""NNEF export that tract runs: per-tensor F32 / F16 / Q4_0 / 8-bit, checked against torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qtstudio.jobs import CancelToken, run_job

from .capability import nnef_fallback, nnef_problem
from .job import ExportReport, TensorReport, export_checkpoint_job, export_nnef_job
from .q4_0 import CALIBRATIONS, quantize_q4_0

__all__ = [
    "CALIBRATIONS",
    "ExportReport",
    "TensorReport",
    "export_checkpoint_job",
    "export_nnef",
    "export_nnef_job",
    "nnef_fallback",
    "nnef_problem",
    "quantize_q4_0",
]


def export_nnef(module: torch.nn.Module, plan: Any, example_inputs: Sequence[torch.Tensor],
                path: str | Path, *, calibration: str = "minmax", verify: bool = False,
                cancel: CancelToken | None = None, **kwargs: Any) -> ExportReport:
    """Export ``module`` and return the report; ``verify=True`` also runs it with tract."""
    report = run_job(export_nnef_job(module, plan, example_inputs, path,
                                     calibration=calibration, cancel=cancel, **kwargs))
    if verify:
        from .verify import verify_export

        report.verification = verify_export(path, module, example_inputs, report.decoded)
    return report
