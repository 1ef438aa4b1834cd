"""The Sensitivity dock: what the outputs feel, measured on calibration data.

Top: sensitivity along depth, one line per candidate, from the last measurement (Run ▸ What-if
with output error, or Optimize with the kl objective). The embedding sits at depth -1, the head
at n_blocks; a block's point is the sum over its measured tensors of the KL each causes alone
with that candidate (the additive prediction the kl optimizer works with), on a log scale.

Bottom: the what-if for the selection, the same table ``qtstudio-cli whatif --data`` prints:
per encoding its bits per weight, parameter-weighted weight error, parameter-weighted relative
block output error and summed KL (qtstudio.jobs.whatif's whatif_curve and output_curve).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .plots import set_empty
from .theme import encoding_color

#: the what-if table's columns (the CLI's: encoding, bpw, rel err, out err, KL, tensors)
WHATIF_COLUMNS = ("encoding", "bpw", "weight error", "output error", "KL", "tensors")
EMPTY_TEXT = ("No measurement yet. Select tensors and use Run ▸ What-if with output error "
              "(File ▸ Calibration file… chooses the text), or Optimize with the kl objective.")


def depth_series(sens: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """candidate -> (depths, summed KL at each depth) from a SensitivityResult."""
    out: dict[str, dict[int, float]] = {}
    for t in sens.table.tensors:
        d = sens.depth.get(t.name)
        if d is None:
            continue
        for o in t.options:
            for cand in o.requested:
                row = out.setdefault(cand, {})
                row[d] = row.get(d, 0.0) + float(o.error)
    return {c: (np.array(sorted(v)), np.array([v[k] for k in sorted(v)]))
            for c, v in out.items()}


def cell(x: float | None) -> str:
    """An output error or KL as the CLI prints it (they span decades: e-notation)."""
    return "–" if x is None else f"{x:.3e}"


#: lines drawn at most; a what-if measures every encoding a tensor accepts (20+), which as
#: lines would hide each other: the optimizer's default ladder first, then by size
MAX_LINES = 8


def plotted(series: dict[str, Any]) -> list[str]:
    """The candidates drawn, fewest bits first (the legend then reads like the lines, top
    down). F32 is left out: it is the reference, its KL is 0."""
    from qtstudio.core.encodings import get_encoding
    from qtstudio.core.optimize import DEFAULT_CANDIDATES

    def bpw(name: str) -> float:
        try:
            return 8.0 * get_encoding(name).nbytes((256, 256)) / 65536
        except (ValueError, KeyError):
            return 0.0

    names = [c for c in series if c != "F32"]
    ladder = [c for c in names if c in DEFAULT_CANDIDATES]
    rest = sorted((c for c in names if c not in DEFAULT_CANDIDATES), key=bpw)
    keep = (ladder + rest)[:MAX_LINES]
    return sorted(keep, key=lambda c: (bpw(c), c))


class SensitivityPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(objectName="sensitivityPlot")
        self.plot.setLogMode(y=True)
        self.plot.setTitle("Sensitivity along depth")
        self.plot.setLabel("bottom", "depth: block index (-1 token embedding, last: output head)")
        self.plot.setLabel("left", "KL, each tensor alone (sum per block)")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        # four columns along the top, above the lines (headroom is added per measurement)
        self.legend = self.plot.addLegend(offset=(10, 5), colCount=4)
        self.note = QLabel(EMPTY_TEXT, objectName="sensitivityNote")
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(WHATIF_COLUMNS), objectName="whatifTable")
        self.table.setHorizontalHeaderLabels(list(WHATIF_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(
            self.table.fontMetrics().height() + 6)
        tips = {"weight error": "parameter-weighted relative RMS error of the weights",
                "output error": "parameter-weighted relative block output error, each tensor "
                                "alone at the encoding, on the calibration data",
                "KL": "sum of the output KLs each tensor causes alone (the additive "
                      "prediction for giving all of them the encoding)"}
        for i, name in enumerate(WHATIF_COLUMNS):
            if name in tips:
                self.table.horizontalHeaderItem(i).setToolTip(tips[name])
        self.table_title = QLabel("What-if for the selection: not computed yet",
                                  objectName="whatifTableTitle")
        lower = QWidget()
        low = QVBoxLayout(lower)
        low.setContentsMargins(0, 0, 0, 0)
        low.addWidget(self.table_title)
        low.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plot)
        split.addWidget(lower)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addWidget(self.note)
        self.series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        #: the candidates drawn as lines (at most MAX_LINES of the series)
        self.drawn: list[str] = []
        #: the table's rows as shown: encoding -> the cells' text
        self.rows: dict[str, list[str]] = {}
        set_empty(self.plot, True)

    def show_sensitivity(self, sens: Any) -> None:
        self.plot.clear()
        self.legend.clear()
        self.series = depth_series(sens)
        set_empty(self.plot, not self.series)
        if not self.series:
            self.note.setText(EMPTY_TEXT)
            return
        self.drawn = plotted(self.series)
        lo, hi = np.inf, -np.inf
        for cand in self.drawn:
            x, y = self.series[cand]
            # a lossless candidate can measure 0, which a log axis cannot show: floor it
            y = np.maximum(y, 1e-12)
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
            self.plot.plot(x, y, pen=pg.mkPen(encoding_color(cand), width=2), symbol="o",
                           symbolSize=6, symbolBrush=encoding_color(cand), name=cand)
        if self.drawn:  # room above the lines for the legend's rows
            rows = -(-len(self.drawn) // 4)
            span = max(np.log10(hi) - np.log10(lo), 1.0)
            self.plot.setYRange(np.log10(lo) - 0.05 * span,
                                np.log10(hi) + (0.12 + 0.1 * rows) * span, padding=0)
        depths = sorted({int(d) for x, _ in self.series.values() for d in x})
        self.plot.getAxis("bottom").setTicks([[(d, str(d)) for d in depths]])
        n = len(sens.table.tensors)
        data = getattr(sens, "data", "") or "the calibration data"
        method = getattr(sens, "method", "kl")
        more = len(self.series) - len(self.drawn)
        self.note.setText(f"{n} tensors measured ({method} method) on {data}; "
                          f"{len(getattr(sens, 'reused', []))} from the cache."
                          + (f" {more} more candidates measured, not drawn." if more > 0
                             else ""))

    def show_whatif(self, doc: Any, names: list[str]) -> None:
        """The selection's what-if table from the document's measurements."""
        from qtstudio.jobs.whatif import output_curve, whatif_curve

        encs: dict[str, None] = {}
        for n in names:
            for e in doc.candidates(n):
                encs[e] = None
        m = doc.measurements
        curve = whatif_curve(m.errors, names, doc.model, encs)
        out = output_curve(m.output, names, doc.model, encs)
        self.rows = {}
        for enc, bpw, rel, n in curve:
            o = out.get(enc, {})
            self.rows[enc] = [enc, f"{bpw:.3f}", f"{rel:.5f}", cell(o.get("out_err")),
                              cell(o.get("kl")), f"{n}/{len(names)}"]
        self.table.setRowCount(len(self.rows))
        for r, cells in enumerate(self.rows.values()):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        where = f" (output error on {m.output_source})" if out else \
            " (no output error: use Run ▸ What-if with output error)"
        self.table_title.setText(f"What-if for {len(names)} selected tensors{where}")
