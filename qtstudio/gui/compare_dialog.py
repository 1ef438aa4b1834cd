"""Run ▸ Compare presets and plans: size against error for llama.cpp presets, optimized mixes and
the current plan, measured once before anything is quantized, shown as a table and a scatter
plot, saved as a report (Markdown or JSON). A preset row can be applied to the plan."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qtstudio.core.human_numbers import human_bytes

from .dialog_parts import WindowDialog
from .plots import LogAxis, free_anchor, set_empty

COLUMNS = ("plan", "kind", "size", "bpw", "relative error")
_KIND_COLOR = {"preset": "#1f77b4", "optimized": "#ff7f0e", "current": "#d62728"}


class CompareDialog(WindowDialog):
    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(window, "Compare presets and optimized plans", "compareDialog", parent)
        self.result: Any = None
        self.table = QTableWidget(0, len(COLUMNS), objectName="compareTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = pg.PlotWidget(axisItems={"left": LogAxis("left")})
        self.plot.setLogMode(x=False, y=True)
        self.plot.setTitle("Size against error")
        self.plot.setLabel("left", "relative RMS error")
        self.plot.setLabel("bottom", "bits per weight")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        set_empty(self.plot, True)
        self.points = pg.ScatterPlotItem(size=10)
        self.plot.addItem(self.points)
        self.labels: list[pg.TextItem] = []
        self.note = QLabel("Measures every quantizable tensor once under each encoding the "
                           "compared plans use (sampled rows for large tensors), then adds up "
                           "each plan's error. Nothing is written.", objectName="compareNote")
        self.note.setWordWrap(True)
        self.run_btn = QPushButton("Compare", objectName="compareRun")
        self.save_btn = QPushButton("Save report…", objectName="compareSave")
        self.apply_btn = QPushButton("Use this preset", objectName="compareApply")
        close = QPushButton("Close")
        self.run_btn.clicked.connect(self.start)
        self.save_btn.clicked.connect(self.save_dialog)
        self.apply_btn.clicked.connect(self.apply_selected)
        close.clicked.connect(self.reject)
        self.save_btn.setEnabled(False)
        self.apply_btn.setEnabled(False)
        self.table.itemSelectionChanged.connect(self._selection)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        split.setSizes([470, 430])
        buttons = QHBoxLayout()
        for b in (self.run_btn, self.apply_btn, self.save_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addWidget(self.note)
        lay.addLayout(buttons)
        self.resize(960, 480)

    def start(self):
        from .process_job import process_factory

        doc = self._window.doc
        if doc is None:
            return None
        factory = process_factory("qtstudio.jobs.compare:compare_job", doc.model.path,
                                  current=doc.recipe.to_dict(),
                                  has_imatrix=doc.has_imatrix)
        w = self._window.start_job("Compare plans", factory, self.show_result)
        if w is not None:
            self.run_btn.setEnabled(False)
            w.finished.connect(lambda: self.run_btn.setEnabled(True))
        return w

    def show_result(self, result: Any) -> None:
        self.result = result
        plans = result.plans
        self.table.setRowCount(len(plans))
        for r, p in enumerate(plans):
            err = "n/a" if math.isnan(p.rel_error) else f"{p.rel_error:.4g}"
            for c, text in enumerate((p.label, p.kind, human_bytes(p.nbytes),
                                      f"{p.bpw:.3f}", err)):
                item = QTableWidgetItem(text)
                item.setToolTip(", ".join(f"{k} × {v}" for k, v in p.encodings.items()))
                if c >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        for lab in self.labels:
            self.plot.removeItem(lab)
        self.labels = []
        shown = [p for p in plans if p.rel_error > 0 and not math.isnan(p.rel_error)]
        set_empty(self.plot, not shown)
        self.points.setData([{"pos": (p.bpw, math.log10(p.rel_error)), "data": p.label,
                              "brush": pg.mkBrush(_KIND_COLOR.get(p.kind, "#7f7f7f")),
                              "pen": None} for p in shown])
        if shown:
            xs = np.array([p.bpw for p in shown])
            ys = np.log10([p.rel_error for p in shown])
            x_span = float(xs.max() - xs.min()) + 1.8
            y_span = float(ys.max() - ys.min()) + 0.4
            px_w = max(self.plot.width() - 80, 200)
            px_h = max(self.plot.height() - 60, 120)
            taken: list[tuple[float, float, float, float]] = []
            for p in shown:  # each label where it covers no other label
                y = math.log10(p.rel_error)
                anchor = free_anchor(taken, p.bpw, y, 8.5 * len(p.label) / px_w * x_span,
                                     22.0 / px_h * y_span)
                if anchor is None:
                    continue
                lab = pg.TextItem(p.label, anchor=anchor,
                                  color=_KIND_COLOR.get(p.kind, "#7f7f7f"))
                lab.setPos(p.bpw, y)
                self.plot.addItem(lab)
                self.labels.append(lab)
            self.plot.setXRange(float(xs.min()) - 0.8, float(xs.max()) + 1.0, padding=0)
            self.plot.setYRange(float(ys.min()) - 0.2, float(ys.max()) + 0.2, padding=0)
        self.save_btn.setEnabled(True)
        self.note.setText(f"{len(plans)} plans compared in {result.elapsed:.1f} s. Blue: "
                          "presets, orange: optimized mixes, red: the current plan. Select a "
                          "preset row to use it; Run ▸ Optimize… applies a mix at any size.")

    def _selection(self) -> None:
        row = self.table.currentRow()
        ok = self.result is not None and 0 <= row < len(self.result.plans) and \
            self.result.plans[row].kind == "preset"
        self.apply_btn.setEnabled(ok)

    def apply_selected(self) -> None:
        row = self.table.currentRow()
        if self.result is not None and 0 <= row < len(self.result.plans):
            p = self.result.plans[row]
            if p.kind == "preset":
                self._window.apply_preset(p.label)

    def save_dialog(self) -> None:
        if self.result is None:
            return
        start = str(Path(self._window._last_dir()) / "plan-comparison.md")
        path, _ = QFileDialog.getSaveFileName(self, "Save comparison report", start,
                                              "Markdown (*.md);;JSON (*.json);;All files (*)")
        if path:
            self.save(path)

    def save(self, path: str | Path) -> bool:
        try:
            out = self.result.save(path)
        except Exception as exc:  # a folder that cannot be written, an input as the target
            self._window.show_error(f"Cannot save the report to {path}", exc)
            return False
        self._window.statusBar().showMessage(f"Saved the comparison to {out}", 6000)
        return True
