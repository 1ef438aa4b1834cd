"""Add rule: a rule is typed and checked here, with the tensors it would match counted live, and
reaches the plan only on OK (one undoable edit). An invalid pattern keeps the typed text and says
what is wrong with it as typed (no doubled backslashes)."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from qtstudio.core.encodings import encodings
from qtstudio.core.recipe import Rule

from .dialog_parts import body_layout, ok_cancel_buttons


def rule_problem(pattern: str, syntax: str) -> str | None:
    """Why ``pattern`` cannot be a rule, in the user's own characters; None when it can."""
    if not pattern:
        return "the pattern is empty"
    if syntax == "regex":
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"{pattern} is not a valid regular expression: {exc}"
    return None


def count_matches(model: Any, pattern: str, syntax: str, target: str) -> int:
    if rule_problem(pattern, syntax):
        return 0
    n = 0
    for t in model.tensors:
        text = t.gguf_name if target == "gguf_name" else t.name
        if text is None:
            continue
        hit = fnmatch.fnmatchcase(text, pattern) if syntax == "glob" \
            else re.search(pattern, text) is not None
        n += hit
    return n


class AddRuleDialog(QDialog):
    def __init__(self, model: Any, pattern: str = "", encoding: str = "Q8_0",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add rule")
        self.setObjectName("addRuleDialog")
        self._model = model
        self.pattern = QLineEdit(pattern, objectName="rulePattern")
        self.pattern.setPlaceholderText(r"e.g. attn_v\.weight$ or mlp\.down_proj")
        self.syntax = QComboBox(objectName="ruleSyntax")
        self.syntax.addItems(["regex", "glob"])
        self.target = QComboBox(objectName="ruleTarget")
        self.target.addItem("tensor name", "name")
        self.target.addItem("GGUF name (llama.cpp --tensor-type)", "gguf_name")
        self.encoding = QComboBox(objectName="ruleEncoding")
        for e in encodings():
            self.encoding.addItem(f"{e.name}  ({e.bpw:.2f} bpw)", e.name)
        self.encoding.setCurrentIndex(max(self.encoding.findData(encoding), 0))
        self.status = QLabel("", objectName="ruleStatus")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Pattern", self.pattern)
        form.addRow("Syntax", self.syntax)
        form.addRow("Matches", self.target)
        form.addRow("Encoding", self.encoding)
        self.buttons = ok_cancel_buttons(self)
        body_layout(self, form, self.status, self.buttons)
        for sig in (self.pattern.textChanged, self.syntax.currentTextChanged,
                    self.target.currentTextChanged):
            sig.connect(lambda *_a: self._check())
        self.resize(480, 200)
        self._check()

    def _check(self) -> None:
        problem = rule_problem(self.pattern.text(), self.syntax.currentText())
        ok_btn = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok_btn.setEnabled(problem is None)
        if problem:
            self.status.setStyleSheet("color: #c03030;")
            self.status.setText(problem)
            return
        n = count_matches(self._model, self.pattern.text(), self.syntax.currentText(),
                          self.target.currentData())
        self.status.setStyleSheet("")
        self.status.setText(f"matches {n} tensor{'' if n == 1 else 's'} (float-only tensors "
                            "keep their float type)" if n else
                            "matches no tensor yet: check the pattern and what it matches")

    def rule(self) -> Rule:
        return Rule(self.pattern.text(), self.encoding.currentData(),
                    syntax=self.syntax.currentText(), target=self.target.currentData())


