"""Run ▸ Quantize with GPTQ…: GPTQ's parameters, then the quantize run measures the plan with
GPTQ's bytes for the block linears (``qtstudio-cli quantize --method gptq``)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from .dialog_parts import WindowDialog
from .export_dialog import GPTQBox
from .gptq_support import gptq_problem


class GPTQQuantizeDialog(WindowDialog):
    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(window, "Quantize with GPTQ", "gptqQuantizeDialog", parent)
        self.gptq = GPTQBox(getattr(window, "calibration_file", None))
        self.gptq.show_hf(False)
        #: why GPTQ cannot run on the open model (None: it can)
        self.problem = gptq_problem(window.doc.model)
        self.status = QLabel(f"GPTQ unavailable: {self.problem}" if self.problem else
                             "Each block linear is rounded with GPTQ's error compensation on "
                             "the calibration text; the tree and plots then show its errors.",
                             objectName="gptqQuantizeStatus")
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.run_btn = buttons.addButton("Quantize", QDialogButtonBox.ButtonRole.AcceptRole)
        self.run_btn.setObjectName("gptqQuantizeButton")
        self.run_btn.setEnabled(self.problem is None)
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.gptq)
        lay.addWidget(self.status)
        lay.addWidget(buttons)

    def start(self) -> None:
        problem = self.problem or self.gptq.problem()
        if problem:
            self.status.setText(problem)
            self.status.setStyleSheet("color: #c03030;")
            return
        if self._window.run_quantize(gptq=self.gptq.settings()) is not None:
            self.accept()
