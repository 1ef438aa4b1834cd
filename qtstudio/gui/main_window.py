"""The main window: layer tree in the middle, plan panels on the right, plots below."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMenuBar,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from qtstudio.core.human_numbers import human_bytes

from .delegates import EncodingDelegate
from .document import PlanDocument
from .filter_proxy import LayerFilterProxy
from .format import plural
from .hint_bar import HintBar
from .open_paths import MODEL_FILTER, model_path_for
from .rules_panel import RulesPanel
from .summary_panel import SummaryPanel
from .tree_model import COL, LayerTreeModel, NodeRole, PathRole
from .undo import RecipeEdit
from .window_files import FilesMixin
from .window_jobs import JobsMixin
from .worker import JobWorker, job_pool

#: the Analysis dock never collapses below this (a plot with its axes and one line of text)
ANALYSIS_MIN_HEIGHT = 200


def _add_menu(bar: QMenuBar, title: str, *groups: list[QAction | QMenu]) -> QMenu:
    """A menu of ``bar`` holding ``groups`` of actions and submenus, a separator between
    groups."""
    menu = bar.addMenu(title)
    for i, group in enumerate(groups):
        if i:
            menu.addSeparator()
        for item in group:
            if isinstance(item, QMenu):
                menu.addMenu(item)
            else:
                menu.addAction(item)
    return menu


class MainWindow(FilesMixin, JobsMixin, QMainWindow):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("qtstudio")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.doc: PlanDocument | None = None
        self.tree_model: LayerTreeModel | None = None
        self.undo_stack = QUndoStack(self)
        self.worker: JobWorker | None = None
        self.last_error: str | None = None
        self.error_dialog: QMessageBox | None = None
        #: importance matrix for quantize, optimize and GGUF export (File ▸ Load importance matrix)
        self.imatrix: Any = None
        self._is_demo = False
        self._then_evaluate = False

        self._build_tree()
        self._build_docks()
        self._build_status()
        self._build_actions()
        from .eval_panel import install_eval
        install_eval(self)  # File ▸ Calibration file, Run ▸ Evaluate plan (KL), results dock
        self._update_enabled()
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self._restore_layout()
        from . import refguard

        self._refguard = QTimer(self)
        self._refguard.setInterval(200)
        self._refguard.timeout.connect(refguard.top_up)
        self._refguard.start()
        from .process_job import warm_up

        warm_up()

    # ================================================================ construction ==========
    def _build_tree(self) -> None:
        self.filter_edit = QLineEdit(objectName="filterEdit")
        self.filter_edit.setPlaceholderText("Filter tensors by name (Ctrl+F)…")
        self.filter_edit.setClearButtonEnabled(True)
        self.regex_box = QCheckBox("regex", objectName="regexBox")
        self.match_label = QLabel("")
        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.regex_box)
        top.addWidget(self.match_label)

        self.proxy = LayerFilterProxy(self)
        self.tree = QTreeView(objectName="layerTree")
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)  # lets the view skip measuring 10k rows
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed
                                  | QAbstractItemView.EditTrigger.SelectedClicked)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._tree_menu)
        self.tree.setSortingEnabled(True)
        self.tree.header().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.tree.header().setStretchLastSection(False)
        self.encoding_delegate = EncodingDelegate(lambda: self.doc, self.tree)
        self.tree.setItemDelegateForColumn(COL["encoding"], self.encoding_delegate)

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.regex_box.toggled.connect(lambda _b: self._apply_filter())

        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 4)
        self.hint = HintBar(self)
        lay.addWidget(self.hint)
        lay.addLayout(top)
        lay.addWidget(self.tree, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        from .plots import AnalysisPanel

        self.summary = SummaryPanel()
        self.summary.tensor_activated.connect(self.select_tensor)
        self.rules = RulesPanel()
        self.rules.edit_requested.connect(self.push_recipe)
        self.plan_split = plan_split = QSplitter(Qt.Orientation.Vertical)
        # the summary scrolls rather than pushing the window taller than a 720 px screen
        summary_scroll = QScrollArea(objectName="summaryScroll")
        summary_scroll.setWidget(self.summary)
        summary_scroll.setWidgetResizable(True)
        summary_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        summary_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        summary_scroll.setMinimumHeight(190)
        plan_split.addWidget(summary_scroll)
        plan_split.addWidget(self.rules)
        plan_split.setChildrenCollapsible(False)
        plan_split.setStretchFactor(0, 3)
        plan_split.setStretchFactor(1, 2)
        self.plan_dock = QDockWidget("Plan", self, objectName="planDock")
        self.plan_dock.setWidget(plan_split)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.plan_dock)

        self.analysis = AnalysisPanel(self)
        self.analysis.tensor_clicked.connect(self.select_tensor)
        self.analysis_dock = QDockWidget("Analysis", self, objectName="analysisDock")
        self.analysis_dock.setWidget(self.analysis)
        # a dock that may shrink to its tab bar stays collapsed once restored that way
        self.analysis.setMinimumHeight(ANALYSIS_MIN_HEIGHT)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.analysis_dock)
        self._fit_docks()

    def _fit_docks(self) -> None:
        """Dock sizes in proportion to the window: a fixed 460 px plan panel leaves the tree
        too little on a 1100 px screen."""
        self.resizeDocks([self.plan_dock], [max(320, min(460, int(self.width() * 0.30)))],
                         Qt.Orientation.Horizontal)
        # the summary's ten lines before the rules table's empty rows
        h = max(self.plan_split.height(), 400)
        self.plan_split.setSizes([int(h * 0.62), h - int(h * 0.62)])
        self.resizeDocks([self.analysis_dock], [max(ANALYSIS_MIN_HEIGHT,
                                                    int(self.height() * 0.36))],
                         Qt.Orientation.Vertical)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.progress = QProgressBar(objectName="jobProgress")
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.cancel_btn = QPushButton("Cancel", objectName="cancelButton")
        self.cancel_btn.clicked.connect(self.cancel_job)
        self.plan_label = QLabel("", objectName="planLabel")
        self.imatrix_label = QLabel("", objectName="imatrixLabel")
        self.imatrix_label.hide()
        sb.addPermanentWidget(self.imatrix_label)
        sb.addPermanentWidget(self.plan_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_btn)
        # The bar must not change height when the progress widgets appear: that would resize
        # the docks and replot every pyqtgraph panel just as a job starts.
        sb.setFixedHeight(max(sb.sizeHint().height(), self.progress.sizeHint().height(),
                              self.cancel_btn.sizeHint().height()) + 4)
        self.progress.hide()
        self.cancel_btn.hide()
        sb.showMessage("Open a model (Ctrl+O) or drop one on the window")

    def _action(self, text: str, slot: Callable, shortcut: Any = None, tip: str = "",
                name: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        if name:
            act.setObjectName(name)
        act.triggered.connect(lambda _checked=False: slot())
        self.addAction(act)
        return act

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey  # noqa: N806 (reads like the Qt docs)
        a = self._action
        self.act_open = a("&Open model…", self.open_dialog, K.Open, "Open a checkpoint",
                          "actOpen")
        self.act_open_folder = a("Open &folder…", self.open_folder_dialog, "Ctrl+Alt+O",
                                 "Open a Hugging Face folder (config.json and weights)",
                                 "actOpenFolder")
        self.act_open_demo = a("Open &demo model", self.open_demo, None,
                               "The small digits classifier shipped with qtstudio")
        self.act_open_recipe = a("Open &recipe…", self.open_recipe_dialog, "Ctrl+Shift+O",
                                 "Load rules, overrides and preset from a JSON recipe")
        self.act_save_recipe = a("&Save recipe", self.save_recipe, K.Save,
                                 "Save the recipe as JSON", "actSaveRecipe")
        self.act_save_recipe_as = a("Save recipe &as…", self.save_recipe_as, K.SaveAs)
        self.act_load_imatrix = a("Load &importance matrix…", self.load_imatrix_dialog, None,
                                  "A llama.cpp imatrix (.gguf or .dat) for quantize, optimize "
                                  "and GGUF export", "actLoadImatrix")
        self.act_export = a("&Export…", self.export_dialog, "Ctrl+Shift+E",
                            "Write the quantized model as GGUF or NNEF", "actExport")
        self.act_quit = a("&Quit", self.close, K.Quit)
        self.act_undo = self.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(K.Undo)
        self.act_redo = self.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcut(K.Redo)
        self.act_find = a("&Find tensor", self._focus_filter, K.Find)
        self.act_select_all = a("Select &all", self.tree.selectAll, K.SelectAll)
        self.act_assign = a("&Assign encoding…", self.assign_dialog, "Ctrl+E",
                            "Give every selected tensor one encoding", "actAssign")
        self.act_clear = a("&Clear overrides", lambda: self.assign_to_selection(None),
                           K.Delete, "Selected tensors go back to what the rules and preset say")
        self.act_add_rule = a("Add rule from &filter", self.rule_from_filter, "Ctrl+Shift+R",
                              "A rule whose pattern is the filter text")
        self.act_quantize = a("&Quantize with metrics", self.run_quantize, "Ctrl+R",
                              "Quantize every tensor in memory and measure its error",
                              "actQuantize")
        self.act_quantize_gptq = a("Quantize with &GPTQ…", self.gptq_quantize_dialog, None,
                                   "Quantize with GPTQ's error compensation on calibration "
                                   "text, and measure", "actQuantizeGptq")
        self.act_cluster = a("C&luster…", self.cluster_dialog, None,
                             "Run quantize, optimize, what-if and export on a Ray cluster",
                             "actCluster")
        self.act_bench = a("&Benchmark layers", self.run_benchmark, "Ctrl+B",
                           "Time each selected layer (all when nothing is selected)")
        self.act_whatif = a("&What-if for selection", self.run_whatif, "Ctrl+W",
                            "Error of every candidate encoding for the selected tensors")
        self.act_whatif_output = a("What-if with &output error", lambda: self.run_whatif(
            output=True), "Ctrl+Shift+W", "Also each selected tensor's block output error and "
            "output KL alone at every candidate, on the calibration file (File ▸ Calibration "
            "file…; the default corpus when none)", "actWhatifOutput")
        self.act_optimize = a("&Optimize…", self.optimize_dialog, "Ctrl+Shift+T",
                              "Choose each tensor's encoding for the least error within a "
                              "target size", "actOptimize")
        self.act_compare = a("Com&pare presets and plans…", self.compare_dialog, "Ctrl+Shift+P",
                             "Size against error for presets and optimized mixes, before "
                             "quantizing; saved as a report", "actCompare")
        self.act_eval = a("E&valuate demo accuracy", self.run_evaluate, "Ctrl+Shift+V",
                          "Accuracy of the demo model before and after quantization")
        self.act_cancel = a("&Cancel job", self.cancel_job, "Esc")
        # Keys that text fields use too (Delete, Ctrl+A) act only when the tree has the focus,
        # so they still edit text in the filter box.
        for act in (self.act_select_all, self.act_clear):
            self.removeAction(act)
            self.tree.addAction(act)
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.act_import_lines = a("&Import --tensor-type lines…", self.import_tensor_type_lines,
                                  None, "Rules from llama-quantize --tensor-type REGEX=TYPE lines")
        self.act_copy_lines = a("Copy as --tensor-type &lines", self.copy_tensor_type_lines, None,
                                "The plan's rules and overrides as llama-quantize arguments")
        self.act_expand = a("E&xpand all", self.tree.expandAll, "Ctrl+Shift+Right")
        self.act_collapse = a("C&ollapse all", self.tree.collapseAll, "Ctrl+Shift+Left")

        mb = self.menuBar()
        self.recent_menu = QMenu("Open &recent", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        _add_menu(mb, "&File",
                  [self.act_open, self.act_open_folder, self.act_open_demo, self.recent_menu],
                  [self.act_open_recipe, self.act_save_recipe, self.act_save_recipe_as],
                  [self.act_load_imatrix], [self.act_export], [self.act_quit])
        _add_menu(mb, "&Edit", [self.act_undo, self.act_redo],
                  [self.act_find, self.act_select_all, self.act_assign, self.act_clear,
                   self.act_add_rule],
                  [self.act_import_lines, self.act_copy_lines])

        self.preset_menu = mb.addMenu("&Presets")
        self.preset_menu.aboutToShow.connect(self._fill_presets)
        self._fill_presets()

        _add_menu(mb, "&Run",
                  [self.act_quantize, self.act_quantize_gptq, self.act_optimize,
                   self.act_compare, self.act_bench,
                   self.act_whatif, self.act_whatif_output, self.act_eval],
                  [self.act_cluster], [self.act_cancel])
        _add_menu(mb, "&View", [self.act_expand, self.act_collapse],
                  [self.plan_dock.toggleViewAction(), self.analysis_dock.toggleViewAction()])
        _add_menu(mb, "&Help",
                  [a("&Getting started", self.help_dialog, "F1",
                     "The workflow, the documentation and the shortcuts", "actHelp")],
                  [a("&About qtstudio", self._about)])

        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.addActions([self.act_open, self.act_save_recipe])
        tb.addSeparator()
        # fixed labels: the stack's actions say "Undo Set x to Q8_0" and would make every
        # button after them jump at each edit; the tooltip carries the full text
        self.tb_undo = a("Undo", self.undo_stack.undo, None, "", "tbUndo")
        self.tb_redo = a("Redo", self.undo_stack.redo, None, "", "tbRedo")
        self.undo_stack.undoTextChanged.connect(
            lambda t: self.tb_undo.setToolTip(f"Undo {t}" if t else "Nothing to undo"))
        self.undo_stack.redoTextChanged.connect(
            lambda t: self.tb_redo.setToolTip(f"Redo {t}" if t else "Nothing to redo"))
        self.undo_stack.canUndoChanged.connect(self.tb_undo.setEnabled)
        self.undo_stack.canRedoChanged.connect(self.tb_redo.setEnabled)
        self.tb_undo.setEnabled(False)
        self.tb_redo.setEnabled(False)
        tb.addActions([self.tb_undo, self.tb_redo])
        tb.addSeparator()
        tb.addActions([self.act_quantize, self.act_optimize, self.act_bench, self.act_whatif,
                       self.act_export])

    # ================================================================ opening ===============
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", self._last_dir(), MODEL_FILTER)
        if path:
            self.open_model(model_path_for(path))

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open Hugging Face folder",
                                                self._last_dir())
        if path:
            self.open_model(path)

    def compare_dialog(self) -> None:
        from .compare_dialog import CompareDialog

        if self.doc is None:
            return
        self.compare_dlg = CompareDialog(self)
        self.compare_dlg.show()

    def help_dialog(self) -> None:
        from .help_dialog import HelpDialog

        self.help_dlg = HelpDialog(self)
        self.help_dlg.show()

    def open_demo(self, recipe_path: str | Path | None = None, *, showcase: bool = False) -> bool:
        """Open the shipped digits model. ``showcase`` (the app started with no model): start
        from the Q4_0 preset, quantize and evaluate right away, so a new user sees the whole
        workflow (it takes a second on this 50k-parameter model)."""
        from qtstudio.core.demo import demo_model_path

        ok = self.open_model(demo_model_path(), recipe_path=recipe_path, remember=False)
        self._is_demo = ok
        self._update_enabled()
        if ok and showcase:
            assert self.doc is not None
            if recipe_path is None:
                from qtstudio.core.recipe import Recipe

                self.doc.set_recipe(Recipe(preset="Q4_0"))  # the starting point, not an edit
            self._then_evaluate = True
            self.run_quantize()
        return ok

    def open_model(self, path: str | Path, recipe_path: str | Path | None = None, *,
                   remember: bool = True) -> bool:
        """Open a checkpoint (headers only); the previous one closes. False on a bad file."""
        from qtstudio.formats import open_model

        if self.worker is not None:
            self.statusBar().showMessage("Wait for the running job to finish, or cancel it",
                                         6000)
            return False
        from .unsaved import may_discard

        path = Path(path)
        if not may_discard(self, f"open {path.name}"):
            return False
        self.statusBar().showMessage(f"Opening {path}…")
        try:
            model = open_model(path)
            recipe = None
            if recipe_path is not None:
                from qtstudio.core.recipe import Recipe

                recipe = Recipe.load(recipe_path)
            doc = PlanDocument(model, recipe, Path(recipe_path) if recipe_path else None,
                               has_imatrix=self.imatrix is not None)
        except Exception as exc:  # every reader problem is reported, never a crash
            self.show_error(f"Cannot open {path}", exc)
            return False
        self._set_document(doc)
        self._is_demo = False
        self.statusBar().clearMessage()
        if remember:
            self._remember(path)
        self.statusBar().showMessage(
            f"Opened {path.name}: {len(model.tensors)} tensors, "
            f"{human_bytes(model.total_bytes)}", 8000)
        return True

    def _set_document(self, doc: PlanDocument | None) -> None:
        old = self.doc
        if self.tree_model is not None:
            self.tree_model.detach()
        self.undo_stack.clear()
        self.doc = doc
        if doc is None:
            self.proxy.setSourceModel(None)
            self.tree_model = None
        else:
            self.tree_model = LayerTreeModel(doc, self)
            self.tree_model.assign_requested.connect(self.assign)
            self.tree_model.refreshed.connect(self.tree.viewport().update)
            self.proxy.setSourceModel(self.tree_model)
            doc.subscribe(self._on_doc)
            self._size_columns()
        self.tree.selectionModel().selectionChanged.connect(self._on_selection)
        self.summary.set_document(doc)
        self.rules.set_document(doc)
        self.analysis.set_document(doc)
        if old is not None and old is not doc:
            old.model.close()
        self._apply_filter()
        if doc is not None and len(doc.model.tensors) <= 2000 and not self.filter_edit.text():
            self.tree.expandToDepth(1)
        self._update_enabled()
        self._update_title()
        self._update_plan_label()
        self.hint.refresh(doc)

    def _size_columns(self) -> None:
        from .tree_columns import size_columns

        assert self.doc is not None
        size_columns(self.tree, show_gguf=any(t.gguf_name for t in self.doc.model.tensors))

    def _on_doc(self, what: str) -> None:
        self._update_plan_label()
        self._update_title()
        if what == "plan":
            self.hint.refresh(self.doc)

    # ================================================================ editing ===============
    def push_recipe(self, after: dict, text: str) -> None:
        """Every plan edit goes through here, so every one of them can be undone."""
        if self.doc is None:
            return
        try:
            self.undo_stack.push(RecipeEdit(self.doc, after, text))
        except Exception as exc:  # a recipe the core refuses (bad pattern, unknown type)
            self.show_error(f"Cannot apply: {text}", exc)
            return
        self.statusBar().showMessage(text, 4000)

    def assign(self, names: list[str], encoding: str | None) -> None:
        """Give ``names`` the encoding (None: back to rules/preset), skipping shapes that
        cannot take it, in one undo step."""
        if self.doc is None or not names:
            return
        take = names
        skipped = 0
        if encoding is not None:
            take = [n for n in names if encoding in self.doc.candidates(n)]
            skipped = len(names) - len(take)
        if not take:
            self.statusBar().showMessage(
                f"None of the {plural(len(names), 'selected tensor')} can take {encoding}", 6000)
            return
        what = encoding or "plan default"
        label = take[0] if len(take) == 1 else f"{len(take)} tensors"
        self.push_recipe(self.doc.with_overrides(take, encoding), f"Set {label} to {what}")
        if skipped:
            self.statusBar().showMessage(
                f"Set {plural(len(take), 'tensor')} to {what}; {skipped} kept their type "
                f"(shape or role cannot take {encoding})", 8000)

    def selected_tensor_names(self) -> list[str]:
        """Tensors under the selected rows (a group row stands for everything below it)."""
        names: dict[str, None] = {}
        if self.proxy.pattern == "":  # no filter: a group is simply everything below it
            for idx in self.tree.selectionModel().selectedRows(0):
                node = idx.data(NodeRole)
                if node is not None:
                    names.update((t.name, None) for t in node.iter_tensors())
            return list(names)
        stack = list(reversed(self.tree.selectionModel().selectedRows(0)))
        while stack:  # through the proxy: a group stands for what the filter shows below it
            idx = stack.pop()
            node = idx.data(NodeRole)
            if node is None:
                continue
            if node.tensor is not None:
                names[node.tensor.name] = None
            stack.extend(self.proxy.index(r, 0, idx)
                         for r in reversed(range(self.proxy.rowCount(idx))))
        return list(names)

    def assign_to_selection(self, encoding: str | None) -> None:
        self.assign(self.selected_tensor_names(), encoding)

    def assign_dialog(self) -> None:
        names = self.selected_tensor_names()
        if self.doc is None or not names:
            self.statusBar().showMessage("Select tensors first", 4000)
            return
        options = self._candidates_for(names)
        if not options:
            return
        from .assign_choices import assign_choices

        items, default = assign_choices(self.doc, names, options)
        item, ok = QInputDialog.getItem(self, "Assign encoding",
                                        f"Encoding for {plural(len(names), 'tensor')}:", items,
                                        default, False)
        if ok and item:
            self.assign(names, item.split(" ", 1)[0])

    def _candidates_for(self, names: list[str]) -> list[tuple[str, int]]:
        """Encodings that at least one of ``names`` accepts, with how many accept it."""
        assert self.doc is not None
        counts: dict[str, int] = {}
        for n in names:
            for enc in self.doc.candidates(n):
                counts[enc] = counts.get(enc, 0) + 1
        return list(counts.items())

    def rule_from_filter(self) -> None:
        text = self.filter_edit.text().strip()
        if self.doc is None:
            return
        import re

        pattern = text if self.regex_box.isChecked() else re.escape(text) if text else ""
        self.rules.add_rule(pattern)

    def import_tensor_type_lines(self, text: str | None = None) -> bool:
        """Replace the rules by llama-quantize ``--tensor-type`` lines (they match GGUF names)."""
        from qtstudio.core.recipe import Recipe

        if self.doc is None:
            return False
        if text is None:
            text, ok = QInputDialog.getMultiLineText(
                self, "Import --tensor-type lines",
                "One REGEX=TYPE per line (GGUF tensor names, first match wins):")
            if not ok:
                return False
        try:
            rules = Recipe.from_tensor_type_lines(text.splitlines()).rules
        except ValueError as exc:
            self.show_error("Cannot import --tensor-type lines", exc)
            return False
        self.push_recipe(self.doc.with_rules(rules), f"Import {len(rules)} --tensor-type rule(s)")
        return True

    def copy_tensor_type_lines(self) -> str | None:
        if self.doc is None:
            return None
        try:
            lines = self.doc.recipe.to_tensor_type_lines(self.doc.model)
        except ValueError as exc:
            self.show_error("Cannot express this recipe as --tensor-type lines", exc)
            return None
        text = " ".join(f"--tensor-type {line}" for line in lines)
        _copy(text)
        self.statusBar().showMessage(f"Copied {len(lines)} --tensor-type argument(s)", 5000)
        return text

    def apply_preset(self, name: str | None) -> None:
        if self.doc is not None:
            self.push_recipe(self.doc.with_fields(preset=name), f"Preset {name or 'none'}")

    def _fill_presets(self) -> None:
        from qtstudio.core.presets import PRESETS

        self.preset_menu.clear()
        # one of many: radio items in an exclusive group, not independent checkboxes
        self.preset_group = group = QActionGroup(self.preset_menu)
        group.setExclusive(True)
        current = self.doc.recipe.preset if self.doc else None
        act = self.preset_menu.addAction("(no preset)")
        group.addAction(act)
        act.setCheckable(True)
        act.setChecked(current is None)
        act.triggered.connect(lambda _c=False: self.apply_preset(None))
        self.preset_menu.addSeparator()
        for name, preset in PRESETS.items():
            act = self.preset_menu.addAction(name)
            group.addAction(act)
            act.setStatusTip(f"{name}: {preset.description}")
            act.setToolTip(preset.description)
            act.setCheckable(True)
            act.setChecked(name == current)
            act.setEnabled(self.doc is not None)
            act.triggered.connect(lambda _c=False, n=name: self.apply_preset(n))

    def _tree_menu(self, pos) -> None:
        if self.doc is None:
            return
        names = self.selected_tensor_names()
        menu = QMenu(self)
        if names:
            sub = menu.addMenu(f"Assign encoding to {plural(len(names), 'tensor')}")
            for enc, n in self._candidates_for(names):
                label = enc if n == len(names) else f"{enc}  ({n} of {len(names)} can)"
                act = sub.addAction(label)
                act.setObjectName(f"assign_{enc}")
                act.triggered.connect(lambda _c=False, e=enc: self.assign(names, e))
            menu.addAction(self.act_clear)
            menu.addSeparator()
            menu.addAction(self.act_whatif)
            menu.addAction(self.act_whatif_output)
            menu.addAction(self.act_bench)
            menu.addAction("Copy names", lambda: _copy("\n".join(names)))
            menu.addSeparator()
        menu.addActions([self.act_expand, self.act_collapse])
        self.context_menu = menu  # tests reach the menu through this
        menu.popup(self.tree.viewport().mapToGlobal(pos))

    # ================================================================ filtering / selection ==
    def _focus_filter(self) -> None:
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def _apply_filter(self) -> None:
        text = self.filter_edit.text()
        cleared = bool(self.proxy.pattern) and not text and self.doc is not None
        keep = self.selected_tensor_names() if cleared else []
        current = self.tree.currentIndex().data(PathRole) if cleared else None
        problem = self.proxy.set_pattern(text, regex=self.regex_box.isChecked())
        if cleared:
            self._restore_view(keep, current)
        self.filter_edit.setStyleSheet("QLineEdit { border: 1px solid #d04040; }"
                                       if problem else "")
        self.filter_edit.setToolTip(problem or "")
        if problem:
            self.statusBar().showMessage(problem, 5000)
        if self.doc is None:
            self.match_label.setText("")
            return
        if text and not problem:
            self.match_label.setText(f"{self.proxy.matching_tensor_count()} match")
            if len(self.doc.model.tensors) <= 5000:
                self.tree.expandAll()
        else:
            self.match_label.setText(f"{len(self.doc.model.tensors)} tensors")

    def _restore_view(self, names: list[str], current: str | None) -> None:
        """After the filter is cleared: the usual expansion, and the selection the user had
        (revealed), instead of a collapsed tree with nothing selected."""
        assert self.doc is not None and self.tree_model is not None
        if len(self.doc.model.tensors) <= 2000:
            self.tree.expandToDepth(1)
        sm = self.tree.selectionModel()
        flags = sm.SelectionFlag.Select | sm.SelectionFlag.Rows
        for name in names[:5000]:
            idx = self.proxy.mapFromSource(self.tree_model.index_for_path(name))
            if not idx.isValid():
                continue
            sm.select(idx, flags)
            parent = idx.parent()
            while parent.isValid():
                self.tree.expand(parent)
                parent = parent.parent()
        if current:
            idx = self.proxy.mapFromSource(self.tree_model.index_for_path(current))
            if idx.isValid():
                sm.setCurrentIndex(idx, sm.SelectionFlag.NoUpdate)
                self.tree.scrollTo(idx)

    def _on_selection(self, *_args) -> None:
        names = self.selected_tensor_names()
        self.analysis.set_selection(names)
        if names and self.doc is not None:
            size = sum(self.doc.plan.entry(n).nbytes for n in names)
            self.statusBar().showMessage(
                f"{plural(len(names), 'tensor')} selected, {human_bytes(size)} planned", 4000)

    def select_tensor(self, name: str) -> None:
        """Select and reveal one tensor (from a plot click or the fallback list)."""
        if self.tree_model is None:
            return
        src = self.tree_model.index_for_path(name)
        if not src.isValid():
            return
        idx = self.proxy.mapFromSource(src)
        if not idx.isValid():  # filtered out: clear the filter so it can be shown
            self.filter_edit.clear()
            idx = self.proxy.mapFromSource(src)
        parent = idx.parent()
        while parent.isValid():
            self.tree.expand(parent)
            parent = parent.parent()
        self.tree.setCurrentIndex(idx)
        self.tree.selectionModel().select(
            idx, self.tree.selectionModel().SelectionFlag.ClearAndSelect
            | self.tree.selectionModel().SelectionFlag.Rows)
        self.tree.scrollTo(idx)

    # ================================================================ chrome ================
    def _update_enabled(self) -> None:
        has = self.doc is not None
        busy = self.worker is not None
        for act in (self.act_save_recipe, self.act_save_recipe_as, self.act_open_recipe,
                    self.act_assign, self.act_clear, self.act_add_rule, self.act_import_lines,
                    self.act_copy_lines):
            act.setEnabled(has)
        for act in (self.act_quantize, self.act_quantize_gptq, self.act_optimize,
                    self.act_bench, self.act_whatif, self.act_whatif_output, self.act_export,
                    self.act_compare):
            act.setEnabled(has and not busy)
        self.act_eval.setEnabled(has and not busy and self._is_demo)
        self.act_open.setEnabled(not busy)
        self.act_cancel.setEnabled(busy)

    def _on_clean_changed(self, _clean: bool) -> None:
        # also fires while Qt tears the window down, after the stack's C++ side is gone
        with contextlib.suppress(RuntimeError):
            self._update_title()

    def _update_title(self) -> None:
        if self.doc is None:
            self.setWindowTitle("qtstudio")
            return
        name = self.doc.model.path.name
        recipe = self.doc.recipe_path.name if self.doc.recipe_path else "unsaved recipe"
        dirty = "" if self.undo_stack.isClean() else " *"
        self.setWindowTitle(f"{name} — {recipe}{dirty} — qtstudio")

    def _update_plan_label(self) -> None:
        if self.doc is None:
            self.plan_label.setText("")
            return
        p = self.doc.plan
        self.plan_label.setText(f"{human_bytes(p.original_bytes)} → {human_bytes(p.total_bytes)}"
                                f" · {p.avg_bpw:.2f} bpw · "
                                f"{plural(len(list(p.fallbacks)), 'fallback')}")

    def _about(self) -> None:
        import qtstudio

        QMessageBox.about(self, "About qtstudio",
                          f"qtstudio {qtstudio.__version__}\nMixed-precision model quantization "
                          "studio: per-tensor encodings, native SIMD codecs, GGUF and NNEF export.")

    def changeEvent(self, event) -> None:
        # The system switched between light and dark: plots follow the new palette.
        from PySide6.QtCore import QEvent

        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.analysis.apply_palette()
        super().changeEvent(event)

    def _restore_layout(self) -> None:
        s = self._settings()
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self._layout_restored = geometry is not None or state is not None

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not getattr(self, "_docks_fitted", False):
            self._docks_fitted = True
            if not self._layout_restored:
                self._fit_docks()

    def closeEvent(self, event) -> None:
        from .unsaved import may_discard

        if not may_discard(self, "quit"):
            event.ignore()
            return
        s = self._settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        if self.worker is not None:
            self.worker.cancel()
            job_pool().waitForDone(10000)
        if self.doc is not None:
            self.doc.model.close()
        super().closeEvent(event)

    def wait_idle(self, timeout_ms: int = 60000) -> bool:
        """Run the event loop until no job runs (for scripts); False on timeout."""
        from PySide6.QtCore import QEventLoop

        if self.worker is None:
            return True
        loop = QEventLoop()
        self.worker.finished.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()
        return self.worker is None


def _copy(text: str) -> None:
    from PySide6.QtWidgets import QApplication

    QApplication.clipboard().setText(text)
