"""``export --method gptq``: GPTQ over the plan, then the GGUF export writing GPTQ's bytes for
the tensors it quantized (every other tensor is encoded as a plain export would)."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qtstudio.core.model import Model
from qtstudio.core.plan import Plan
from qtstudio.core.progress import CancelToken, Progress
from qtstudio.jobs.gptq import gptq_job
from qtstudio.quant.gptq import GPTQOptions

from .gguf import export_gguf_job


def gptq_export_job(model: Model, plan: Plan, out_path: str | Path, tokens: np.ndarray, *,
                    options: GPTQOptions | None = None, threads: int | None = None,
                    cancel: CancelToken | None = None, allow_requantize: bool = False,
                    metadata: Mapping[str, str] | None = None,
                    ) -> Generator[Progress, None, Any]:
    """``export --method gptq``: GPTQ, then the GGUF export with GPTQ's bytes for the tensors
    it quantized. Returns the export report (its ``gptq`` attribute holds the GPTQ run)."""
    run = yield from gptq_job(model, plan, tokens, options=options, threads=threads,
                              cancel=cancel, allow_requantize=allow_requantize)
    try:
        report = yield from export_gguf_job(model, plan, out_path, threads=threads,
                                            cancel=cancel, allow_requantize=allow_requantize,
                                            precomputed=run.store, metadata=metadata)
    finally:
        run.store.cleanup()
    report.warnings.extend(
        f"{t['name']}: GPTQ output error {t['output_error_gptq']:.4g}, plain rounding "
        f"{t['output_error_plain']:.4g}" for t in run.tensors
        if t["output_error_gptq"] > t["output_error_plain"])
    report.gptq = run  # type: ignore[attr-defined]
    return report
