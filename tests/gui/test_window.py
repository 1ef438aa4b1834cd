"""The main window: opening, the encoding editor, context menu, rules, presets, undo, recipes."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QComboBox, QFileDialog, QInputDialog

from qtstudio.core.encodings import encodings
from qtstudio.core.recipe import Recipe
from tests.helpers.window_tree import proxy_index, select_rows

pytestmark = pytest.mark.gui

Q_PROJ = "model.layers.0.self_attn.q_proj.weight"
NORM = "model.layers.0.input_layernorm.weight"


def test_open_model_fills_tree_and_summary(window, small_model):
    assert window.open_model(small_model)
    doc = window.doc
    assert doc is not None and len(doc.model.tensors) == 21
    assert window.tree_model.rowCount() == 2  # "lm_head" and "model"
    assert "tiny-llama" not in window.windowTitle() or "model.safetensors" in window.windowTitle()
    assert window.summary.labels["before"].text().startswith(
        f"{doc.model.total_bytes / 1024:.2f} KiB")
    assert window.recent_files()[0].endswith("tiny-llama")


def test_bad_file_shows_error_not_crash(window, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")  # header runs past the end
    assert not window.open_model(bad)
    assert window.doc is None
    assert window.error_dialog is not None and window.error_dialog.isVisible()
    assert "broken.safetensors" in window.error_dialog.text() + window.error_dialog.windowTitle()
    window.error_dialog.close()


def test_editor_offers_only_what_the_shape_takes(window, small_model, qtbot):
    window.open_model(small_model)
    doc = window.doc
    idx = proxy_index(window, Q_PROJ, "encoding")
    window.tree.setCurrentIndex(idx)
    window.tree.edit(idx)
    editor = window.tree.findChild(QComboBox, "encodingEditor")
    assert editor is not None
    offered = [editor.itemData(i) for i in range(editor.count())]
    # independent oracle: rows of 64 values split into blocks of the encoding's size
    expected = [e.name for e in encodings() if 64 % e.elements_per_block == 0]
    assert offered[0] is None and sorted(offered[1:]) == sorted(expected)
    assert "Q4_K" not in offered  # 256-value super-blocks do not fit a 64-value row
    i = editor.findData("Q8_0")
    editor.setCurrentIndex(i)
    editor.activated.emit(i)
    qtbot.waitUntil(lambda: doc.plan.entry(Q_PROJ).encoding == "Q8_0")
    assert doc.plan.entry(Q_PROJ).origin == "override"
    assert doc.recipe.overrides == {Q_PROJ: "Q8_0"}
    assert idx.data() == "Q8_0"

    # a norm must stay float: the editor offers float types only
    nidx = proxy_index(window, NORM, "encoding")
    window.tree.setCurrentIndex(nidx)
    window.tree.edit(nidx)
    editors = [e for e in window.tree.findChildren(QComboBox, "encodingEditor")
               if e.isVisible()]
    offered = [editors[-1].itemData(i) for i in range(editors[-1].count())]
    assert offered == [None, "F32", "F16", "BF16"]


def test_context_menu_and_shortcut_assign_to_selection(window, small_model, monkeypatch):
    window.open_model(small_model)
    doc = window.doc
    names = [f"model.layers.{i}.mlp.{p}.weight" for i in (0, 1) for p in ("up_proj", "down_proj")]
    select_rows(window, [*names, NORM])
    assert set(window.selected_tensor_names()) == set(names) | {NORM}
    window._tree_menu(QPoint(5, 5))
    menu = window.context_menu
    act = menu.findChild(type(window.act_clear), "assign_Q4_0")
    assert act is not None and "4 of 5" in act.text()  # the norm cannot take Q4_0
    act.trigger()
    menu.close()
    assert all(doc.plan.entry(n).encoding == "Q4_0" for n in names)
    assert doc.plan.entry(NORM).encoding == "F32"
    assert window.undo_stack.count() == 1  # five tensors, one undo step

    # Ctrl+E: choose from a list (the dialog is patched to answer Q5_1)
    assert window.act_assign.shortcut().toString() == "Ctrl+E"
    asked: list = []

    def answer(*a, **k):
        asked.append((a[3], a[4]))
        return next(x for x in a[3] if x.startswith("Q5_1")), True

    monkeypatch.setattr(QInputDialog, "getItem", answer)
    select_rows(window, names[:2])
    window.act_assign.trigger()
    items, default = asked[0]
    # every choice says its bits per weight; the default is the selection's own Q4_0, not F32
    assert all("bpw" in x for x in items) and items[default].startswith("Q4_0  (4.50 bpw")
    assert items.index(next(x for x in items if x.startswith("F32"))) > default
    assert [doc.plan.entry(n).encoding for n in names] == ["Q5_1", "Q5_1", "Q4_0", "Q4_0"]

    # Delete: back to what rules and preset say
    window.act_clear.trigger()
    assert doc.plan.entry(names[0]).encoding == "F32" and names[0] not in doc.recipe.overrides


def test_rules_presets_and_undo_redo(window, small_model, monkeypatch):
    window.open_model(small_model)
    doc = window.doc
    # Add asks first: the dialog, filled in by add_rule's arguments, is confirmed
    monkeypatch.setattr(window.rules, "run_dialog", lambda dlg: True)
    window.apply_preset("Q8_0")
    assert all(e.encoding == "Q8_0" for e in doc.plan.entries if e.quantizable)
    window.rules.add_rule(r"mlp\.down_proj", "Q4_0")
    assert doc.plan.entry("model.layers.1.mlp.down_proj.weight").encoding == "Q4_0"
    assert doc.plan.entry("model.layers.1.mlp.down_proj.weight").origin.startswith("rule")
    assert window.rules.table.item(0, 4).text() == "2"  # matches column
    # a glob over GGUF names, placed first
    window.rules.add_rule("blk.*.ffn_*", "Q5_0")
    combo_syntax = window.rules.table.cellWidget(1, 1)
    combo_syntax.setCurrentText("glob")
    combo_syntax.activated.emit(1)
    combo_target = window.rules.table.cellWidget(1, 2)
    combo_target.setCurrentText("gguf_name")
    combo_target.activated.emit(1)
    window.rules.table.selectRow(1)
    window.rules.move_rule(-1)
    assert doc.recipe.rules[0].pattern == "blk.*.ffn_*" and doc.recipe.rules[0].syntax == "glob"
    assert doc.plan.entry("model.layers.1.mlp.down_proj.weight").encoding == "Q5_0"
    assert doc.plan.entry(Q_PROJ).encoding == "Q8_0"

    steps = window.undo_stack.count()
    texts = [window.undo_stack.text(i) for i in range(steps)]
    assert steps == 6, texts
    snapshots = []
    for _ in range(steps):
        snapshots.append(doc.recipe.to_dict())
        window.act_undo.trigger()
    assert doc.recipe.to_dict() == Recipe().to_dict()
    assert all(e.encoding == "F32" for e in doc.plan.entries)
    for snap in reversed(snapshots):
        window.act_redo.trigger()
        assert doc.recipe.to_dict() == snap
    assert window.rules.table.rowCount() == 2

    # an invalid regex typed into the table changes nothing and says why
    window.rules.table.item(1, 0).setText(r"mlp\.(")  # row 1 is the regex rule
    assert window.undo_stack.count() == steps
    message = window.statusBar().currentMessage()
    assert "not a valid regular expression" in message
    # the typed text stays to be fixed, quoted as typed (one backslash, not repr's two)
    assert window.rules.table.item(1, 0).text() == r"mlp\.("
    assert r"mlp\.(" in message and r"mlp\\.(" not in message


def test_recipe_save_and_load_through_dialogs(window, small_model, tmp_path, monkeypatch):
    window.open_model(small_model)
    doc = window.doc
    window.apply_preset("Q4_K_M")
    window.assign([Q_PROJ], "Q8_0")
    target = tmp_path / "mix.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.act_save_recipe.trigger()
    saved = json.loads(target.read_text())
    assert saved["preset"] == "Q4_K_M" and saved["overrides"] == {Q_PROJ: "Q8_0"}
    assert window.undo_stack.isClean() and "mix.json" in window.windowTitle()

    window.apply_preset(None)
    assert doc.recipe.preset is None and "*" in window.windowTitle()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(target), ""))
    window.act_open_recipe.trigger()
    assert doc.recipe.to_dict() == Recipe.load(target).to_dict()
    window.act_undo.trigger()  # loading a recipe is undoable too
    assert doc.recipe.preset is None


def test_open_dialog_drop_and_recent(window, small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(small_model / "model.safetensors"), ""))
    window.act_open.trigger()
    assert window.doc is not None and window.doc.model.path.name == "model.safetensors"

    other = tmp_path / "other"
    other.mkdir()
    from .conftest import write_llama_like

    write_llama_like(other / "m.safetensors", n_layers=1)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])  # a dropped folder opens too
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                    Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(ev)
    assert window.doc.model.path.name == "m.safetensors"
    recent = window.recent_files()
    assert recent[0] == str(other.resolve())
    assert recent[1].endswith("model.safetensors")

    # a dropped recipe applies to the open model
    recipe = tmp_path / "r.json"
    Recipe(default_encoding="Q8_0").save(recipe)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(recipe))])
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
    assert window.doc.recipe.default_encoding == "Q8_0"


def test_filter_box(window, small_model):
    window.open_model(small_model)
    window.filter_edit.setText("q_proj")
    assert window.match_label.text() == "2 match"
    window.regex_box.setChecked(True)
    window.filter_edit.setText(r"layers\.1\..*(k|v)_proj")
    assert window.match_label.text() == "2 match"
    window.filter_edit.setText("(")
    assert "invalid regular expression" in window.filter_edit.toolTip()


def test_demo_opens_without_argument(window):
    assert window.open_demo()
    assert window.doc.model.path.name == "model.safetensors"
    assert window.act_eval.isEnabled()


def test_tensor_type_lines_round_trip(window, small_model):
    from PySide6.QtWidgets import QApplication

    window.open_model(small_model)
    doc = window.doc
    assert window.import_tensor_type_lines(
        "# from a llama-quantize command line\n--tensor-type ffn_down=q8_0\nattn_v=Q5_0\n")
    assert [(r.pattern, r.encoding, r.target) for r in doc.recipe.rules] == [
        ("ffn_down", "Q8_0", "gguf_name"), ("attn_v", "Q5_0", "gguf_name")]
    assert doc.plan.entry("model.layers.1.mlp.down_proj.weight").encoding == "Q8_0"
    assert doc.plan.entry("model.layers.0.self_attn.v_proj.weight").encoding == "Q5_0"
    window.assign([Q_PROJ], "Q4_0")
    text = window.copy_tensor_type_lines()
    assert text == QApplication.clipboard().text()
    assert "--tensor-type ^blk\\.0\\.attn_q\\.weight$=q4_0" in text
    assert "--tensor-type ffn_down=q8_0" in text
    # a bad line is refused with its reason, and changes nothing
    steps = window.undo_stack.count()
    assert not window.import_tensor_type_lines("no equals sign here")
    assert window.undo_stack.count() == steps and "REGEX=TYPE" in window.last_error
    window.error_dialog.close()


def test_group_rows_summarise_encodings(window, small_model):
    from qtstudio.gui.tree_model import COL

    window.open_model(small_model)
    window.apply_preset("Q8_0")
    tm = window.tree_model
    grp = tm.index_for_path("model.layers.0")
    cell = tm.index(grp.row(), COL["encoding"], grp.parent())
    assert cell.data() == "Q8_0, F32"  # 7 matrices, 2 norms
    # Delete in the filter box edits text; it does not clear overrides in the tree
    assert window.act_clear.shortcutContext() == Qt.ShortcutContext.WidgetWithChildrenShortcut


def test_recent_files_menu_reopens(window, small_model, tmp_path):
    from .conftest import write_llama_like

    other = write_llama_like(tmp_path / "second.safetensors", n_layers=1)
    window.open_model(small_model)
    window.open_model(other)
    window._fill_recent()
    actions = [a for a in window.recent_menu.actions() if a.text().startswith("&")]
    assert [a.text().split(" ", 1)[1] for a in actions] == [str(other.resolve()),
                                                            str(small_model.resolve())]
    actions[1].trigger()
    assert window.doc.model.path.parent == small_model
    assert window.recent_files()[0] == str(small_model.resolve())


def test_layout_is_remembered(qtbot, small_model):
    from qtstudio.gui.main_window import MainWindow

    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.analysis_dock.hide()
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert not second.analysis_dock.isVisible()
    second.analysis_dock.show()
    second.close()


def test_preset_float_and_default_combos_are_undoable_recipe_edits(window, small_model):
    window.open_model(small_model)
    doc, panel, stack = window.doc, window.rules, window.undo_stack

    def choose(combo, text):
        combo.setCurrentIndex(combo.findText(text))
        combo.activated.emit(combo.currentIndex())

    choose(panel.preset, "Q4_K_M")
    assert doc.recipe.preset == "Q4_K_M" and stack.undoText() == "Preset Q4_K_M"
    choose(panel.float_type, "F16")
    assert doc.recipe.float_encoding == "F16" and stack.undoText() == "Float tensors F16"
    choose(panel.default_type, "Q8_0")
    assert doc.recipe.default_encoding == "Q8_0" and stack.undoText() == "Other tensors Q8_0"
    choose(panel.default_type, "stay float")
    assert doc.recipe.default_encoding is None and stack.undoText() == "Other tensors stay float"
    # choosing what the recipe already says is no edit
    steps = stack.count()
    choose(panel.float_type, "F16")
    choose(panel.preset, "Q4_K_M")
    assert stack.count() == steps
    # each edit changed its own field only: undo walks back one field at a time
    window.act_undo.trigger()
    assert doc.recipe.default_encoding == "Q8_0" and doc.recipe.float_encoding == "F16"
    window.act_undo.trigger()
    window.act_undo.trigger()
    assert doc.recipe.float_encoding == "F32" and doc.recipe.preset == "Q4_K_M"
    assert panel.float_type.currentText() == "F32"
