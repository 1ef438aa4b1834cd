"""NNEF export from the dialog for Hugging Face folders; refused, with the reason, elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

pytestmark = pytest.mark.gui


@pytest.mark.slow
def test_nnef_of_a_hf_llama_folder_runs_in_tract(window, small_model, qtbot, tmp_path,
                                                 monkeypatch):
    tract = pytest.importorskip("tract")
    pytest.importorskip("transformers")
    import torch
    import transformers

    from qtstudio.gui.export_dialog import NNEF

    window.open_model(small_model)
    window.apply_preset("Q4_0")
    window.assign(["model.layers.1.mlp.down_proj.weight"], "Q8_0")  # tract stores it as F16
    window.act_export.trigger()
    dlg = window.export_dlg
    assert dlg.nnef_problem is None and not dlg.nnef_note.isVisible()
    assert not dlg.seq_len.isVisible() and not dlg.calibration.isVisible()
    dlg.format.setCurrentText(NNEF)
    assert dlg.format.currentText() == NNEF and dlg.path.text().endswith(".nnef.tgz")
    assert dlg.seq_len.isVisible() and dlg.calibration.isVisible()
    dlg.seq_len.setValue(12)  # the graph takes exactly 12 tokens
    dlg.calibration.setCurrentIndex(dlg.calibration.findData("mse"))
    out = tmp_path / "tiny-llama-q4.nnef.tgz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    dlg.findChild(type(dlg.export_btn), "exportBrowse").click()
    progress: list = []
    dlg.export_btn.click()
    window.worker.yielded.connect(progress.append)
    qtbot.waitUntil(lambda: window.worker is None, timeout=180000)
    assert window.error_dialog is None, window.last_error
    assert out.is_file() and "Exported" in window.statusBar().currentMessage()
    assert progress
    enc = {t.name: t.encoding for t in window.last_export.tensors}
    assert enc["model.layers.0.self_attn.q_proj.weight"] == "Q4_0"
    assert window.last_export.calibration == "mse"
    # tract (an independent engine) runs the archive; its logits follow transformers' float
    # model built from the same checkpoint
    runnable = tract.nnef().load(str(out)).into_runnable()
    ids = np.array([[3, 17, 42, 5, 77, 9, 0, 61, 12, 95, 33, 1]], dtype=np.int64)
    got = runnable.run([ids])[0].to_numpy()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(small_model),
                                                           local_files_only=True).float().eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()
    assert got.shape == ref.shape
    cos = float(np.dot(got.ravel(), ref.ravel())
                / (np.linalg.norm(got) * np.linalg.norm(ref)))
    assert cos > 0.95, cos
    assert not np.allclose(got, ref, atol=1e-6)  # quantized weights, not a float copy


def test_nnef_cancel_leaves_nothing(window, small_model, qtbot, tmp_path):
    from qtstudio.gui.export_dialog import NNEF
    from qtstudio.jobs import Cancelled

    window.open_model(small_model)
    window.act_export.trigger()
    dlg = window.export_dlg
    dlg.format.setCurrentText(NNEF)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "cancelled.nnef.tgz"
    dlg.path.setText(str(out))
    dlg.export_btn.click()
    errors: list = []
    window.worker.errored.connect(errors.append)
    window.cancel_job()
    qtbot.waitUntil(lambda: window.worker is None, timeout=120000)
    assert errors and isinstance(errors[0], Cancelled)
    assert list(outdir.iterdir()) == []  # neither the archive nor a staging file


def test_nnef_disabled_for_a_bare_safetensors_file(window, tmp_path):
    from .conftest import write_llama_like

    src = write_llama_like(tmp_path / "plain.safetensors")
    window.open_model(src)
    window.act_export.trigger()
    dlg = window.export_dlg
    item = dlg.format.model().item(1)
    assert item.text().startswith("NNEF") and not item.isEnabled()
    assert dlg.nnef_note.isVisible()
    assert "config.json" in dlg.nnef_note.text() and str(src) in dlg.nnef_note.text()
    assert dlg.format.currentText().startswith("GGUF")


def test_nnef_refused_for_gguf_and_configs_without_a_model_type(tmp_path):
    from qtstudio.gui.nnef_support import nnef_problem

    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    assert "GGUF file holds weights" in nnef_problem(path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "x.safetensors").write_bytes(b"")
    assert "no model_type" in nnef_problem(tmp_path / "x.safetensors")
