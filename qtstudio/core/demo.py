"""The embedded default model: a small MLP trained on scikit-learn's digits (8x8 images).

Trained by scripts/train_demo.py; shipped as safetensors with a config.json describing the
layers and the held-out test split as an .npz, so any plan can be scored end to end with nothing
but numpy and torch at run time. This module finds the files and reads the config and test set;
the torch module and the accuracy job that open the checkpoint are in
:mod:`qtstudio.jobs.demo_eval` (above the readers).
"""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

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
