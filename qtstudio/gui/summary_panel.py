"""The summary: sizes before and after, average bpw, memory estimate, and every fallback."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qtstudio.core.human_numbers import human_bytes, human_count

from .document import PlanDocument
from .format import plural
from .plan_view import FollowsPlan


class SummaryPanel(FollowsPlan, QWidget):
    #: a tensor name the user picked in the fallback list
    tensor_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._doc: PlanDocument | None = None
        self.labels: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, title in (("model", "Model"), ("params", "Parameters"),
                           ("before", "Size before"), ("after", "Size after"),
                           ("ratio", "Compression"), ("bpw", "Average bpw"),
                           ("memory", "Memory estimate"), ("encodings", "Encodings"),
                           ("fallbacks", "Fallbacks"), ("optimizer", "Optimizer"),
                           ("eval", "Evaluated KL")):
            lab = QLabel("–", objectName=f"summary_{key}")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            self.labels[key] = lab
            form.addRow(title, lab)
        self.labels["memory"].setToolTip(
            "runtime estimate M ≈ P × Q / 8 × 1.2 (parameters × average bits, plus 20% for "
            "activations and runtime buffers), next to the exact bytes of the weights")

        self.fallbacks = QTableWidget(0, 4, objectName="fallbackTable")
        self.fallbacks.setHorizontalHeaderLabels(["tensor", "asked", "got", "why"])
        self.fallbacks.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.fallbacks.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.fallbacks.verticalHeader().setVisible(False)
        self.fallbacks.verticalHeader().setDefaultSectionSize(22)
        hh = self.fallbacks.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        # reasons are sentences: wrap them and show several rows, not two clipped ones
        self.fallbacks.setWordWrap(True)
        self.fallbacks.setMinimumHeight(140)
        self.fallbacks.cellDoubleClicked.connect(
            lambda r, _c: self.tensor_activated.emit(self.fallbacks.item(r, 0).text()))

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QLabel("Tensors that could not take their type:"))
        lay.addWidget(self.fallbacks, 1)

    def refresh(self) -> None:
        doc = self._doc
        if doc is None:
            for lab in self.labels.values():
                lab.setText("–")
            self.fallbacks.setRowCount(0)
            return
        plan, model = doc.plan, doc.model
        before, after = plan.original_bytes, plan.total_bytes
        self.labels["model"].setText(f"{model.path.name} ({model.format}, "
                                     f"{len(model.tensors)} tensors)")
        self.labels["params"].setText(human_count(model.total_params))
        self.labels["before"].setText(f"{human_bytes(before)}  ({before:,} B)")
        self.labels["after"].setText(f"{human_bytes(after)}  ({after:,} B)")
        self.labels["ratio"].setText(f"{before / after:.2f}×" if after else "–")
        self.labels["bpw"].setText(f"{plan.avg_bpw:.3f}")
        self.labels["memory"].setText(
            f"≈ {human_bytes(plan.memory_estimate_bytes)} at run time "
            f"(weights exactly {human_bytes(after)})")
        counts: dict[str, int] = {}
        for e in plan.entries:
            counts[e.encoding] = counts.get(e.encoding, 0) + 1
        self.labels["encodings"].setText(
            ", ".join(f"{k} × {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
        opt = doc.optimize_summary
        if opt is None:
            self.labels["optimizer"].setText("not run (Run ▸ Optimize…)")
        elif opt.applied_to(doc.recipe):
            self.labels["optimizer"].setText(opt.summary_text())
            self.labels["optimizer"].setToolTip(opt.uniform_text())
        else:
            self.labels["optimizer"].setText(
                f"the plan is no longer the last run's answer (undone or edited; it reached "
                f"{opt.avg_bpw:.3f} bpw for a {opt.target_bpw:.3f} bpw target)")
        self.labels["eval"].setText(_eval_text(doc))
        fb = list(plan.fallbacks)
        self.labels["fallbacks"].setText(
            plural(len(fb), "tensor") if fb else "none: every tensor got what it asked for")
        self.fallbacks.setRowCount(len(fb))
        for row, e in enumerate(fb):
            for col, text in enumerate((e.name, e.fallback_from or "", e.encoding,
                                        e.reason or "")):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.fallbacks.setItem(row, col, item)
        self.fallbacks.resizeRowsToContents()


def _eval_text(doc: PlanDocument) -> str:
    """The last Run ▸ Evaluate plan KL beside the size it was measured at; stale once edited."""
    ev = getattr(doc, "last_eval", None)
    if not ev:
        return "not run (Run ▸ Evaluate plan)"
    what = "cosine" if ev.get("kind") == "encoder" else "KL"
    text = f"{what} {ev['kl_mean']:.4g} at {human_bytes(ev['nbytes'])}"
    if ev["recipe"] != doc.recipe_snapshot():
        return text + " (stale: the plan changed since; evaluate again)"
    return text
