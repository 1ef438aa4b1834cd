"""GPTQ from the export dialog on the trained test model: the GGUF it writes is the file the job
(as ``export --method gptq`` runs it) writes, a Hugging Face GPTQ folder carries the chosen
parameters, and bad input is refused in the dialog, not raised."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

from qtstudio.calib.data import prepare_data
from qtstudio.export.gguf_gptq import gptq_export_job
from qtstudio.formats import open_model
from qtstudio.gui.export_dialog import GGUF, GPTQ, HF_GPTQ, PLAIN
from qtstudio.gui.gptq_support import GPTQSettings
from qtstudio.gui.tree_model import COL
from qtstudio.jobs import run_job

pytestmark = pytest.mark.gui

CTX, WINDOWS = 48, 6


@pytest.fixture
def calib(calib_text):
    return calib_text(6000)


def _dialog(window, lm, calib):
    window.open_model(lm)
    window.apply_preset("Q4_K_M")
    window.choose_calibration_file(str(calib))
    window.act_export.trigger()
    dlg = window.export_dlg
    assert dlg.gptq_problem is None
    assert not dlg.gptq.isVisible()  # plain rounding: no GPTQ fields
    dlg.method.setCurrentIndex(dlg.method.findData(GPTQ))
    assert dlg.gptq.isVisible() and not dlg.gptq.bits.isVisible()
    assert dlg.gptq.data.text() == str(calib)  # the window's calibration file
    dlg.gptq.ctx.setValue(CTX)
    dlg.gptq.windows.setValue(WINDOWS)
    dlg.gptq.damp.setValue(0.02)
    dlg.gptq.block_size.setValue(64)
    dlg.gptq.desc_act.setChecked(True)
    return dlg


def _tensors(path):
    return {t.name: (int(t.tensor_type), bytes(np.asarray(t.data).tobytes()))
            for t in gguf.GGUFReader(path).tensors}


def test_gptq_gguf_from_the_dialog_is_the_jobs_file(window, lm, calib, qtbot, tmp_path):
    dlg = _dialog(window, lm, calib)
    out = tmp_path / "gptq.gguf"
    dlg.path.setText(str(out))
    meta = dlg.metadata.values()
    plan = window.doc.plan
    stages: list = []
    dlg.export_btn.click()
    assert window.worker is not None
    window.worker.yielded.connect(lambda p: stages.append(p.stage))
    qtbot.waitUntil(lambda: window.worker is None, timeout=300000)
    assert window.error_dialog is None, window.last_error
    assert out.is_file() and "Exported" in window.statusBar().currentMessage()
    assert "gptq" in stages or any("gptq" in s.lower() for s in stages), stages
    # the oracle: the job the CLI's export --method gptq runs, with the same settings
    ref = tmp_path / "ref.gguf"
    settings = GPTQSettings(str(calib), ctx=CTX, windows=WINDOWS, damp=0.02, block_size=64,
                            desc_act=True)
    with open_model(lm) as m:
        tokens = prepare_data(m, "decoder", calib, ctx=CTX, chunks=WINDOWS).windows.tokens
        report = run_job(gptq_export_job(m, plan, ref, tokens, options=settings.options(),
                                         metadata=meta))
    got, want = _tensors(out), _tensors(ref)
    assert got.keys() == want.keys()
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}
    gptq_names = {t["name"] for t in report.gptq.tensors}
    assert gptq_names, "GPTQ quantized nothing"
    for name in got:
        assert got[name][1] == want[name][1], name
    # and GPTQ did something: its tensors differ from plain rounding's
    plain = tmp_path / "plain.gguf"
    from qtstudio.export.gguf import export_gguf

    with open_model(lm) as m:
        export_gguf(m, plan, plain)
    rounded = _tensors(plain)
    differ = [n for n in got if got[n][1] != rounded[n][1]]
    assert differ and len(differ) >= len(gptq_names) // 2


def test_hf_gptq_folder_carries_the_dialog_parameters(window, lm, calib, qtbot, tmp_path):
    dlg = _dialog(window, lm, calib)
    dlg.format.setCurrentText(HF_GPTQ)
    assert dlg.path.text().endswith("-gptq") and not dlg.metadata.isVisible()
    assert not dlg.method.isVisible() and dlg.gptq.bits.isVisible()
    dlg.gptq.bits.setCurrentIndex(dlg.gptq.bits.findData(8))
    dlg.gptq.group_size.setValue(64)
    dlg.gptq.sym.setChecked(False)
    out = tmp_path / "ckpt"
    dlg.path.setText(str(out))
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: window.worker is None, timeout=300000)
    assert window.error_dialog is None, window.last_error
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["bits"], qc["group_size"], qc["sym"], qc["desc_act"]) == (8, 64, False, True)
    assert qc["damp_percent"] == pytest.approx(0.02)
    from safetensors.numpy import load_file

    t = load_file(out / "model.safetensors")
    q = t["model.layers.0.mlp.down_proj.qweight"]
    assert q.dtype == np.int32 and q.shape == (512 * 8 // 32, 256)  # 8-bit: 4 per word
    assert t["model.layers.0.mlp.down_proj.scales"].shape == (512 // 64, 256)
    # a second export to the same folder is refused in the dialog, nothing started
    window.act_export.trigger()
    dlg = window.export_dlg
    dlg.format.setCurrentText(HF_GPTQ)
    dlg.gptq.data.setText(str(calib))
    dlg.path.setText(str(out))
    dlg.export_btn.click()
    assert window.worker is None and "already exists" in dlg.status.text()


def test_gptq_refused_without_data_and_for_other_models(window, lm, small_model, tmp_path):
    window.open_model(lm)
    window.calibration_file = None
    window.act_export.trigger()
    dlg = window.export_dlg
    dlg.method.setCurrentIndex(dlg.method.findData(GPTQ))
    dlg.path.setText(str(tmp_path / "x.gguf"))
    dlg.export_btn.click()
    assert window.worker is None and "calibration text" in dlg.status.text()
    dlg.gptq.data.setText(str(tmp_path / "missing.txt"))
    dlg.export_btn.click()
    assert window.worker is None and "no such calibration file" in dlg.status.text()
    assert not (tmp_path / "x.gguf").exists()
    dlg.reject()
    # a checkpoint GPTQ's block runner cannot take: both GPTQ entries disabled, with the reason
    bare = tmp_path / "bare.safetensors"
    (small_model / "model.safetensors").rename(bare)
    window.open_model(bare)
    window.act_export.trigger()
    dlg = window.export_dlg
    assert dlg.gptq_problem
    for combo, row in ((dlg.method, 1), (dlg.format, 2)):
        item = combo.model().item(row)
        assert not item.isEnabled() and dlg.gptq_problem in item.toolTip()
    assert dlg.method.currentData() == PLAIN and dlg.format.currentText() == GGUF


def test_quantize_with_gptq_shows_the_jobs_errors(window, lm, calib, qtbot):
    from qtstudio.jobs.gptq import gptq_quantize_job

    window.open_model(lm)
    window.apply_preset("Q4_K_M")
    window.choose_calibration_file(str(calib))
    window.act_quantize_gptq.trigger()
    dlg = window.gptq_dlg
    assert dlg.problem is None and dlg.gptq.data.text() == str(calib)
    assert not dlg.gptq.bits.isVisible()
    dlg.gptq.ctx.setValue(CTX)
    dlg.gptq.windows.setValue(WINDOWS)
    dlg.run_btn.click()
    assert window.worker is not None and window.worker.name == "Quantize with GPTQ"
    qtbot.waitUntil(lambda: window.worker is None, timeout=300000)
    assert window.error_dialog is None, window.last_error
    assert "GPTQ: " in window.statusBar().currentMessage()
    doc = window.doc
    settings = GPTQSettings(str(calib), ctx=CTX, windows=WINDOWS)
    with open_model(lm) as m:
        tokens = prepare_data(m, "decoder", calib, ctx=CTX, chunks=WINDOWS).windows.tokens
        report = run_job(gptq_quantize_job(m, doc.plan, tokens, options=settings.options()))
    rows = {t["name"]: t for t in report.tensors}
    gptq = [n for n, t in rows.items() if t.get("method") == "gptq"]
    assert gptq
    tm = window.tree_model
    for name in gptq:
        err = doc.error(name)
        assert err["rel_error"] == pytest.approx(rows[name]["rel_error"], rel=1e-9)
        idx = tm.index_for_path(name)
        shown = tm.index(idx.row(), COL["error"], idx.parent()).data()
        assert shown == f"{err['rel_error']:.2e}"
    # GPTQ lowers the calibration output error it is built to lower
    assert sum(rows[n]["output_error_gptq"] for n in gptq) < \
        sum(rows[n]["output_error_plain"] for n in gptq)
