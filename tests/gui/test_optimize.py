"""Run ▸ Optimize: target, floor, infeasible targets, the result as one undoable edit, cancel,
and an importance matrix loaded from the File menu."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from PySide6.QtWidgets import QFileDialog

from qtstudio.jobs import Cancelled
from tests.helpers.raw_checkpoints import write_hf_llama

pytestmark = pytest.mark.gui


@pytest.fixture
def hf_model(tmp_path):
    # rows of 256 and 512 values, so every k-quant candidate applies
    return write_hf_llama(tmp_path / "llama", layers=2, hidden=256, ffn=512)


def _gguf_bytes(shape, encoding: str) -> int:
    """Bytes of a tensor in ``encoding``, from the gguf package's block table (the oracle)."""
    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[encoding]]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    assert shape[-1] % block == 0
    return rows * shape[-1] // block * type_size


def _plan_bytes(doc) -> int:
    return sum(_gguf_bytes(tuple(doc.model.tensor(e.name).shape), e.encoding)
               for e in doc.plan.entries)


def _open_dialog(window):
    window.act_optimize.trigger()
    return window.optimize_dlg


def test_floor_shown_and_infeasible_target_refused(window, hf_model):
    window.open_model(hf_model)
    doc = window.doc
    before = doc.recipe_snapshot()
    dlg = _open_dialog(window)
    assert dlg.checked_candidates() == ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"]
    # floor: every quantizable tensor in Q2_K, the norms in F32 (sizes from the gguf package)
    floor = sum(_gguf_bytes(tuple(t.shape), "Q2_K" if t.quantizable else "F32")
                for t in doc.model.tensors)
    floor_bpw = 8 * floor / doc.model.total_params
    assert f"from {floor_bpw:.3f} bpw" in dlg.floor.text()
    # only Q8_0 left: the floor rises to it
    dlg.set_candidates(["Q8_0"])
    q8 = sum(_gguf_bytes(tuple(t.shape), "Q8_0" if t.quantizable else "F32")
             for t in doc.model.tensors)
    assert f"from {8 * q8 / doc.model.total_params:.3f} bpw" in dlg.floor.text()
    dlg.set_candidates(["Q2_K", "Q4_K"])
    # below the floor, in bits per weight and in MB: the optimizer's message, no job
    dlg.set_target(round(floor_bpw - 0.1, 3))
    dlg.run_btn.click()
    assert window.worker is None and dlg.isVisible()
    assert dlg.problem.isVisible()
    assert "below the smallest reachable size" in dlg.problem.text()
    # sizes in the window's one unit system (MiB/GiB as human_bytes prints them), never bytes
    from qtstudio.core.human_numbers import human_bytes

    assert human_bytes(floor) in dlg.problem.text() and "bytes" not in dlg.problem.text()
    assert dlg.unit.findText("MB") == -1 and dlg.unit.findText("MiB") >= 0
    dlg.set_target(floor * 0.9 / 2**20, "MiB")
    dlg.run_btn.click()
    assert window.worker is None and "below the smallest reachable" in dlg.problem.text()
    # above the unquantized size: refused too (nothing to optimize)
    dlg.set_target(doc.plan.original_bytes * 1.01 / 2**20, "MiB")
    dlg.run_btn.click()
    assert window.worker is None and "above the unquantized size" in dlg.problem.text()
    assert human_bytes(doc.plan.original_bytes) in dlg.problem.text()
    dlg.set_target(33.0)
    dlg.run_btn.click()
    assert window.worker is None and "above the unquantized size" in dlg.problem.text()
    # no candidates: nothing to run
    dlg.set_candidates([])
    assert not dlg.run_btn.isEnabled()
    assert doc.recipe_snapshot() == before


def test_optimize_is_one_undoable_edit(window, hf_model, qtbot):
    window.open_model(hf_model)
    doc = window.doc
    window.apply_preset("Q8_0")
    before = doc.recipe_snapshot()
    before_bytes = doc.plan.total_bytes
    steps = window.undo_stack.count()
    dlg = _open_dialog(window)
    dlg.set_target(4.0)
    progress: list = []
    dlg.run_btn.click()
    assert not dlg.isVisible()
    window.worker.yielded.connect(progress.append)
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    assert window.error_dialog is None, window.last_error
    assert progress and {p.stage for p in progress} <= {"measure", "solve", "done"}
    # the plan fits the target, counted with the gguf package's block sizes
    assert doc.plan.avg_bpw <= 4.0
    budget = int(4.0 * doc.model.total_params / 8)
    assert _plan_bytes(doc) == doc.plan.total_bytes <= budget
    used = {e.encoding for e in doc.plan.entries if e.quantizable}
    assert len(used) >= 2 and used <= {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"}
    assert window.undo_stack.count() == steps + 1
    # the summary: achieved vs target and the uniform encoding it beat
    opt = doc.optimize_summary
    text = window.summary.labels["optimizer"].text()
    assert text.startswith(f"{doc.plan.avg_bpw:.3f} bpw for a 4.000 bpw target")
    assert opt.best_uniform is not None
    assert f"error than uniform {opt.best_uniform[0]} ({opt.best_uniform[1]:.3f} bpw)" in text
    assert f"beats uniform {opt.best_uniform[0]}" in window.summary.labels["optimizer"].toolTip()
    assert opt.best_uniform[1] <= 4.0 and opt.total_error <= opt.best_uniform[2]
    assert "Optimize" in doc.recipe.notes or "optimize" in doc.recipe.notes
    # undo restores the Q8_0 plan exactly; redo brings the answer back
    after = doc.recipe_snapshot()
    window.undo_stack.undo()
    assert doc.recipe_snapshot() == before and doc.plan.total_bytes == before_bytes
    assert "no longer" in window.summary.labels["optimizer"].text()
    window.undo_stack.redo()
    assert doc.recipe_snapshot() == after and doc.plan.avg_bpw <= 4.0


def test_cancel_leaves_the_plan(window, tmp_path, qtbot):
    folder = write_hf_llama(tmp_path / "bigger", layers=6, hidden=512, ffn=1024)
    window.open_model(folder)
    doc = window.doc
    window.apply_preset("Q8_0")
    before = doc.recipe_snapshot()
    steps = window.undo_stack.count()
    errors: list = []
    w = window.run_optimize(target_bpw=4.0)
    w.errored.connect(errors.append)
    w.yielded.connect(lambda _p: window.cancel_job())  # midway: after the first tensor
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    assert errors and isinstance(errors[0], Cancelled)
    assert doc.recipe_snapshot() == before and window.undo_stack.count() == steps
    assert doc.optimize_summary is None
    assert "cancelled" in window.statusBar().currentMessage()


def test_imatrix_from_the_file_menu(window, hf_model, tmp_path, qtbot, monkeypatch):
    from qtstudio.formats.imatrix import save_imatrix_gguf

    window.open_model(hf_model)
    doc = window.doc
    rng = np.random.default_rng(3)
    named = [t for t in doc.model.tensors if t.quantizable and t.gguf_name]
    # every tensor but the output matrix gets weights: that one is reported as unweighted
    sums = {t.gguf_name: rng.uniform(0.1, 4.0, (1, t.shape[-1])).astype(np.float32)
            for t in named if t.gguf_name != "output.weight"}
    path = tmp_path / "im.gguf"
    save_imatrix_gguf(path, sums, dict.fromkeys(sums, 4.0), datasets=["test"], chunk_count=4,
                      chunk_size=64)
    # a file that is not an imatrix: the error names it, nothing is loaded
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x07\x00")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    window.act_load_imatrix.trigger()
    assert window.imatrix is None and str(bad) in window.last_error
    window.error_dialog.close()
    window.error_dialog = None
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.act_load_imatrix.trigger()
    assert window.imatrix is not None and len(window.imatrix) == len(sums)
    assert window.imatrix_label.text() == f"imatrix: im.gguf ({len(sums)} tensors)"
    dlg = _open_dialog(window)
    assert dlg.objective.currentData() == "imatrix"
    dlg.set_target(4.5)
    dlg.run_btn.click()
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    assert window.error_dialog is None, window.last_error
    assert doc.optimize_summary.objective == "imatrix" and doc.plan.avg_bpw <= 4.5
    assert doc.optimize_summary.unweighted == 1
    assert "1 tensor(s) have no importance weights" in window.statusBar().currentMessage()


def test_imatrix_makes_the_mixtures_choose_as_with_imatrix(window, tmp_path, monkeypatch):
    from qtstudio.core.plan import resolve_plan
    from qtstudio.formats.imatrix import save_imatrix_gguf

    folder = write_hf_llama(tmp_path / "deep", layers=8, hidden=256, ffn=512)
    window.open_model(folder)
    doc = window.doc
    window.apply_preset("Q4_0")
    without = {e.name: e.encoding for e in doc.plan.entries}
    assert without == {e.name: e.encoding
                       for e in resolve_plan(doc.model, doc.recipe, has_imatrix=False).entries}
    path = tmp_path / "im.gguf"
    sums = {t.gguf_name: np.ones((1, t.shape[-1]), np.float32)
            for t in doc.model.tensors if t.quantizable and t.gguf_name}
    save_imatrix_gguf(path, sums, dict.fromkeys(sums, 1.0), datasets=["t"], chunk_count=1,
                      chunk_size=8)
    assert window.load_imatrix(path)
    with_im = {e.name: e.encoding for e in doc.plan.entries}
    assert with_im == {e.name: e.encoding
                       for e in resolve_plan(doc.model, doc.recipe, has_imatrix=True).entries}
    assert with_im != without
    # a model opened afterwards starts with the matrix in effect too
    window.open_model(folder)
    assert window.doc.has_imatrix


def test_imatrix_objective_needs_an_imatrix(window, hf_model):
    window.open_model(hf_model)
    dlg = _open_dialog(window)
    assert dlg.objective.currentData() == "mse"
    assert not dlg.objective.model().item(1).isEnabled()


def test_optimize_action_in_run_menu_and_toolbar(window, hf_model):
    from PySide6.QtWidgets import QToolBar

    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_optimize in run_menu.actions()
    toolbar = window.findChild(QToolBar, "mainToolbar")
    assert window.act_optimize in toolbar.actions()
    assert not window.act_optimize.isEnabled()  # no model yet
    window.open_model(hf_model)
    assert window.act_optimize.isEnabled()


def test_reachable_sizes_equal_the_optimizers_cost_table(hf_model):
    from qtstudio.core.optimize import cost_table
    from qtstudio.formats import open_model
    from qtstudio.gui.optimize_dialog import ReachableSizes

    with open_model(hf_model) as model:
        sizes = ReachableSizes(model, "F16")
        for cands in (["Q2_K"], ["Q8_0", "Q3_K"], ["Q4_0", "Q6_K", "IQ4_XS", "Q2_K"]):
            t = cost_table(model, cands, float_encoding="F16")
            assert sizes.range(cands) == (t.floor_bytes, t.ceiling_bytes), cands
