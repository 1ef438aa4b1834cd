"""The first-step hint above the tree: shown while the plan keeps every tensor float, so a model
that opens at 32 bpw says what to do next instead of leaving it to the status bar."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from .document import FLOAT_ENCODINGS


def plan_is_unquantized(doc: Any) -> bool:
    return doc is not None and all(e.encoding in FLOAT_ENCODINGS for e in doc.plan.entries)


class HintBar(QFrame):
    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent, objectName="hintBar")
        self._window = window
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel("", objectName="hintText")
        self.label.setWordWrap(True)
        self.preset_btn = QPushButton("Use Q4_K_M", objectName="hintPreset")
        self.preset_btn.setToolTip("llama.cpp's usual 4-bit mix; any preset is in the Presets "
                                   "menu and the Plan panel")
        self.optimize_btn = QPushButton("Optimize…", objectName="hintOptimize")
        self.optimize_btn.setToolTip("Choose each tensor's encoding for the least error within "
                                     "a target size")
        self.preset_btn.clicked.connect(lambda: window.apply_preset("Q4_K_M"))
        self.optimize_btn.clicked.connect(window.optimize_dialog)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.preset_btn)
        lay.addWidget(self.optimize_btn)
        self.hide()

    def refresh(self, doc: Any) -> None:
        if not plan_is_unquantized(doc):
            self.hide()
            return
        from qtstudio.core.presets import PRESETS

        self.preset_btn.setVisible("Q4_K_M" in PRESETS and any(
            t.quantizable for t in doc.model.tensors))
        self.label.setText(
            f"Every tensor stays float ({doc.plan.avg_bpw:.0f} bits per weight). Choose a "
            "preset, or let Optimize pick a mix for a target size. Help ▸ Getting started "
            "(F1) shows the whole workflow.")
        self.show()
