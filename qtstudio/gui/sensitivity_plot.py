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


def _bits_order(series: dict[str, Any]) -> list[str]:
    """Candidates from most to fewest bits (the legend then reads top to bottom like the lines)."""
    from qtstudio.core.encodings import get_encoding

    def bpw(name: str) -> float:
        try:
            enc = get_encoding(name)
            return 8.0 * enc.nbytes((256, 256)) / 65536
        except (ValueError, KeyError):
            return 0.0

    return sorted(series, key=lambda c: (-bpw(c), c))


class SensitivityPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(objectName="sensitivityPlot")
        self.plot.setLogMode(y=True)
        self.plot.setTitle("Sensitivity along depth")
        self.plot.setLabel("bottom", "depth: block index (-1 token embedding, last: output head)")
        self.plot.setLabel("left", "output KL, one tensor quantized (summed per block)")
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.note = QLabel(EMPTY_TEXT, objectName="sensitivityNote")
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(WHATIF_COLUMNS), objectName="whatifTable")
        self.table.setHorizontalHeaderLabels(list(WHATIF_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
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
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addWidget(self.note)
        self.series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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
        for cand in _bits_order(self.series):
            x, y = self.series[cand]
            # a lossless candidate measures 0, which a log axis cannot show: floor it
            y = np.maximum(y, 1e-12)
            self.plot.plot(x, y, pen=pg.mkPen(encoding_color(cand), width=2), symbol="o",
                           symbolSize=6, symbolBrush=encoding_color(cand), name=cand)
        depths = sorted({int(d) for x, _ in self.series.values() for d in x})
        self.plot.getAxis("bottom").setTicks([[(d, str(d)) for d in depths]])
        n = len(sens.table.tensors)
        data = sens.data or "the calibration data"
        self.note.setText(f"{n} tensors measured ({sens.method} method) on {data}; "
                          f"{len(sens.reused)} from the cache.")

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
