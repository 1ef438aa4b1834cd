"""Fixtures for the desktop app tests: offscreen Qt, private settings, small models on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from safetensors.numpy import save_file  # noqa: E402


def write_llama_like(path: Path, *, n_layers: int = 2, hidden: int = 64, ffn: int = 128,
                     vocab: int = 96, seed: int = 0, dtype=np.float32) -> Path:
    """A llama-shaped checkpoint (names as Hugging Face writes them) with random weights."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(dtype)

    tensors = {"model.embed_tokens.weight": w(vocab, hidden)}
    for i in range(n_layers):
        p = f"model.layers.{i}"
        tensors[f"{p}.input_layernorm.weight"] = np.ones(hidden, dtype)
        tensors[f"{p}.self_attn.q_proj.weight"] = w(hidden, hidden)
        tensors[f"{p}.self_attn.k_proj.weight"] = w(hidden, hidden)
        tensors[f"{p}.self_attn.v_proj.weight"] = w(hidden, hidden)
        tensors[f"{p}.self_attn.o_proj.weight"] = w(hidden, hidden)
        tensors[f"{p}.post_attention_layernorm.weight"] = np.ones(hidden, dtype)
        tensors[f"{p}.mlp.gate_proj.weight"] = w(ffn, hidden)
        tensors[f"{p}.mlp.up_proj.weight"] = w(ffn, hidden)
        tensors[f"{p}.mlp.down_proj.weight"] = w(hidden, ffn)
    tensors["model.norm.weight"] = np.ones(hidden, dtype)
    tensors["lm_head.weight"] = w(vocab, hidden)
    save_file(tensors, str(path))
    return path


@pytest.fixture(autouse=True)
def _private_settings(tmp_path_factory, qapp):
    """QSettings (recent files) go to a temporary folder, never the user's."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    qapp.setOrganizationName("qtstudio-tests")
    qapp.setApplicationName("qtstudio-tests")
    yield


@pytest.fixture
def small_model(tmp_path) -> Path:
    return write_llama_like(tmp_path / "small.safetensors")


@pytest.fixture
def window(qtbot):
    from qtstudio.gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.worker is not None:
        win.worker.cancel()
        qtbot.waitUntil(lambda: win.worker is None, timeout=20000)
