"""Whether the open model can be exported to NNEF, and the export job the window runs.

Qt-free. NNEF stores the computation graph, so only a checkpoint that qtstudio.export.nnef can
rebuild in torch qualifies: the shipped demo, or a Hugging Face folder whose config.json names a
``model_type`` transformers knows. The check here is cheap (files and one small JSON read, no
transformers import, no weights), so the export dialog can run it while it opens; deeper
problems (an architecture transformers cannot build offline) still surface from the job itself,
with the exporter's message.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

from qtstudio.jobs import CancelToken, Progress


def nnef_problem(model_path: str | Path) -> str | None:
    """Why the checkpoint at ``model_path`` cannot be exported to NNEF, or None when it can."""
    from qtstudio.export.nnef.sources import NoGraphError, _checkpoint_folder, _is_demo

    if _is_demo(model_path):
        return None
    try:
        folder = _checkpoint_folder(Path(model_path))
    except (NoGraphError, FileNotFoundError) as exc:
        return str(exc)
    config = folder / "config.json"
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{config}: unreadable ({exc})"
    if not isinstance(doc, dict) or not doc.get("model_type"):
        return (f"{config}: no model_type, so transformers cannot build the graph NNEF "
                "needs")
    if importlib.util.find_spec("transformers") is None:
        return (f"{folder}: rebuilding a {doc['model_type']} graph needs the transformers "
                "package, which is not installed")
    return None


def checkpoint_nnef_job(model: Any, recipe: Any, out: Path, *, has_imatrix: bool = False,
                        seq_len: int | None = None, calibration: str = "minmax",
                        cancel: CancelToken | None = None) -> Generator[Progress, None, Any]:
    """Export ``model`` (reopened in the job process) to NNEF with ``recipe``'s encodings;
    ``seq_len`` tokens for a Hugging Face model (the graph's shapes are fixed).

    The plan is resolved for NNEF here, so the tract fallbacks (an encoding it cannot store
    becomes F16 or F32) are the exporter's, as on the command line.
    """
    from qtstudio.core.plan import resolve_plan
    from qtstudio.export.nnef.job import export_checkpoint_job

    plan = resolve_plan(model, recipe, target_format="nnef", has_imatrix=has_imatrix)
    return (yield from export_checkpoint_job(model.path, plan, out, seq_len=seq_len,
                                             calibration=calibration, cancel=cancel))
