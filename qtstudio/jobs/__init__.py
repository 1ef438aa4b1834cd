"""Long-running work: quantize, optimize, benchmark, what-if, eval, imatrix, GPTQ, compare, and
the executor seam that fans a job's tasks out in-process or on Ray.

A job is a generator that yields :class:`Progress` and returns its result; the protocol types
are defined in :mod:`qtstudio.core.progress` (lower layers report progress too) and exported
here under their usual names.
"""

from __future__ import annotations

from qtstudio.core.progress import Cancelled, CancelToken, Job, Progress, run_job

__all__ = ["CancelToken", "Cancelled", "Job", "Progress", "run_job"]
