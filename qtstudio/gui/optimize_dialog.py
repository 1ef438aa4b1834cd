"""The Optimize dialog: a size target, the candidate encodings and the error to minimise.

The floor (every tensor at its smallest candidate) comes from the optimizer's cost table, which
reads no weights, so it is shown while the user picks candidates and an impossible target is
refused here, with the optimizer's own message, before any job starts. The measuring and solving
run in the window's background job (see ``MainWindow.run_optimize``).

The method (plain rounding or GPTQ) goes with the kl objective only: GPTQ's sensitivities and the
eval check need calibration activations, so it is offered once a calibration file is chosen
(File ▸ Calibration file…), and the result's recipe records it for export.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qtstudio.core.encodings import encodings
from qtstudio.core.human_numbers import human_bytes
from qtstudio.core.optimize import (
    DEFAULT_CANDIDATES,
    budget_for_bpw,
    cost_table,
)
from qtstudio.core.recipe import QuantMethod

from .dialog_parts import WindowDialog, action_buttons, body_layout
from .document import FLOAT_ENCODINGS, PlanDocument
from .format import SIZE_UNITS

#: target units: label -> bytes per unit (None: bits per weight); binary, as every size the
#: window shows
UNITS: dict[str, float | None] = {"bits per weight": None, **SIZE_UNITS}


class ReachableSizes:
    """Floor and ceiling of the optimizer's sizes for any set of candidates.

    Each candidate's per-tensor bytes come from the optimizer's own cost table (plan logic,
    fallbacks included), computed once per candidate: resolving the plan for every candidate
    set the user clicks through would take about a second each on a 10,000-tensor model.
    """

    def __init__(self, model: Any, float_encoding: str) -> None:
        self._model = model
        self._float = float_encoding
        self._bytes: dict[str, np.ndarray] = {}
        self.fixed = 0
        self.source = str(model.path)

    def _of(self, candidate: str) -> np.ndarray:
        if candidate not in self._bytes:
            table = cost_table(self._model, [candidate], float_encoding=self._float)
            self.fixed = table.fixed_bytes
            self._bytes[candidate] = np.array([t.options[0].nbytes for t in table.tensors],
                                              dtype=np.int64)
        return self._bytes[candidate]

    def range(self, candidates: list[str]) -> tuple[int, int]:
        """(floor, ceiling) in bytes: every tensor at its smallest / largest candidate."""
        stack = np.stack([self._of(c) for c in candidates])
        return (self.fixed + int(stack.min(axis=0).sum()),
                self.fixed + int(stack.max(axis=0).sum()))


class OptimizeDialog(WindowDialog):
    def __init__(self, window: Any, doc: PlanDocument, parent: QWidget | None = None) -> None:
        super().__init__(window, "Optimize bit allocation", "optimizeDialog", parent)
        self._doc = doc
        self._sizes = ReachableSizes(doc.model, doc.recipe.float_encoding)
        #: (floor, ceiling) bytes for the checked candidates; None when they cannot be used
        self._range: tuple[int, int] | None = None

        self.value = QDoubleSpinBox(objectName="optimizeTarget")
        self.value.setDecimals(3)
        self.value.setRange(0.001, 1e6)
        self.unit = QComboBox(objectName="optimizeUnit")
        self.unit.addItems(list(UNITS))
        target_row = QHBoxLayout()
        target_row.addWidget(self.value, 1)
        target_row.addWidget(self.unit)

        self.candidates = QListWidget(objectName="optimizeCandidates")
        shapes = [t.shape for t in doc.model.tensors if t.quantizable]
        offered = [e for e in encodings() if e.name not in FLOAT_ENCODINGS
                   and any(e.accepts_shape(tuple(s)) for s in shapes)]
        quantizable = [t for t in doc.model.tensors if t.quantizable]
        for enc in sorted(offered, key=lambda e: (e.bpw, e.name)):
            # the bits this model's tensors would take, as the tree's editor shows per tensor
            # (per-row scales make INT8_PT_SYM more than its nominal 8.00 on narrow rows)
            fit = [t for t in quantizable if enc.accepts_shape(tuple(t.shape))]
            params = sum(t.params for t in fit)
            bits = 8.0 * sum(enc.nbytes(tuple(t.shape)) for t in fit) / params if params \
                else enc.bpw
            item = QListWidgetItem(f"{enc.name}  ({bits:.2f} bpw)")
            item.setToolTip(f"{enc.name}: {bits:.3f} bits per weight on this model's "
                            f"{len(fit)} tensors that take it ({enc.bpw:.3f} per block)")
            item.setData(Qt.ItemDataRole.UserRole, enc.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if enc.name in DEFAULT_CANDIDATES
                               else Qt.CheckState.Unchecked)
            self.candidates.addItem(item)
        self.candidates.setMinimumHeight(160)

        self.objective = QComboBox(objectName="optimizeObjective")
        self.objective.addItem("mse: sum of squared errors", "mse")
        self.objective.addItem("imatrix: errors weighted by column importance", "imatrix")
        self.objective.addItem("kl: measured output KL on the calibration text, checked by a "
                               "real eval", "kl")
        imatrix = getattr(window, "imatrix", None)
        if imatrix is None:
            item = self.objective.model().item(1)
            item.setEnabled(False)
            item.setToolTip("Load an importance matrix first (File ▸ Load importance matrix)")
        else:
            self.objective.setCurrentIndex(1)

        self.method = QComboBox(objectName="optimizeMethod")
        self.method.addItem("plain rounding", "plain")
        self.method.addItem("GPTQ: error-compensating, on the calibration text", "gptq")
        self.desc_act = QCheckBox("act order (columns by decreasing activation energy)",
                                  objectName="optimizeDescAct")
        method_row = QVBoxLayout()
        method_row.addWidget(self.method)
        method_row.addWidget(self.desc_act)

        self.floor = QLabel("", objectName="optimizeFloor")
        self.floor.setWordWrap(True)
        self.problem = QLabel("", objectName="optimizeProblem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #c03030;")
        self.problem.hide()

        heading = QLabel("Choose each tensor's encoding for the least total error within the "
                         "target size. The result replaces the per-tensor overrides in one "
                         "undoable step.")
        heading.setWordWrap(True)
        form = QFormLayout()
        form.addRow(heading)
        form.addRow("Target", target_row)
        form.addRow("Candidates", self.candidates)
        form.addRow("Objective", self.objective)
        form.addRow("Method", method_row)
        form.addRow("Reachable", self.floor)
        buttons, self.run_btn = action_buttons(self, "Optimize", "optimizeButton", self.start)
        body_layout(self, form, self.problem, buttons)
        self.resize(520, 440)

        self._last_unit = self.unit.currentText()
        self.candidates.itemChanged.connect(lambda _i: self.refresh_floor())
        self.unit.currentTextChanged.connect(self._unit_changed)
        self.value.valueChanged.connect(lambda _v: self.problem.hide())
        self.objective.currentIndexChanged.connect(lambda _i: self.refresh_method())
        self.method.currentIndexChanged.connect(lambda _i: self.refresh_method())
        self.refresh_floor()
        self.refresh_method()
        # Start from the current plan's size when the candidates can reach it, else 4.5 bpw
        # (a common mid-size choice), kept inside what they can reach.
        start = doc.plan.avg_bpw
        if self._range is not None:
            lo, hi = (self._bpw(b) for b in self._range)
            if not lo <= start <= hi:
                start = min(max(4.5, lo), hi)
        self.value.setValue(math.ceil(start * 1000) / 1000)

    # ---- values ------------------------------------------------------------------------------
    def checked_candidates(self) -> list[str]:
        out = []
        for i in range(self.candidates.count()):
            item = self.candidates.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return out

    def set_candidates(self, names: list[str]) -> None:
        want = {n.upper() for n in names}
        for i in range(self.candidates.count()):
            item = self.candidates.item(i)
            item.setCheckState(Qt.CheckState.Checked
                               if item.data(Qt.ItemDataRole.UserRole) in want
                               else Qt.CheckState.Unchecked)

    def set_target(self, value: float, unit: str = "bits per weight") -> None:
        self.unit.setCurrentText(unit)
        self.value.setValue(value)

    def _bpw(self, nbytes: float) -> float:
        params = self._doc.model.total_params
        return 8.0 * nbytes / params if params else 0.0

    def budget(self) -> int:
        """The target in bytes, as the optimizer counts it."""
        per = UNITS[self.unit.currentText()]
        if per is None:
            return budget_for_bpw(self.value.value(), self._doc.model.total_params)
        return int(self.value.value() * per)

    def target_kwargs(self) -> dict[str, Any]:
        if UNITS[self.unit.currentText()] is None:
            return {"target_bpw": self.value.value()}
        return {"target_bytes": self.budget()}

    def _unit_changed(self, unit: str) -> None:
        """Keep the same size when the unit changes (4.5 bpw becomes its MiB)."""
        before, after = UNITS[self._last_unit], UNITS[unit]
        params = self._doc.model.total_params
        nbytes = (self.value.value() * params / 8.0 if before is None
                  else self.value.value() * before)
        self.value.setValue(nbytes * 8.0 / params if after is None else nbytes / after)
        self._last_unit = unit

    # ---- method ------------------------------------------------------------------------------
    def _calibration_file(self) -> str | None:
        path = getattr(self._window, "calibration_file", None)
        return None if path is None else str(path)

    def refresh_method(self) -> None:
        """GPTQ only with the kl objective and a calibration file; act order only with GPTQ."""
        gptq = self.method.model().item(1)
        if self.objective.currentData() != "kl":
            gptq.setEnabled(False)
            gptq.setToolTip("GPTQ goes with the kl objective (mse and imatrix measure plain "
                            "rounding's weight error)")
        elif self._calibration_file() is None:
            gptq.setEnabled(False)
            gptq.setToolTip("Choose a calibration file first (File ▸ Calibration file…): "
                            "GPTQ's Hessians come from it")
        else:
            gptq.setEnabled(True)
            gptq.setToolTip(f"GPTQ on {self._calibration_file()}: sensitivities and the eval "
                            "check use GPTQ bytes; the recipe records the method for export")
        if not gptq.isEnabled() and self.method.currentData() == "gptq":
            self.method.setCurrentIndex(0)
        self.desc_act.setEnabled(self.method.currentData() == "gptq")

    def quant_method(self) -> QuantMethod | None:
        """The chosen method for the optimizer (None: plain rounding)."""
        if self.method.currentData() != "gptq":
            return None
        return QuantMethod("gptq", desc_act=self.desc_act.isChecked(),
                           data=self._calibration_file())

    # ---- floor and checks ----------------------------------------------------------------------
    def refresh_floor(self) -> None:
        cands = self.checked_candidates()
        self.problem.hide()
        if not cands:
            self._range = None
            self.floor.setText("Check at least one candidate encoding.")
            self.run_btn.setEnabled(False)
            return
        try:
            self._range = self._sizes.range(cands)
        except Exception as exc:  # no quantizable tensors, an encoding the plan refuses
            self._range = None
            self.floor.setText(str(exc))
            self.run_btn.setEnabled(False)
            return
        lo, hi = self._range
        self.floor.setText(
            f"from {self._bpw(lo):.3f} bpw ({human_bytes(lo)}, every tensor at its smallest "
            f"candidate) to {self._bpw(hi):.3f} bpw ({human_bytes(hi)}); the plan now: "
            f"{self._doc.plan.avg_bpw:.3f} bpw")
        self.run_btn.setEnabled(True)

    def check(self) -> str | None:
        """The optimizer's refusal of the current target, or None when it can be reached."""
        if self._range is None:
            return self.floor.text()
        try:
            budget = self.budget()
        except ValueError as exc:
            return str(exc)
        lo = self._range[0]
        if budget < lo:
            return (f"The target {self._size_text(budget)} is below the smallest reachable "
                    f"size {self._size_text(lo)} (every tensor at its smallest checked "
                    "candidate): raise the target or check smaller encodings.")
        if budget > self._doc.plan.original_bytes:
            return (f"The target {self._size_text(budget)} is above the unquantized size "
                    f"{self._size_text(self._doc.plan.original_bytes)}: nothing to optimize; "
                    "lower the target.")
        return None

    def _size_text(self, nbytes: float) -> str:
        return f"{self._bpw(nbytes):.3f} bpw ({human_bytes(nbytes)})"

    def start(self) -> None:
        problem = self.check()
        if problem:
            self.problem.setText(problem)
            self.problem.show()
            self._window.statusBar().showMessage(problem, 8000)
            return
        quant = self.quant_method()
        extra = {} if quant is None else {"quant": quant}
        if self._window.run_optimize(candidates=self.checked_candidates(),
                                     objective=self.objective.currentData(),
                                     **extra, **self.target_kwargs()) is not None:
            self.accept()
