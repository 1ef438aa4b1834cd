"""The export dialog: GGUF for any model, NNEF (tract) for models the app can rebuild in torch
(the demo and Hugging Face folders; the NNEF entry is disabled, with the reason, for the rest).

The writing itself is a job from qtstudio.export, run in the window's worker so progress, cancel
and errors behave as for quantizing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .document import PlanDocument
from .nnef_support import nnef_problem

GGUF = "GGUF (llama.cpp)"
NNEF = "NNEF (tract)"


class ExportDialog(QDialog):
    def __init__(self, window: Any, doc: PlanDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent or window)
        self.setWindowTitle("Export quantized model")
        self.setObjectName("exportDialog")
        self._window = window
        self._doc = doc
        self.format = QComboBox(objectName="exportFormat")
        self.format.addItem(GGUF)
        self.format.addItem(NNEF)
        #: why NNEF cannot be written for this model (None: it can)
        self.nnef_problem = nnef_problem(doc.model.path)
        self.nnef_note = QLabel("", objectName="nnefNote")
        self.nnef_note.setWordWrap(True)
        if self.nnef_problem:
            item = self.format.model().item(1)  # a QStandardItemModel behind the combo
            item.setEnabled(False)
            item.setToolTip(self.nnef_problem)
            self.nnef_note.setText(f"NNEF unavailable: {self.nnef_problem}")
        else:
            self.nnef_note.hide()
        self.path = QLineEdit(objectName="exportPath")
        browse = QPushButton("Browse…", objectName="exportBrowse")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        src = doc.model.path
        folder = src if src.is_dir() else src.parent
        # a Hugging Face folder's files are all called model*: name the output after the folder
        hf = (folder / "config.json").is_file() and (src.is_dir() or src.name.startswith("model"))
        stem = folder.name if hf else src.stem.replace(".safetensors", "")
        preset = (doc.recipe.preset or "mixed").lower()
        self.path.setText(str(folder / f"{stem}-{preset}.gguf"))
        self.format.currentTextChanged.connect(self._format_changed)
        plan = doc.plan
        info = QLabel(f"{len(plan.entries)} tensors, {plan.avg_bpw:.2f} bpw average, "
                      f"{len(plan.fallbacks)} fallback(s). The file appears only when the "
                      "export completes; cancelling leaves nothing behind.")
        info.setWordWrap(True)
        # NNEF only: the graph's fixed token count (Hugging Face models) and the Q4_0 scales
        from qtstudio.export.nnef.sources import DEFAULT_SEQ_LEN, _is_demo

        self.seq_len = QSpinBox(objectName="nnefSeqLen")
        self.seq_len.setRange(1, 8192)
        self.seq_len.setValue(DEFAULT_SEQ_LEN)
        self.seq_len.setToolTip("NNEF shapes are fixed: the exported graph takes exactly this "
                                "many tokens")
        self.calibration = QComboBox(objectName="nnefCalibration")
        self.calibration.addItem("minmax (ggml's reference Q4_0)", "minmax")
        self.calibration.addItem("mse (grid search for each block's scale)", "mse")
        form = QFormLayout()
        self._form = form
        form.addRow("Format", self.format)
        form.addRow("File", row)
        form.addRow("Sequence length", self.seq_len)
        form.addRow("Q4_0 scales", self.calibration)
        self._takes_tokens = not _is_demo(doc.model.path)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_btn = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_btn.setObjectName("exportButton")
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(info)
        lay.addWidget(self.nnef_note)
        lay.addWidget(buttons)
        self.resize(620, 200)
        self._show_nnef_options(False)

    def _show_nnef_options(self, nnef: bool) -> None:
        self._form.setRowVisible(self.seq_len, nnef and self._takes_tokens)
        self._form.setRowVisible(self.calibration, nnef)

    def _format_changed(self, fmt: str) -> None:
        p = Path(self.path.text())
        stem = p.name.removesuffix(".gguf").removesuffix(".nnef.tgz")
        self.path.setText(str(p.with_name(stem + (".nnef.tgz" if fmt == NNEF else ".gguf"))))
        self._show_nnef_options(fmt == NNEF)

    def browse(self) -> None:
        nnef = self.format.currentText() == NNEF
        flt = "NNEF archive (*.nnef.tgz);;All files (*)" if nnef else \
            "GGUF (*.gguf);;All files (*)"
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), flt)
        if path:
            self.path.setText(path)

    def start(self) -> None:
        text = self.path.text().strip()
        if not text:
            self._window.statusBar().showMessage("Choose where to write the file", 5000)
            return
        out = Path(text)
        from .process_job import process_factory

        doc = self._doc
        imatrix = getattr(self._window, "imatrix", None)
        if self.format.currentText() == NNEF:
            if self.nnef_problem:  # the entry is disabled; this guards programmatic use
                self._window.show_error("NNEF export unavailable", self.nnef_problem)
                return
            factory = process_factory("qtstudio.gui.nnef_support:checkpoint_nnef_job",
                                      doc.model.path, doc.recipe, out,
                                      has_imatrix=imatrix is not None,
                                      seq_len=self.seq_len.value(),
                                      calibration=self.calibration.currentData())
        else:
            factory = process_factory("qtstudio.export.gguf:export_gguf_job", doc.model.path,
                                      doc.plan, out, imatrix=imatrix,
                                      **self._window._cluster())

        if self._window.start_job("Export", factory, self._done) is not None:
            self.accept()

    def _done(self, report: Any) -> None:
        path = getattr(report, "path", None)
        warnings = list(getattr(report, "warnings", []) or [])
        written = getattr(report, "bytes_written", 0)
        from .format import human_bytes

        msg = f"Exported {path}" + (f" ({human_bytes(written)})" if written else "")
        if warnings:
            msg += " — " + "; ".join(warnings)
        self._window.last_export = report
        self._window.statusBar().showMessage(msg, 12000)
