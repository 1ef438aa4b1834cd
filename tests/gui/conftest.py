"""Fixtures for the desktop app tests: offscreen Qt, private settings, small models on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from safetensors.numpy import save_file


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
    from qtstudio.gui import refguard

    refguard.top_up()
    yield


@pytest.fixture
def small_model(tmp_path) -> Path:
    """A Hugging Face style folder (config.json says llama, so tensors get GGUF names)."""
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    write_llama_like(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2,
        "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 4, "vocab_size": 96, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128}))
    return folder


@pytest.fixture(autouse=True)
def unsaved_answers(monkeypatch):
    """The "save your edits?" question never blocks a test: it is answered "discard" unless a
    test puts another answer first; every question asked is recorded."""
    from qtstudio.gui import unsaved

    asked: list[str] = []
    answers: list[str] = []

    def ask(window, doing):
        asked.append(doing)
        return answers.pop(0) if answers else unsaved.DISCARD

    monkeypatch.setattr(unsaved, "ask", ask)
    return {"asked": asked, "answers": answers}


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


@pytest.fixture
def calib_text(tmp_path):
    """Write the first ``chars`` characters of the default corpus as a calibration file."""
    from tests.helpers.trained_lm import corpus_text

    def make(chars: int) -> Path:
        p = tmp_path / "calib.txt"
        p.write_text(corpus_text()[:chars], encoding="utf-8")
        return p

    return make
