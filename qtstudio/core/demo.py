"""The embedded default model: a small MLP trained on scikit-learn's digits (8x8 images).

Trained by scripts/train_demo.py; shipped as safetensors with a config.json describing the
layers and the held-out test split as an .npz, so any plan can be scored end to end with nothing
but numpy and torch at run time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Generator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from qtstudio.jobs import CancelToken, Progress

    from .plan import Plan
    from .recipe import Recipe

DEMO_DIR = "demo"
WEIGHTS = "model.safetensors"
#: the word that names the embedded model wherever a model path is taken (CLI and window)
DEMO_NAME = "demo"


def _candidates() -> list[Path]:
    out: list[Path] = []
    # A regular install: the wheel carries resources/ inside the package.
    with contextlib.suppress(ModuleNotFoundError, TypeError):
        out.append(Path(str(resources.files("qtstudio"))) / "resources" / DEMO_DIR)
    # A source checkout or editable install: resources/ sits beside the qtstudio package.
    out.append(Path(__file__).resolve().parents[2] / "resources" / DEMO_DIR)
    return out


def demo_dir() -> Path:
    for c in _candidates():
        if (c / WEIGHTS).is_file():
            return c
    raise FileNotFoundError("the demo model is missing from this installation (looked in "
                            + ", ".join(str(c) for c in _candidates()) + ")")


def demo_model_path() -> Path:
    """The demo checkpoint (model.safetensors; config.json and the test set beside it)."""
    return demo_dir() / WEIGHTS


def resolve_model_arg(arg: str | Path) -> Path:
    """The checkpoint a model argument names: ``demo`` is the embedded model, anything else a
    path. A file or folder that is itself called demo is reached as ``./demo``."""
    if str(arg) == DEMO_NAME:
        return demo_model_path()
    return Path(arg).expanduser()


def demo_config() -> dict[str, Any]:
    return json.loads((demo_dir() / "config.json").read_text(encoding="utf-8"))


def load_test_set() -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [n, 64] already scaled, labels int64 [n])."""
    cfg = demo_config()
    with np.load(demo_dir() / cfg["test_data"]) as z:
        x = z["x"].astype(np.float32) * np.float32(cfg["input_scale"])
        y = z["y"].astype(np.int64)
    return x, y


def build_module(weights: dict[str, np.ndarray] | None = None) -> torch.nn.Module:
    """The MLP as a torch module, with the shipped weights (or ``weights`` by tensor name)."""
    import torch
    from torch import nn

    from qtstudio.formats import open_model

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
    import time

    from qtstudio.formats import open_model
    from qtstudio.jobs import Progress

    from .plan import Plan, resolve_plan
    from .qtensor import dequantize, quantize
    from .recipe import Recipe

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
    from qtstudio.jobs import run_job

    return run_job(evaluate_job(plan_or_recipe))
