"""The embedded demo MLP as a torch module, and its accuracy under a plan as a job.

The files, config and test set are found by :mod:`qtstudio.core.demo`; this module opens the
checkpoint through the readers, so it sits above them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from qtstudio.core.demo import demo_config, demo_model_path, load_test_set
from qtstudio.core.plan import Plan, resolve_plan
from qtstudio.core.progress import CancelToken, Progress, run_job
from qtstudio.core.qtensor import dequantize, quantize
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model

if TYPE_CHECKING:
    import torch


def build_module(weights: dict[str, np.ndarray] | None = None) -> torch.nn.Module:
    """The MLP as a torch module, with the shipped weights (or ``weights`` by tensor name)."""
    import torch
    from torch import nn

    cfg = demo_config()
    widths = cfg["layers"]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    module = nn.Sequential(*layers)
    names = [f"{i}" for i, m in enumerate(module) if isinstance(m, nn.Linear)]
    state: dict[str, torch.Tensor] = {}
    with open_model(demo_model_path()) as model:
        for idx, prefix in zip(names, cfg["tensor_prefixes"], strict=True):
            for kind in ("weight", "bias"):
                key = f"{prefix}.{kind}"
                arr = weights[key] if weights and key in weights else model.load(key)
                state[f"{idx}.{kind}"] = torch.from_numpy(np.ascontiguousarray(arr))
    module.load_state_dict(state)
    module.eval()
    return module


def _accuracy(module: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        pred = module(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(pred == y))


def evaluate_job(plan_or_recipe: Plan | Recipe | None = None,
                 cancel: CancelToken | None = None) -> Generator[Progress, None, dict[str, Any]]:
    """:func:`evaluate` as a job: progress per loaded module, quantized tensor and scoring."""
    t0 = time.monotonic()
    x, y = load_test_set()
    with open_model(demo_model_path()) as model:
        if isinstance(plan_or_recipe, Plan):
            plan = plan_or_recipe
        else:
            recipe = plan_or_recipe if isinstance(plan_or_recipe, Recipe) else Recipe(
                preset="Q4_0")
            plan = resolve_plan(model, recipe, target_format=None)
        total = len(plan.entries) + 2  # float model, each tensor, quantized model
        yield Progress("evaluate", "float model", 0, total, 0, 0, time.monotonic() - t0)
        float_acc = _accuracy(build_module(), x, y)
        weights = {}
        for i, e in enumerate(plan.entries):
            if cancel is not None:
                cancel.check()
            yield Progress("quantize", e.name, i + 1, total, 0, 0, time.monotonic() - t0)
            weights[e.name] = dequantize(quantize(model.load(e.name), e.encoding))
    if cancel is not None:
        cancel.check()
    yield Progress("evaluate", "quantized model", total - 1, total, 0, 0, time.monotonic() - t0)
    q_acc = _accuracy(build_module(weights), x, y)
    yield Progress("done", "quantized model", total, total, 0, 0, time.monotonic() - t0)
    return {
        "float_accuracy": float_acc,
        "quantized_accuracy": q_acc,
        "n_test": len(y),
        "total_bytes": plan.total_bytes,
        "avg_bpw": plan.avg_bpw,
        "encodings": plan.counts(),
    }


def evaluate(plan_or_recipe: Plan | Recipe | None = None) -> dict[str, Any]:
    """Accuracy of the float model and of the model under a plan (default: the Q4_0 preset)."""
    return run_job(evaluate_job(plan_or_recipe))
