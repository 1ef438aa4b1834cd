"""What a new user meets in the window's first hour (issue 15, section 3): unsaved edits, opening
folders, honest numbers, layout at 1100x720, plots, editing defaults, first steps, export
defaults and GGUF metadata, and the whole-model comparison of plans."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gguf import GGUFReader
from PySide6.QtWidgets import QFileDialog

from qtstudio.gui import unsaved
from tests.helpers.raw_checkpoints import write_hf_llama
from tests.helpers.window_tree import proxy_index, select_rows

pytestmark = pytest.mark.gui

Q_PROJ = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture
def k_model(tmp_path):
    """Rows of 256 and 512 values: every k-quant applies."""
    return write_hf_llama(tmp_path / "llama", layers=2, hidden=256, ffn=512)


# ---- 1. work is never lost silently ----------------------------------------------------------
def test_unsaved_edits_ask_before_open_and_quit(window, small_model, k_model, unsaved_answers,
                                                tmp_path, monkeypatch):
    window.open_model(small_model)
    assert unsaved_answers["asked"] == []  # nothing to lose yet: no question
    window.apply_preset("Q8_0")
    assert window.windowTitle().endswith("* — qtstudio")
    # Cancel: the model, its plan and the undo history stay
    unsaved_answers["answers"].append(unsaved.CANCEL)
    assert not window.open_model(k_model)
    assert unsaved_answers["asked"] == ["open llama"]
    assert window.doc.model.path.parent == small_model and window.undo_stack.count() == 1
    # Quit with Cancel: the window stays open
    unsaved_answers["answers"].append(unsaved.CANCEL)
    assert not window.close() and window.isVisible()
    # Save: Save As is asked for a path, the recipe is written, then the other model opens
    out = tmp_path / "kept.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    unsaved_answers["answers"].append(unsaved.SAVE)
    assert window.open_model(k_model)
    assert json.loads(out.read_text())["preset"] == "Q8_0"
    assert window.doc.model.path.parent == k_model
    # Discard: opens without saving
    window.apply_preset("Q4_0")
    unsaved_answers["answers"].append(unsaved.DISCARD)
    assert window.open_model(small_model) and window.undo_stack.count() == 0


# ---- 2. folders open from File > Open --------------------------------------------------------
def test_picking_config_json_opens_the_folder(window, small_model, monkeypatch):
    from qtstudio.gui.open_paths import MODEL_FILTER, model_path_for

    assert model_path_for(small_model / "config.json") == small_model
    assert model_path_for(small_model / "model.safetensors") == small_model / "model.safetensors"
    assert "config.json" in MODEL_FILTER and "*.json)" not in MODEL_FILTER.split(";;")[0]
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(small_model / "config.json"), ""))
    window.open_dialog()
    assert window.last_error is None and window.doc is not None
    assert window.doc.model.architecture == "llama"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(small_model))
    window.apply_preset("Q8_0")
    window.open_folder_dialog()
    assert window.last_error is None and window.undo_stack.count() == 0


# ---- 3. group rows say what was measured; the GGUF-name column ---------------------------------
def test_group_error_says_not_measured_and_gguf_names_show(window, small_model):
    from qtstudio.gui.tree_model import COL, NOT_MEASURED

    window.open_model(small_model)
    window.apply_preset("Q8_0")
    doc = window.doc
    # one tensor measured, exactly: the group must not claim "exact" for the rest
    doc.measurements.set_error(Q_PROJ, "Q8_0", {"rel_error": 0.0, "rmse": 0.0})
    doc.notify("measurements")
    layer0 = proxy_index(window, "model.layers.0", "error")
    assert layer0.data() == NOT_MEASURED
    assert proxy_index(window, Q_PROJ, "error").data() == "exact"
    doc.measurements.set_error("model.layers.0.mlp.down_proj.weight", "Q8_0",
                               {"rel_error": 0.01})
    doc.notify("measurements")
    assert proxy_index(window, "model.layers.0", "error").data() == "≥ 1.00e-02"
    gguf = proxy_index(window, Q_PROJ, "gguf name")
    assert gguf.data() == "blk.0.attn_q.weight"
    assert not window.tree.header().isSectionHidden(COL["gguf name"])


# ---- 4. optimize limits: tested in test_optimize.py -------------------------------------------
# ---- 5. layout at 1100x720 --------------------------------------------------------------------
def test_layout_at_1100_by_720(window, k_model, qtbot):
    from qtstudio.gui.main_window import ANALYSIS_MIN_HEIGHT
    from qtstudio.gui.tree_columns import NAME_MIN

    window.resize(1100, 720)
    window.open_model(k_model)
    qtbot.wait(50)
    assert window.minimumSizeHint().height() <= 720
    assert window.height() <= 720 + 1
    assert window.tree.header().sectionSize(0) >= NAME_MIN
    assert window.analysis.height() >= ANALYSIS_MIN_HEIGHT
    # the user's own width for the name column stays
    window.tree.header().resizeSection(0, 333)
    window.resize(1300, 720)
    qtbot.wait(50)
    assert window.tree.header().sectionSize(0) == 333


# ---- 6. plots -------------------------------------------------------------------------------
def test_depth_axis_ticks_are_whole_or_blocks(qtbot):
    import pyqtgraph as pg

    from qtstudio.gui.plots import DepthAxis, block_starts

    names = ["embed.weight", "layers.0.a", "layers.0.b", "layers.1.a", "layers.1.b", "norm"]
    assert block_starts(names) == [(1, "blk 0"), (3, "blk 1")]
    plot = pg.PlotWidget(axisItems={"bottom": DepthAxis()})
    qtbot.addWidget(plot)  # closed by the test, not by the interpreter after Qt is gone
    axis = plot.getAxis("bottom")
    for _spacing, values in axis.tickValues(0.0, 5.0, 600):
        assert all(v == int(v) for v in values)
    axis.blocks = block_starts(names)
    ((_s, values),) = axis.tickValues(0.0, 5.0, 600)
    assert values == [1.0, 3.0] and axis.tickStrings(values, 1, 1) == ["blk 0", "blk 1"]


def test_empty_plots_have_no_axes_and_memory_units_agree(window, small_model):
    err = window.analysis.error.plot.getPlotItem()
    assert not err.getAxis("left").isVisible()
    window.open_model(small_model)
    window.apply_preset("Q8_0")
    mem = window.analysis.memory
    # the title says KiB for this small model: so does the axis
    assert "KiB" in mem.plot.getPlotItem().titleLabel.text and mem.unit == "KiB"
    assert mem.plot.getPlotItem().getAxis("left").labelText == "KiB"
    assert "Q8_0" in mem.legend.text()


def test_histogram_grid_is_the_whole_ladder():
    from qtstudio.gui.analysis import block_grid

    w = np.random.default_rng(3).standard_normal((8, 256)).astype(np.float32)
    g = block_grid(w, "Q4_0")
    assert g.ladder == 16 and g.levels.size == 16 and g.used.size <= 16
    ks = np.round(g.levels / g.step).astype(int)
    assert ks.max() - ks.min() == 15 and set(np.round(g.used / g.step).astype(int)) <= set(ks)


# ---- 9. editing defaults ----------------------------------------------------------------------
def test_add_rule_dialog_checks_before_the_plan_changes(window, small_model, monkeypatch):
    window.open_model(small_model)
    filled = []

    def fill(dlg):
        dlg.pattern.setText(r"mlp\.(")
        filled.append(dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled())
        dlg.pattern.setText(r"mlp\.down_proj")
        filled.append(dlg.status.text())
        return False  # cancelled: nothing changes

    monkeypatch.setattr(window.rules, "run_dialog", fill)
    assert not window.rules.add_rule()
    assert filled == [False, "matches 2 tensors (float-only tensors keep their float type)"]
    assert window.undo_stack.count() == 0 and window.doc.recipe.rules == []


# ---- 10/11. first steps and polish --------------------------------------------------------------
def test_hint_help_presets_and_toolbar(window, small_model):
    from PySide6.QtWidgets import QToolBar

    window.open_model(small_model)
    assert window.hint.isVisible() and "32 bits per weight" in window.hint.label.text()
    window.hint.preset_btn.click()
    assert window.doc.recipe.preset == "Q4_K_M" and not window.hint.isVisible()
    window._fill_presets()
    group = window.preset_group
    assert group.isExclusive() and group.checkedAction().text() == "Q4_K_M"
    bar = window.findChild(QToolBar, "mainToolbar")
    texts = [a.text() for a in bar.actions() if a.text()]
    assert "Undo" in texts and window.tb_undo.isEnabled()
    assert window.tb_undo.toolTip() == "Undo Preset Q4_K_M"
    window.help_dialog()
    html = window.help_dlg.text.toPlainText()
    assert "Getting started" in html and "Ctrl+E" in html and "Compare" in html
    assert window.plan_label.text().endswith(" fallbacks")  # small_model: 64-wide rows
    from qtstudio.gui.format import plural

    assert plural(1, "layer") == "1 layer" and plural(2, "layer") == "2 layers"


def test_clearing_the_filter_keeps_selection(window, small_model):
    window.open_model(small_model)
    window.filter_edit.setText("down_proj")
    name = "model.layers.1.mlp.down_proj.weight"
    select_rows(window, [name])
    window.filter_edit.clear()
    assert window.selected_tensor_names() == [name]
    assert window.tree.isExpanded(proxy_index(window, "model.layers.1.mlp"))


# ---- 7. export defaults and GGUF metadata ------------------------------------------------
def test_export_defaults_and_metadata(window, tmp_path, qtbot):
    from qtstudio.gui.export_dialog import ExportDialog
    from tests.helpers.tiny_models import build_tiny_llama

    k_model = build_tiny_llama(tmp_path / "llama")  # with a tokenizer: llama.cpp needs one
    window.open_model(k_model)
    window.apply_preset("Q4_K_M")
    dlg = ExportDialog(window, window.doc)
    path = dlg.path.text()
    assert not path.startswith(str(k_model)) and path.endswith("llama-Q4_K_M.gguf")
    window.assign([Q_PROJ], "Q8_0")
    dlg = ExportDialog(window, window.doc)
    assert dlg.path.text().endswith("llama-Q4_K_M-custom.gguf")
    assert dlg.metadata.fields["general.name"].text() == "llama-Q4_K_M-custom"
    dlg.metadata.fields["general.author"].setText("qtstudio tests")
    dlg.metadata.fields["general.license"].setText("mit")
    dlg.metadata.add_row("general.url", "https://example.org/m")
    out = tmp_path / "exports" / "m.gguf"
    dlg.path.setText(str(out))
    dlg.start()
    qtbot.waitUntil(lambda: window.worker is None, timeout=120000)
    assert window.error_dialog is None, window.last_error
    r = GGUFReader(out)

    def s(key):
        return r.fields[key].contents()

    assert s("general.name") == "llama-Q4_K_M-custom" and s("general.author") == "qtstudio tests"
    assert s("general.license") == "mit" and s("general.url") == "https://example.org/m"
    # a custom mix: file_type follows its most common type, not the preset's name
    from qtstudio.export.gguf import file_type_for

    assert s("general.file_type") == file_type_for(window.doc.plan, [
        t.tensor_type.name for t in r.tensors])
    # a bad key is refused in the dialog, with nothing started
    dlg = ExportDialog(window, window.doc)
    dlg.metadata.add_row("general.file_type", "1")
    dlg.start()
    assert window.worker is None and "written by the exporter" in dlg.metadata.status.text()


def test_file_type_is_the_presets_only_for_the_pure_preset(k_model):
    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.presets import PRESETS
    from qtstudio.core.recipe import Recipe
    from qtstudio.export.gguf import file_type_for
    from qtstudio.formats import open_model

    with open_model(k_model) as m:
        pure = resolve_plan(m, Recipe(preset="Q4_K_M"))
        assert file_type_for(pure, []) == PRESETS["Q4_K_M"].ftype
        mixed = resolve_plan(m, Recipe(preset="Q4_K_M", overrides={
            t.name: "Q8_0" for t in m.tensors if t.quantizable}))
        assert file_type_for(mixed, [e.encoding for e in mixed.entries]) == 7  # MOSTLY_Q8_0


# ---- also wanted: whole-model comparison ------------------------------------------------------
def test_compare_presets_and_plans(window, k_model, tmp_path, qtbot):
    window.open_model(k_model)
    window.compare_dialog()
    dlg = window.compare_dlg
    assert dlg.start() is not None
    qtbot.waitUntil(lambda: window.worker is None, timeout=180000)
    assert window.error_dialog is None, window.last_error
    plans = dlg.result.plans
    kinds = {p.kind for p in plans}
    assert kinds == {"preset", "optimized", "current"}
    by = {p.label: p for p in plans}
    # more bits, less error: the uniform presets in the order of their bits
    assert by["Q8_0"].rel_error < by["Q6_K"].rel_error < by["Q4_0"].rel_error \
        < by["Q2_K"].rel_error
    assert by["current plan"].rel_error == 0.0  # the model opened unquantized
    # every optimized mix at or under its target, and no worse than a preset of its size or more
    for p in plans:
        if p.kind == "optimized":
            target = float(p.label.split()[1])
            assert p.bpw <= target + 1e-9
    assert [p.nbytes for p in plans] == sorted(p.nbytes for p in plans)
    assert dlg.table.rowCount() == len(plans)
    md, js = tmp_path / "c.md", tmp_path / "c.json"
    assert dlg.save(md) and dlg.save(js)
    assert "| Q4_K_M | preset |" in md.read_text()
    doc = json.loads(js.read_text())
    assert {p["label"] for p in doc["plans"]} == set(by)
    row = [p.label for p in plans].index("Q4_K_M")
    dlg.table.selectRow(row)
    assert dlg.apply_btn.isEnabled()
    dlg.apply_btn.click()
    assert window.doc.recipe.preset == "Q4_K_M"


# ---- 8. integer tensors are data ----------------------------------------------------------------
def test_integer_tensors_show_their_own_type(window, tmp_path):
    from PySide6.QtCore import Qt
    from safetensors.numpy import save_file

    path = tmp_path / "ids.safetensors"
    save_file({"embeddings.position_ids": np.arange(128, dtype=np.int64)[None, :],
               "embeddings.weight": np.ones((128, 256), np.float32)}, str(path))
    window.open_model(path)
    window.apply_preset("Q8_0")
    idx = proxy_index(window, "embeddings.position_ids", "encoding")
    assert idx.data() == "I64 (kept)"
    assert window.doc.candidates("embeddings.position_ids") == []
    src = window.proxy.mapToSource(idx)
    assert not window.tree_model.flags(src) & Qt.ItemFlag.ItemIsEditable
    group = proxy_index(window, "embeddings", "encoding")
    assert "I64" in group.data() and "F32" not in group.data()


def test_cli_compare_writes_a_report_and_never_onto_the_model(tmp_path, capsys):
    from qtstudio.cli import main

    folder = write_hf_llama(tmp_path / "m", layers=1, hidden=256, ffn=512)
    config = (folder / "config.json").read_bytes()
    assert main(["compare", str(folder), "--presets", "Q8_0,Q2_K", "--targets-bpw", "4.5",
                 "--report", str(tmp_path / "r.json"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    by = {p["label"]: p for p in doc["plans"]}
    assert set(by) == {"Q8_0", "Q2_K", "optimized 4.5 bpw"}
    assert by["Q8_0"]["rel_error"] < by["optimized 4.5 bpw"]["rel_error"] < by["Q2_K"]["rel_error"]
    assert main(["compare", str(folder), "--report", str(folder / "config.json"),
                 "--quiet"]) != 0
    assert (folder / "config.json").read_bytes() == config
    assert "refusing to overwrite" in capsys.readouterr().err


def test_gguf_source_metadata_is_offered_for_editing(qtbot):
    from qtstudio.gui.export_dialog import MetadataEditor

    ed = MetadataEditor("m-Q4_K_M")
    qtbot.addWidget(ed)
    ed.fill_from({"general.author": "A. Author", "general.source.url": "https://x.org",
                  "general.name": "old name", "general.file_type": 7,
                  "llama.context_length": 4096})
    assert ed.values() == {"general.name": "m-Q4_K_M", "general.author": "A. Author",
                           "general.source.url": "https://x.org"}
    assert ed.problem() is None
    ed.add_row("not a key", "v")
    assert "dotted words" in ed.problem()
