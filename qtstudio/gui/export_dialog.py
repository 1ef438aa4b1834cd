"""The export dialog: GGUF for any model, NNEF (tract) for models the app can rebuild in torch
(the demo and Hugging Face folders; the NNEF entry is disabled, with the reason, for the rest),
and a Hugging Face GPTQ checkpoint folder. GGUF takes a method: plain rounding, or GPTQ
(error-compensating, on calibration text; the same job as ``export --method gptq``), with GPTQ's
parameters in their own group.

The writing itself is a job from qtstudio.export, run in the window's worker so progress, cancel
and errors behave as for quantizing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .dialog_parts import WindowDialog
from .document import PlanDocument
from .nnef_support import nnef_problem

#: the GGUF string keys offered by name; anything else goes in the key/value table
NAMED_KEYS = (("general.name", "Name"), ("general.author", "Author"),
              ("general.license", "License"), ("general.description", "Description"))

GGUF = "GGUF (llama.cpp)"


class MetadataEditor(QGroupBox):
    """GGUF metadata written with the file: name, author, license, description, and any other
    string key (general.url, general.version ...) in a key/value table."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__("GGUF metadata", parent)
        self.setObjectName("exportMetadata")
        self.fields: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for key, label in NAMED_KEYS:
            edit = QLineEdit(objectName=f"meta_{key.split('.')[-1]}")
            edit.setPlaceholderText(f"{key} (left out when empty)")
            self.fields[key] = edit
            form.addRow(label, edit)
        self.fields["general.name"].setText(name)
        self.fields["general.license"].setPlaceholderText("e.g. apache-2.0, mit, llama3")
        self.table = QTableWidget(0, 2, objectName="metaTable")
        self.table.setHorizontalHeaderLabels(["key", "value"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().resizeSection(0, 200)
        self.table.verticalHeader().setVisible(False)
        add = QPushButton("Add key", objectName="metaAdd")
        remove = QPushButton("Remove key", objectName="metaRemove")
        add.clicked.connect(lambda: self.add_row("", ""))
        remove.clicked.connect(lambda: self.table.removeRow(self.table.currentRow()))
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        self.status = QLabel("", objectName="metaStatus")
        self.status.setStyleSheet("color: #c03030;")
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QLabel("Other string keys:"))
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.status)

    def fill_from(self, source: dict) -> None:
        """A GGUF source's own string keys (author, license, url ...), to keep or edit; the
        name stays the new one (it names the mix)."""
        for key, value in source.items():
            if not isinstance(value, str) or not key.startswith("general.") or \
                    key in ("general.name", "general.architecture", "general.type"):
                continue
            if key in self.fields:
                self.fields[key].setText(value)
            else:
                self.add_row(key, value)

    def add_row(self, key: str, value: str) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(key))
        self.table.setItem(row, 1, QTableWidgetItem(value))

    def values(self) -> dict[str, str]:
        out = {k: e.text().strip() for k, e in self.fields.items() if e.text().strip()}
        for row in range(self.table.rowCount()):
            k = self.table.item(row, 0)
            v = self.table.item(row, 1)
            key = k.text().strip() if k else ""
            if key:
                out[key] = v.text() if v else ""
        return out

    def problem(self) -> str | None:
        import re

        for key in self.values():
            if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)+", key):
                return f"metadata key {key}: use dotted words, e.g. general.url"
            if key in ("general.architecture", "general.file_type", "general.alignment") or \
                    key.startswith("tokenizer."):
                return f"metadata key {key} is written by the exporter itself"
        return None
NNEF = "NNEF (tract)"
HF_GPTQ = "Hugging Face GPTQ folder"
PLAIN, GPTQ = "plain", "gptq"


class GPTQBox(QGroupBox):
    """GPTQ's parameters (the CLI's defaults): calibration text, windows, dampening, lazy-batch
    size, act order; bits / group size / symmetry for the Hugging Face checkpoint."""

    def __init__(self, calibration_file: str | None, parent: QWidget | None = None) -> None:
        super().__init__("GPTQ", parent)
        self.setObjectName("gptqBox")
        self.data = QLineEdit(calibration_file or "", objectName="gptqData")
        self.data.setPlaceholderText("UTF-8 calibration text (File ▸ Calibration file… sets it)")
        browse = QPushButton("Browse…", objectName="gptqBrowse")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.data, 1)
        row.addWidget(browse)
        self.ctx = QSpinBox(objectName="gptqCtx")
        self.ctx.setRange(2, 32768)
        self.ctx.setValue(512)
        self.ctx.setToolTip("tokens per calibration window (capped by the model)")
        self.windows = QSpinBox(objectName="gptqWindows")
        self.windows.setRange(1, 4096)
        self.windows.setValue(64)
        self.damp = QDoubleSpinBox(objectName="gptqDamp")
        self.damp.setDecimals(4)
        self.damp.setRange(0.0001, 0.99)
        self.damp.setSingleStep(0.005)
        self.damp.setValue(0.01)
        self.damp.setToolTip("fraction of the mean Hessian diagonal added to it")
        self.block_size = QSpinBox(objectName="gptqBlockSize")
        self.block_size.setRange(1, 65536)
        self.block_size.setValue(128)
        self.block_size.setToolTip("columns per lazy-update batch")
        self.desc_act = QCheckBox("act order (columns by decreasing activation energy)",
                                  objectName="gptqDescAct")
        self.bits = QComboBox(objectName="gptqBits")
        for b in (2, 4, 8):
            self.bits.addItem(f"{b}-bit", b)
        self.bits.setCurrentIndex(1)
        self.group_size = QSpinBox(objectName="gptqGroupSize")
        self.group_size.setRange(-1, 65536)
        self.group_size.setValue(128)
        self.group_size.setSpecialValueText("-1 (one group per row)")
        self.group_size.setMinimum(-1)
        self.sym = QCheckBox("symmetric grid (no zero point)", objectName="gptqSym")
        self.sym.setChecked(True)
        form = QFormLayout(self)
        self._form = form
        form.addRow("Calibration text", row)
        form.addRow("Window tokens", self.ctx)
        form.addRow("Windows at most", self.windows)
        form.addRow("Dampening", self.damp)
        form.addRow("Block size", self.block_size)
        form.addRow("", self.desc_act)
        form.addRow("Bits", self.bits)
        form.addRow("Group size", self.group_size)
        form.addRow("", self.sym)

    def show_hf(self, hf: bool) -> None:
        for w in (self.bits, self.group_size, self.sym):
            self._form.setRowVisible(w, hf)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Calibration text", self.data.text(),
                                              "Text (*.txt);;All files (*)")
        if path:
            self.data.setText(path)

    def problem(self) -> str | None:
        text = self.data.text().strip()
        if not text:
            return "GPTQ needs calibration text: choose a file"
        if not Path(text).is_file():
            return f"{text}: no such calibration file"
        if self.group_size.value() == 0:
            return "group size: a positive number of columns, or -1 for one group per row"
        return None

    def settings(self):
        from .gptq_support import GPTQSettings

        return GPTQSettings(data=self.data.text().strip(), ctx=self.ctx.value(),
                            windows=self.windows.value(), damp=self.damp.value(),
                            block_size=self.block_size.value(),
                            desc_act=self.desc_act.isChecked())


class ExportDialog(WindowDialog):
    def __init__(self, window: Any, doc: PlanDocument, parent: QWidget | None = None) -> None:
        super().__init__(window, "Export quantized model", "exportDialog", parent)
        self._doc = doc
        self.format = QComboBox(objectName="exportFormat")
        self.format.addItem(GGUF)
        self.format.addItem(NNEF)
        self.format.addItem(HF_GPTQ)
        self.method = QComboBox(objectName="exportMethod")
        self.method.addItem("Plain rounding", PLAIN)
        self.method.addItem("GPTQ (error-compensating, on calibration text)", GPTQ)
        self.method.setToolTip("GPTQ writes the same types at the same size, with lower output "
                               "error; it runs the model over the calibration text")
        self.gptq = GPTQBox(getattr(window, "calibration_file", None))
        from .gptq_support import gptq_problem

        #: why GPTQ cannot run on this model (None: it can)
        self.gptq_problem = gptq_problem(doc.model)
        if self.gptq_problem:
            for combo, row in ((self.method, 1), (self.format, 2)):
                item = combo.model().item(row)
                item.setEnabled(False)
                item.setToolTip(f"GPTQ unavailable: {self.gptq_problem}")
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
        from .export_names import default_export_path, mix_name, model_name

        settings = window._settings() if hasattr(window, "_settings") else None
        self.path.setText(str(default_export_path(doc, ".gguf", settings)))
        self.metadata = MetadataEditor(f"{model_name(doc)}-{mix_name(doc)}")
        self.metadata.fill_from(getattr(doc.model, "metadata", None) or {})
        self.format.currentTextChanged.connect(self._format_changed)
        plan = doc.plan
        from .format import plural

        info = QLabel(f"{len(plan.entries)} tensors, {plan.avg_bpw:.2f} bpw average, "
                      f"{plural(len(plan.fallbacks), 'fallback')}. The file appears only when the "
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
        form.addRow("Method", self.method)
        form.addRow("File", row)
        form.addRow("Sequence length", self.seq_len)
        form.addRow("Q4_0 scales", self.calibration)
        self._takes_tokens = not _is_demo(doc.model.path)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_btn = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_btn.setObjectName("exportButton")
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        self.status = QLabel("", objectName="exportStatus")
        self.status.setStyleSheet("color: #c03030;")
        self.status.setWordWrap(True)
        self.method.currentIndexChanged.connect(lambda _i: self._show_options())
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.gptq)
        lay.addWidget(self.metadata, 1)
        lay.addWidget(info)
        lay.addWidget(self.nnef_note)
        lay.addWidget(self.status)
        lay.addWidget(buttons)
        self.resize(640, 560)
        self._show_options()

    def uses_gptq(self) -> bool:
        fmt = self.format.currentText()
        return fmt == HF_GPTQ or (fmt == GGUF and self.method.currentData() == GPTQ)

    def _show_options(self) -> None:
        fmt = self.format.currentText()
        nnef = fmt == NNEF
        self._form.setRowVisible(self.seq_len, nnef and self._takes_tokens)
        self._form.setRowVisible(self.calibration, nnef)
        self._form.setRowVisible(self.method, fmt == GGUF)
        self.metadata.setVisible(fmt == GGUF)
        self.gptq.setVisible(self.uses_gptq())
        self.gptq.show_hf(fmt == HF_GPTQ)

    def _format_changed(self, fmt: str) -> None:
        p = Path(self.path.text())
        stem = p.name.removesuffix(".gguf").removesuffix(".nnef.tgz").removesuffix("-gptq")
        suffix = {NNEF: ".nnef.tgz", HF_GPTQ: "-gptq"}.get(fmt, ".gguf")
        self.path.setText(str(p.with_name(stem + suffix)))
        self._show_options()

    def browse(self) -> None:
        fmt = self.format.currentText()
        if fmt == HF_GPTQ:  # a folder that does not exist yet: ask for its name
            path, _ = QFileDialog.getSaveFileName(self, "Checkpoint folder to create",
                                                  self.path.text(), "Folder (*)")
        else:
            flt = "NNEF archive (*.nnef.tgz);;All files (*)" if fmt == NNEF else \
                "GGUF (*.gguf);;All files (*)"
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), flt)
        if path:
            self.path.setText(path)

    def _refuse(self, problem: str) -> None:
        self.status.setText(problem)
        self._window.statusBar().showMessage(problem, 8000)

    def start(self) -> None:
        text = self.path.text().strip()
        if not text:
            self._window.statusBar().showMessage("Choose where to write the file", 5000)
            return
        out = Path(text)
        fmt = self.format.currentText()
        problem = self.metadata.problem()
        if problem and fmt == GGUF:
            self._window.statusBar().showMessage(problem, 8000)
            self.metadata.status.setText(problem)
            return
        if self.uses_gptq():
            problem = (f"GPTQ unavailable: {self.gptq_problem}" if self.gptq_problem
                       else self.gptq.problem())
            if problem is None and fmt == HF_GPTQ and out.exists():
                problem = f"{out}: already exists; choose a new folder for the checkpoint"
            if problem:
                self._refuse(problem)
                return
        try:
            out.parent.mkdir(parents=True, exist_ok=True)  # the default user folder may be new
        except OSError as exc:
            self._window.show_error(f"Cannot create {out.parent}", exc)
            return
        if hasattr(self._window, "_settings"):
            self._window._settings().setValue("export/lastDir", str(out.parent))
        from .process_job import process_factory

        doc = self._doc
        imatrix = getattr(self._window, "imatrix", None)
        if fmt == HF_GPTQ:
            g = self.gptq
            factory = process_factory("qtstudio.gui.gptq_support:hf_gptq_job", doc.model.path,
                                      out, g.settings(), bits=g.bits.currentData(),
                                      group_size=g.group_size.value(),
                                      sym=g.sym.isChecked())
        elif self.uses_gptq():  # GPTQ measures its own Hessians: no importance matrix
            factory = process_factory("qtstudio.gui.gptq_support:gptq_gguf_job",
                                      doc.model.path, doc.plan, out, self.gptq.settings(),
                                      metadata=self.metadata.values())
        elif fmt == NNEF:
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
                                      metadata=self.metadata.values(),
                                      **self._window._cluster())

        if self._window.start_job("Export", factory, self._done) is not None:
            self.accept()

    def _done(self, report: Any) -> None:
        path = getattr(report, "path", None)
        warnings = list(getattr(report, "warnings", []) or [])
        written = getattr(report, "bytes_written", 0)
        from qtstudio.core.human_numbers import human_bytes

        msg = f"Exported {path}" + (f" ({human_bytes(written)})" if written else "")
        if warnings:
            msg += " — " + "; ".join(warnings)
        self._window.last_export = report
        self._window.statusBar().showMessage(msg, 12000)
