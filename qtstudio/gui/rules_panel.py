"""The rules panel: preset, float type, and the ordered list of rules (first match wins)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qtstudio.core.encodings import encodings
from qtstudio.core.recipe import RecipeError, Rule

from .document import FLOAT_ENCODINGS, PlanDocument
from .plan_view import FollowsPlan

RULE_COLUMNS = ("pattern", "syntax", "target", "encoding", "matches")
NO_PRESET = "(none)"


class RulesPanel(FollowsPlan, QWidget):
    #: a full edited recipe (dict) and a description; the window makes it an undoable command
    edit_requested = Signal(dict, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._doc: PlanDocument | None = None
        self._updating = False

        self.preset = QComboBox(objectName="presetCombo")
        self.float_type = QComboBox(objectName="floatCombo")
        self.float_type.addItems(list(FLOAT_ENCODINGS))
        self.float_type.setToolTip("what tensors that stay float are stored as")
        form = QFormLayout()
        form.addRow("Preset", self.preset)
        form.addRow("Float tensors", self.float_type)
        self.default_type = QComboBox(objectName="defaultCombo")
        self.default_type.setToolTip("encoding for quantizable tensors that no preset, rule or "
                                     "override covers")
        form.addRow("Otherwise", self.default_type)

        self.table = QTableWidget(0, len(RULE_COLUMNS), objectName="rulesTable")
        self.table.setHorizontalHeaderLabels(list(RULE_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(True)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(RULE_COLUMNS)):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(60)
        self.table.setToolTip("Rules apply in order; the first that matches a tensor decides. "
                              "Per-tensor choices in the tree override every rule.")

        self.add_btn = QPushButton("Add", objectName="addRule")
        self.remove_btn = QPushButton("Remove", objectName="removeRule")
        self.up_btn = QPushButton("Up", objectName="ruleUp")
        self.down_btn = QPushButton("Down", objectName="ruleDown")
        buttons = QHBoxLayout()
        for b in (self.add_btn, self.remove_btn, self.up_btn, self.down_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)

        self.add_btn.clicked.connect(self.add_rule)
        self.remove_btn.clicked.connect(self.remove_rule)
        self.up_btn.clicked.connect(lambda: self.move_rule(-1))
        self.down_btn.clicked.connect(lambda: self.move_rule(1))
        self.table.itemChanged.connect(self._on_item_changed)
        self.preset.activated.connect(self._on_preset)
        self.float_type.activated.connect(self._on_float)
        self.default_type.activated.connect(self._on_default)
        self.setEnabled(False)

    # ---- binding ---------------------------------------------------------------------------
    def set_document(self, doc: PlanDocument | None) -> None:
        self.setEnabled(doc is not None)
        super().set_document(doc)

    def refresh(self) -> None:
        doc = self._doc
        if doc is None:
            return
        from qtstudio.core.presets import PRESETS

        self._updating = True
        try:
            self.preset.clear()
            self.preset.addItem(NO_PRESET, None)
            for name in PRESETS:
                self.preset.addItem(name, name)
            self.preset.setCurrentIndex(max(self.preset.findData(doc.recipe.preset), 0))
            self.float_type.setCurrentText(doc.recipe.float_encoding or "F32")
            self.default_type.clear()
            self.default_type.addItem("stay float", None)
            for e in encodings():
                if e.name not in FLOAT_ENCODINGS:
                    self.default_type.addItem(e.name, e.name)
            self.default_type.setCurrentIndex(
                max(self.default_type.findData(doc.recipe.default_encoding), 0))
            rules = list(doc.recipe.rules)
            sel = self.table.currentRow()
            self.table.setRowCount(len(rules))
            counts = self._match_counts(rules)
            for row, rule in enumerate(rules):
                self._fill_row(row, rule, counts[row])
            if 0 <= sel < len(rules):
                self.table.selectRow(sel)
        finally:
            self._updating = False

    def _match_counts(self, rules: list[Rule]) -> list[int]:
        """How many tensors each rule decides (first match wins, overrides excepted)."""
        counts = [0] * len(rules)
        doc = self._doc
        if doc is None or not rules:
            return counts
        overrides = doc.recipe.overrides or {}
        for t in doc.model.tensors:
            if t.name in overrides:
                continue
            for i, rule in enumerate(rules):
                if rule.matches(t):
                    counts[i] += 1
                    break
        return counts

    def _fill_row(self, row: int, rule: Rule, count: int) -> None:
        item = QTableWidgetItem(rule.pattern)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        self.table.setItem(row, 0, item)
        for col, values, current in (
            (1, ["regex", "glob"], rule.syntax),
            (2, ["name", "gguf_name"], rule.target),
            (3, [e.name for e in encodings()], rule.encoding),
        ):
            combo = QComboBox()
            combo.addItems(values)
            combo.setCurrentText(current)
            combo.activated.connect(lambda _i, r=row: self._emit_rules(f"Edit rule {r + 1}"))
            self.table.setCellWidget(row, col, combo)
        hits = QTableWidgetItem(str(count))
        hits.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        hits.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.table.setItem(row, 4, hits)

    # ---- reading the table -------------------------------------------------------------------
    def rules_from_table(self) -> list[Rule]:
        rules = []
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            pattern = item.text() if item else ""
            syntax = self.table.cellWidget(row, 1).currentText()
            target = self.table.cellWidget(row, 2).currentText()
            enc = self.table.cellWidget(row, 3).currentText()
            rules.append(Rule(pattern, enc, syntax=syntax, target=target))
        return rules

    def _emit_rules(self, text: str, rules: list[Rule] | None = None) -> None:
        if self._updating or self._doc is None:
            return
        if rules is None:
            from .rule_dialog import rule_problem

            for row in range(self.table.rowCount()):  # a pattern typed into the table
                item = self.table.item(row, 0)
                problem = rule_problem(item.text() if item else "",
                                       self.table.cellWidget(row, 1).currentText())
                if problem:
                    # keep the typed text to fix it; the plan keeps the last valid rules
                    self._mark(row, f"Rule {row + 1}: {problem}")
                    return
        try:
            rules = self.rules_from_table() if rules is None else rules
        except RecipeError as exc:
            self.window().statusBar().showMessage(str(exc), 8000)
            self.refresh()
            return
        self.edit_requested.emit(self._doc.with_rules(rules), text)

    def _mark(self, row: int, problem: str) -> None:
        from PySide6.QtGui import QBrush, QColor

        self._updating = True
        try:
            item = self.table.item(row, 0)
            item.setBackground(QBrush(QColor(240, 120, 120, 90)))
            item.setToolTip(problem)
        finally:
            self._updating = False
        self.problem = problem
        self.window().statusBar().showMessage(problem, 10000)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if not self._updating and item.column() == 0:
            self._emit_rules(f"Edit rule {item.row() + 1}")

    def add_rule(self, pattern: str = "", encoding: str = "Q8_0") -> bool:
        """Ask for the rule first (pattern, syntax, target, encoding, live match count); the
        plan changes only when the user confirms."""
        if self._doc is None:
            return False
        from .rule_dialog import AddRuleDialog

        rules = list(self._doc.recipe.rules)
        sel = self.table.currentRow()
        if not pattern and 0 <= sel < len(rules):
            pattern = rules[sel].pattern
        dlg = AddRuleDialog(self._doc.model, pattern, encoding, self)
        self.add_dialog = dlg  # tests fill it in through this
        if not self.run_dialog(dlg):
            return False
        rules.append(dlg.rule())
        self._emit_rules("Add rule", rules)
        self.table.selectRow(len(rules) - 1)
        return True

    def run_dialog(self, dlg) -> bool:
        """Modal; tests replace it to fill the dialog in and accept it."""
        return bool(dlg.exec())

    def remove_rule(self) -> None:
        if self._doc is None:
            return
        row = self.table.currentRow()
        rules = list(self._doc.recipe.rules)
        if 0 <= row < len(rules):
            del rules[row]
            self._emit_rules(f"Remove rule {row + 1}", rules)

    def move_rule(self, step: int) -> None:
        if self._doc is None:
            return
        row = self.table.currentRow()
        rules = list(self._doc.recipe.rules)
        dest = row + step
        if 0 <= row < len(rules) and 0 <= dest < len(rules):
            rules[row], rules[dest] = rules[dest], rules[row]
            self._emit_rules(f"Move rule {row + 1} {'up' if step < 0 else 'down'}", rules)
            self.table.selectRow(dest)

    def _on_preset(self, _index: int) -> None:
        name = self.preset.currentData()
        self._edit_field("preset", name, f"Preset {name or 'none'}")

    def _on_float(self, _index: int) -> None:
        name = self.float_type.currentText()
        self._edit_field("float_encoding", name, f"Float tensors {name}")

    def _on_default(self, _index: int) -> None:
        name = self.default_type.currentData()
        self._edit_field("default_encoding", name, f"Other tensors {name or 'stay float'}")

    def _edit_field(self, field: str, value: str | None, text: str) -> None:
        """A combo's choice as one undoable edit (``text``) of the recipe's ``field``; none while
        the panel fills its combos or when the choice is the recipe's already."""
        if self._doc is None or self._updating:
            return
        if value != getattr(self._doc.recipe, field):
            self.edit_requested.emit(self._doc.with_fields(**{field: value}), text)
