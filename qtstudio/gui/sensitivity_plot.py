"""Measured sensitivity along depth: one line per candidate, KL against block index.

Shown after an ``--objective kl`` optimize: the embedding sits at depth -1, the head at
n_blocks; a block's point is the sum over its tensors of the KL each causes alone with that
candidate (the additive prediction the solver works with), on a log scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

_COLORS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd")


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


class SensitivityPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(objectName="sensitivityPlot")
        self.plot.setLogMode(y=True)
        self.plot.setLabel("bottom", "depth (-1 embedding, last: output head)")
        self.plot.setLabel("left", "KL with one tensor quantized (summed per block)")
        self.plot.addLegend()
        lay = QVBoxLayout(self)
        lay.addWidget(self.plot)
        self.series: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def show_sensitivity(self, sens: Any) -> None:
        self.plot.clear()
        self.series = depth_series(sens)
        for k, (cand, (x, y)) in enumerate(self.series.items()):
            y = np.maximum(y, 1e-12)
            self.plot.plot(x, y, pen=pg.mkPen(_COLORS[k % len(_COLORS)], width=2),
                           symbol="o", symbolSize=5, name=cand)
