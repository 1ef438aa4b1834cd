"""The Analysis dock: pyqtgraph panels for error, memory, histogram, what-if, timings, accuracy.

One widget class per panel; each keeps its plot items and updates them with ``setData`` when the
document changes, instead of rebuilding the scene.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from qtstudio.core.human_numbers import human_bytes

from .document import PlanDocument
from .format import human_seconds, plural
from .theme import encoding_color, plot_colors
from .worker import JobWorker

MiB = 1024.0 * 1024.0
#: the histogram reads at most this many values (whole rows, evenly spread) of a large tensor
HISTOGRAM_MAX_VALUES = 4_000_000


class LogAxis(pg.AxisItem):
    """A log axis that labels only the 1, 2 and 5 ticks of each decade: the 6-9 ticks at the
    top of a decade sit so close together that their labels overlap."""

    def logTickStrings(self, values, scale, spacing):
        strings = super().logTickStrings(values, scale, spacing)
        mantissa = [10 ** (float(v) - np.floor(float(v))) for v in values]
        keep = [round(m) in (1, 2, 5) or round(m) == 10 for m in mantissa]
        if sum(keep) < 2:  # a narrow range: every label is needed to read it
            return strings
        return [s if k else "" for s, k in zip(strings, keep, strict=True)]


class DepthAxis(pg.AxisItem):
    """Tensor positions are whole numbers: no 2.5 ticks. When the names carry block numbers the
    ticks sit on block boundaries, labelled with the block ("blk 3")."""

    def __init__(self, orientation: str = "bottom") -> None:
        super().__init__(orientation)
        #: (position of a block's first tensor, label), model order
        self.blocks: list[tuple[int, str]] = []

    def tickValues(self, minVal, maxVal, size):  # noqa: N803 (pyqtgraph's names)
        if self.blocks:
            inside = [(x, lab) for x, lab in self.blocks if minVal <= x <= maxVal]
            # about one label per 70 px keeps the labels apart
            every = max(1, int(np.ceil(len(inside) / max(size / 70.0, 1.0))))
            return [(1.0, [float(x) for x, _ in inside[::every]])]
        levels = []
        for spacing, values in super().tickValues(minVal, maxVal, size):
            step = max(1.0, float(np.ceil(spacing)))
            ints = sorted({float(round(v)) for v in values if abs(v - round(v)) < 1e-9})
            if ints:
                levels.append((step, ints))
        return levels or [(1.0, [float(v) for v in range(int(np.ceil(minVal)),
                                                           int(maxVal) + 1)])]

    def tickStrings(self, values, scale, spacing):
        if self.blocks:
            names = dict(self.blocks)
            return [names.get(round(float(v)), "") for v in values]
        return [str(round(float(v))) for v in values]


def block_starts(names: list[str]) -> list[tuple[int, str]]:
    """(index of the first tensor of each numbered block, "blk N") from dotted tensor names."""
    import re

    out: list[tuple[int, str]] = []
    last = None
    pattern = re.compile(r"(?:^|\.)(\d{1,6})(?:\.|$)")
    for i, name in enumerate(names):
        m = pattern.search(name)
        blk = m.group(1) if m else None
        if blk is not None and blk != last:
            out.append((i, f"blk {blk}"))
        last = blk if blk is not None else last
    return out


def free_anchor(taken: list[tuple[float, float, float, float]], x: float, y: float,
                w: float, h: float) -> tuple[float, float] | None:
    """The first of above / below / right / left of (x, y) where a w × h label (data units)
    overlaps no label already placed, recording its box in ``taken``; None when every place
    is taken (the label is left out: the point keeps its tooltip or table row)."""
    places = (((0.5, 1.3), (-w / 2, h * 0.3)), ((0.5, -0.3), (-w / 2, -h * 1.3)),
              ((-0.15, 0.5), (w * 0.15, -h / 2)), ((1.15, 0.5), (-w * 1.15, -h / 2)))
    for anchor, (bx0, by0) in places:
        box = (x + bx0, y + by0, x + bx0 + w, y + by0 + h)
        if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                   for b in taken):
            taken.append(box)
            return anchor
    return None


def legend_html(encodings: list[str]) -> str:
    """A legend as rich text under the plot: it never covers a point."""
    return "&nbsp;&nbsp;".join(
        f'<span style="color:{encoding_color(e).name()}">●</span>&nbsp;{e}' for e in encodings)


def set_empty(plot: pg.PlotWidget, empty: bool) -> None:
    """An empty plot shows no axes or grid (a bare 0..1 frame reads as data)."""
    item = plot.getPlotItem()
    for name in ("left", "bottom"):
        item.showAxis(name, not empty)
    item.showGrid(x=not empty and plot.property("grid_x") is not False,
                  y=not empty, alpha=0.25)


def _plot(title: str, left: str, bottom: str, *, log_y: bool = False,
          depth_x: bool = False) -> pg.PlotWidget:
    axes: dict[str, pg.AxisItem] = {}
    if log_y:
        axes["left"] = LogAxis("left")
    if depth_x:
        axes["bottom"] = DepthAxis("bottom")
    w = pg.PlotWidget(axisItems=axes or None)
    w.setTitle(title)
    w.setLabel("left", left)
    w.setLabel("bottom", bottom)
    w.showGrid(x=True, y=True, alpha=0.25)
    w.getAxis("left").enableAutoSIPrefix(False)
    return w


def _plot_above_notes(panel: QWidget, *notes: QLabel) -> None:
    """``panel``'s layout: its ``plot`` filling the space, under it ``notes`` (word-wrapped)."""
    lay = QVBoxLayout(panel)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(panel.plot, 1)
    for note in notes:
        note.setWordWrap(True)
        lay.addWidget(note)


def _plot_above_action(panel: QWidget, button: str, note: str) -> tuple[QPushButton, QLabel]:
    """``panel``'s layout: its ``plot`` filling the space, under it a note and the button that
    computes what the plot shows. Returns (button, note)."""
    run_btn = QPushButton(button)
    label = QLabel(note)
    label.setWordWrap(True)
    bottom = QHBoxLayout()
    bottom.addWidget(label, 1)
    bottom.addWidget(run_btn)
    lay = QVBoxLayout(panel)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(panel.plot, 1)
    lay.addLayout(bottom)
    return run_btn, label


class ErrorPlot(QWidget):
    """Relative error of every tensor along the depth of the model, log scale, by encoding."""

    tensor_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = _plot("Per-tensor error along depth", "relative RMS error",
                          "tensor (model order)", log_y=True, depth_x=True)
        self.plot.setLogMode(x=False, y=True)
        self.legend = QLabel("", objectName="errorLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.note = QLabel("Run ▸ Quantize (Ctrl+R) to measure every tensor.")
        _plot_above_notes(self, self.legend, self.note)
        set_empty(self.plot, True)
        self.series: dict[str, pg.PlotDataItem] = {}

    def update_from(self, doc: PlanDocument | None) -> None:
        by_enc: dict[str, tuple[list[float], list[float], list[str]]] = {}
        axis = self.plot.getAxis("bottom")
        axis.blocks = block_starts([t.name for t in doc.model.tensors]) if doc else []
        axis.setLabel("block (tensors in model order)" if axis.blocks
                      else "tensor (model order)")
        if doc is not None:
            for i, t in enumerate(doc.model.tensors):
                err = doc.error(t.name)
                if not err or not err.get("rel_error") or err["rel_error"] <= 0:
                    continue
                enc = doc.plan.entry(t.name).encoding
                xs, ys, names = by_enc.setdefault(enc, ([], [], []))
                xs.append(i)
                ys.append(err["rel_error"])
                names.append(t.name)
        for enc in list(self.series):
            if enc not in by_enc:
                self.plot.removeItem(self.series.pop(enc))
        for enc, (xs, ys, names) in sorted(by_enc.items()):
            item = self.series.get(enc)
            if item is None:
                color = encoding_color(enc)
                # a PlotDataItem (not a bare ScatterPlotItem) so the axis' log mode applies
                item = pg.PlotDataItem(pen=None, symbol="o", symbolSize=7,
                                       symbolPen=pg.mkPen(None), symbolBrush=pg.mkBrush(color),
                                       name=enc)
                item.sigPointsClicked.connect(self._clicked)
                self.plot.addItem(item)
                self.series[enc] = item
            item.setData(x=np.asarray(xs, float), y=np.asarray(ys, float), data=names)
        n = sum(len(v[0]) for v in by_enc.values())
        set_empty(self.plot, n == 0)
        self.legend.setText(legend_html(sorted(by_enc)))
        self.legend.setVisible(n > 0)
        self.note.setText(f"{plural(n, 'tensor')} measured; click a point to select its tensor."
                          if n else "Run ▸ Quantize (Ctrl+R) to measure every tensor.")

    def point_count(self) -> int:
        return sum(len(s.xData) for s in self.series.values() if s.xData is not None)

    def _clicked(self, _item, points, *_args) -> None:
        if len(points):
            self.tensor_clicked.emit(str(points[0].data()))


class MemoryPlot(QWidget):
    """Bytes before and after, stacked by storage type."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = _plot("Memory before and after", "MiB", "")
        self.plot.setProperty("grid_x", False)
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.legend = QLabel("", objectName="memoryLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        ax = self.plot.getAxis("bottom")
        ax.setTicks([[(0, "before (source)"), (1, "after (plan)")]])
        self.plot.setXRange(-0.8, 1.8)
        #: the y axis unit, the same one the title's sizes use
        self.unit = "MiB"
        _plot_above_notes(self, self.legend)
        set_empty(self.plot, True)
        self.bars: list[pg.BarGraphItem] = []
        self.stacks: dict[int, dict[str, float]] = {}

    def update_from(self, doc: PlanDocument | None) -> None:
        for b in self.bars:
            self.plot.removeItem(b)
        self.legend.setText("")
        self.bars = []
        self.stacks = {0: {}, 1: {}}
        set_empty(self.plot, doc is None)
        if doc is None:
            return
        for t in doc.model.tensors:
            self.stacks[0][t.dtype] = self.stacks[0].get(t.dtype, 0.0) + t.nbytes
        for e in doc.plan.entries:
            self.stacks[1][e.encoding] = self.stacks[1].get(e.encoding, 0.0) + e.nbytes
        seen: dict[str, None] = {}
        top_bytes = max(sum(s.values()) for s in self.stacks.values())
        self.unit, per = _size_unit(top_bytes)
        self.plot.setLabel("left", self.unit)
        for x, stack in self.stacks.items():
            base = 0.0
            for enc, nb in sorted(stack.items(), key=lambda kv: -kv[1]):
                h = nb / per
                color = encoding_color(enc)
                bar = pg.BarGraphItem(x=[x], height=[h], y0=[base], width=0.6,
                                      brush=color, pen=pg.mkPen(color.darker(130)))
                self.plot.addItem(bar)
                self.bars.append(bar)
                seen[enc] = None
                base += h
        self.legend.setText(legend_html(list(seen)))
        top = top_bytes / per
        self.plot.setYRange(0, top * 1.08 if top else 1)
        before = sum(self.stacks[0].values())
        after = sum(self.stacks[1].values())
        self.plot.setTitle(f"Memory: {human_bytes(before)} → {human_bytes(after)}")


def _size_unit(nbytes: float) -> tuple[str, float]:
    """The unit human_bytes would print ``nbytes`` in, and its size (title and axis agree)."""
    for unit, per in (("GiB", 1024.0 ** 3), ("MiB", MiB), ("KiB", 1024.0)):
        if nbytes >= per:
            return unit, per
    return "B", 1.0


class HistogramPlot(QWidget):
    """Weights of the selected tensor with the grid its encoding can represent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = _plot("Histogram", "count", "weight value")
        self.hist = pg.PlotDataItem(stepMode="center", fillLevel=0, fillOutline=True,
                                    brush=(90, 140, 210, 120), pen=pg.mkPen((60, 110, 190)))
        self.grid = pg.PlotDataItem(connect="pairs", pen=pg.mkPen((220, 80, 60, 170), width=1))
        self.plot.addItem(self.hist)
        self.plot.addItem(self.grid)
        self.note = QLabel("Select a tensor to see its weights.")
        _plot_above_notes(self, self.note)
        set_empty(self.plot, True)
        self._worker: JobWorker | None = None
        self._want: tuple[str, str] | None = None
        self.shown: tuple[str, str] | None = None
        self.levels: np.ndarray = np.zeros(0)
        self.grid_info = None

    def show_tensor(self, doc: PlanDocument | None, name: str | None) -> None:
        if doc is None or name is None:
            self._want = None
            return
        key = (name, doc.plan.entry(name).encoding)
        if key == self.shown or key == self._want:
            return
        self._want = key
        if self._worker is None:
            self._start(doc)

    def _start(self, doc: PlanDocument) -> None:
        assert self._want is not None
        name, enc = self._want
        model = doc.model

        def job(cancel):
            from qtstudio.jobs.whatif import sample_rows

            from .analysis import block_grid

            yield None
            w, rows = sample_rows(model, name, HISTOGRAM_MAX_VALUES)
            sample = w[np.isfinite(w)] if not np.isfinite(w).all() else w.reshape(-1)
            p_lo, p_hi = np.quantile(sample, [0.001, 0.999]) if sample.size else (0.0, 1.0)
            grid = block_grid(w, enc) if w.size else None
            if grid is not None:  # report the row of the tensor, not of the sample
                grid = dataclasses.replace(grid, row=int(rows[grid.row]))
            lo, hi = float(p_lo), float(p_hi)
            if grid is not None:
                lo, hi = min(lo, float(grid.levels[0])), max(hi, float(grid.levels[-1]))
            pad = 0.1 * max(hi - lo, 1e-12)
            counts, edges = np.histogram(sample, bins=200, range=(lo - pad, hi + pad))
            total = model.tensor(name).params
            return name, enc, counts, edges, grid, (total, sample.size), p_lo, p_hi

        self.note.setText(f"Reading {name}…")
        w = JobWorker(job, name="Histogram", parent=self)
        w.returned.connect(lambda res, d=doc: self._done(d, res))
        w.errored.connect(lambda exc: self.note.setText(f"Cannot show {name}: {exc}"))
        w.finished.connect(lambda d=doc: self._finished(d))
        self._worker = w
        w.start()

    def _finished(self, doc: PlanDocument) -> None:
        self._worker = None
        if self._want is not None and self._want != self.shown:
            self._start(doc)

    def _done(self, doc: PlanDocument, res) -> None:
        name, enc, counts, edges, grid, (total, sampled), _p_lo, _p_hi = res
        n_text = (f"{total:,} values" if sampled >= total
                  else f"{total:,} values, {sampled:,} sampled from evenly spread rows")
        self.shown = (name, enc)
        set_empty(self.plot, False)
        self.hist.setData(edges, counts)
        ymax = float(counts.max()) if counts.size else 1.0
        if grid is not None:
            levels = grid.levels
            xs = np.repeat(levels, 2)
            ys = np.tile([0.0, ymax], levels.size)
            self.grid.setData(xs, ys)
            self.levels = levels
            self.grid_info = grid
            if grid.ladder and grid.step:
                how = (f"a {grid.ladder}-level ladder, step {grid.step:.3g}, "
                       f"{grid.used.size} of its levels used by this block")
            elif grid.step:
                how = f"{levels.size} evenly spaced levels, step {grid.step:.3g}"
            else:
                how = f"{levels.size} distinct decoded values"
            self.note.setText(
                f"{name}: {n_text}. Red lines: the {enc} grid of one typical block (row "
                f"{grid.row}, columns {grid.col}–{grid.col + grid.size - 1}, median largest "
                f"|w|): {how}.")
        else:
            self.grid.setData([], [])
            self.levels = np.zeros(0)
            self.note.setText(f"{name}: {n_text}, stored as {enc} (a float type: no grid)")
        # the bins span the central 99.8% of the values and the grid (long tails would squeeze
        # the bulk into one bin); values outside are not counted
        self.plot.setXRange(float(edges[0]), float(edges[-1]), padding=0)
        self.plot.setYRange(0, ymax, padding=0.02)
        self.plot.setTitle(f"Histogram of {name} ({enc})")


class WhatIfPlot(QWidget):
    """Error of every candidate encoding against its bits per weight, for the selection.
    Clicking a point gives the selection that encoding."""

    encoding_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = _plot("What-if: error vs bits per weight", "relative RMS error",
                          "bits per weight", log_y=True)
        self.plot.setLogMode(x=False, y=True)
        self.curve = pg.PlotDataItem(pen=pg.mkPen((120, 120, 120), width=1,
                                                  style=Qt.PenStyle.DashLine))
        self.points = pg.PlotDataItem(pen=None, symbol="o", symbolSize=10)
        self.current = pg.PlotDataItem(pen=None, symbol="o", symbolSize=18,
                                       symbolBrush=pg.mkBrush(None),
                                       symbolPen=pg.mkPen((230, 60, 60), width=2))
        self.points.sigPointsClicked.connect(
            lambda _item, pts, *_a: self.encoding_chosen.emit(str(pts[0].data())) if len(pts)
            else None)
        self.plot.addItem(self.curve)
        self.plot.addItem(self.points)
        self.plot.addItem(self.current)
        self.labels: list[pg.TextItem] = []
        self.run_btn, self.note = _plot_above_action(
            self, "Compute for selection (Ctrl+W)",
            "Select tensors, then compute: every encoding they accept is tried.")
        self.rows: list[tuple[str, float, float, int]] = []
        self.front: list[str] = []
        set_empty(self.plot, True)

    def update_from(self, doc: PlanDocument | None, names: list[str]) -> None:
        from qtstudio.jobs.whatif import whatif_curve

        for lab in self.labels:
            self.plot.removeItem(lab)
        self.labels = []
        self.rows = []
        set_empty(self.plot, True)
        if doc is None or not names:
            self.points.setData([], [])
            self.curve.setData([], [])
            self.current.setData([], [])
            return
        encs: dict[str, None] = {}
        for n in names:
            for e in doc.candidates(n):
                encs[e] = None
        self.rows = [r for r in whatif_curve(doc.measurements.errors, names, doc.model, encs)
                     if r[2] > 0]
        if not self.rows:
            self.points.setData([], [])
            self.curve.setData([], [])
            self.current.setData([], [])
            self.note.setText(f"{plural(len(names), 'tensor')} selected; not computed yet.")
            return
        set_empty(self.plot, False)
        xs = np.array([r[1] for r in self.rows])
        ys = np.array([r[2] for r in self.rows])
        brushes = [pg.mkBrush(encoding_color(r[0])) for r in self.rows]
        self.points.setData(x=xs, y=ys, symbolBrush=brushes, data=[r[0] for r in self.rows])
        # the dashed line is the Pareto front: no other encoding is both smaller and better
        front, best = [], float("inf")
        for r in self.rows:  # sorted by bpw
            if r[2] < best:
                front.append(r)
                best = r[2]
        self.front = [r[0] for r in front]
        self.curve.setData([r[1] for r in front], [r[2] for r in front])
        current_names = {doc.plan.entry(n).encoding for n in names}
        ly = np.log10(ys)
        x_span = float(xs.max() - xs.min()) + 1.0
        y_span = float(ly.max() - ly.min()) * 1.45 + 0.35
        # a label's size in data units, from the plot's size in pixels (about 7 px a letter,
        # 16 px a line); each label takes the first place around its point that is still free
        px_w = max(self.plot.width() - 80, 200)
        px_h = max(self.plot.height() - 60, 100)
        taken: list[tuple[float, float, float, float]] = []
        for enc, x, y, _n in self.rows:
            if enc not in self.front and enc not in current_names:
                continue  # label the front and the current choice; the rest have tooltips
            w = 7.0 * len(enc) / px_w * x_span
            h = 16.0 / px_h * y_span
            yy = float(np.log10(y))
            anchor = free_anchor(taken, x, yy, w, h)
            if anchor is None:
                continue
            lab = pg.TextItem(enc, anchor=anchor, color=encoding_color(enc))
            lab.setPos(x, yy)
            self.plot.addItem(lab)
            self.labels.append(lab)
        # the plan's current choice, when the whole selection shares one encoding
        current = {doc.plan.entry(n).encoding for n in names}
        cur = [r for r in self.rows if len(current) == 1 and r[0] in current]
        self.current.setData([r[1] for r in cur], [r[2] for r in cur])
        # room above the highest point for its label (auto-range would clip the text); labels
        # keep their pixel height, so the room grows with the decades shown
        span = float(ly.max() - ly.min())
        self.plot.setYRange(float(ly.min()) - 0.1 - 0.05 * span,
                            float(ly.max()) + 0.25 + 0.2 * span, padding=0)
        self.plot.setXRange(float(xs.min()) - 0.5, float(xs.max()) + 0.5, padding=0)
        self.note.setText(f"{plural(len(names), 'tensor')}: parameter-weighted error of each "
                          "encoding; dashed: the Pareto front; circled: the current plan. "
                          "Click a point to give the selection that encoding.")


class _NumberItem(QTableWidgetItem):
    """Sorts by the number behind the text ("1.2 ms" after "950 µs")."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a = self.data(Qt.ItemDataRole.UserRole)
        b = other.data(Qt.ItemDataRole.UserRole)
        if a is not None and b is not None:
            return float(a) < float(b)
        return super().__lt__(other)


class BenchmarkTable(QWidget):
    COLUMNS = ("tensor", "encoding", "shape", "time", "float32", "speed-up")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.method = QLabel("Run ▸ Benchmark layers (Ctrl+B) times each layer in its encoding.")
        self.method.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.method)
        lay.addWidget(self.table, 1)

    def update_from(self, doc: PlanDocument | None) -> None:
        self.table.setSortingEnabled(False)
        rows = [] if doc is None else list(doc.measurements.bench.values())
        self.table.setRowCount(len(rows))
        for r, d in enumerate(rows):
            cells = (d["name"], d["encoding"], " × ".join(map(str, d["shape"])),
                     human_seconds(d["seconds"]), human_seconds(d["float_seconds"]),
                     f"{d['speedup']:.2f}×")
            sort_keys = (None, None, None, d["seconds"], d["float_seconds"], d["speedup"])
            for c, text in enumerate(cells):
                item = _NumberItem(text) if sort_keys[c] is not None else QTableWidgetItem(text)
                if sort_keys[c] is not None:
                    item.setData(Qt.ItemDataRole.UserRole, sort_keys[c])
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        if rows:
            # encodings without a native kernel are timed differently: name every method used
            methods = "; ".join(dict.fromkeys(d["method"] for d in rows))
            self.method.setText(f"Method: {methods}. Best of 3 runs.")


class AccuracyPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = _plot("Demo model accuracy (digits test set)", "accuracy", "")
        self.plot.getAxis("bottom").setTicks([[(0, "float32"), (1, "quantized (plan)")]])
        self.plot.setXRange(-0.8, 1.8)
        self.plot.setYRange(0, 1.15)
        self.plot.setProperty("grid_x", False)
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.bars = pg.BarGraphItem(x=[0, 1], height=[0, 0], width=0.6,
                                    brushes=[pg.mkBrush("#7f7f7f"), pg.mkBrush("#4e79a7")])
        self.plot.addItem(self.bars)
        self.text: list[pg.TextItem] = []
        self.run_btn, self.note = _plot_above_action(
            self, "Evaluate (Ctrl+Shift+V)",
            "The demo model is evaluated under the current recipe.")
        self.values: tuple[float, float] | None = None
        set_empty(self.plot, True)

    def update_from(self, doc: PlanDocument | None) -> None:
        for t in self.text:
            self.plot.removeItem(t)
        self.text = []
        acc = doc.measurements.accuracy if doc is not None else None
        set_empty(self.plot, not acc)
        if not acc:
            self.values = None
            self.bars.setOpts(height=[0, 0])
            return
        f, q = float(acc["float_accuracy"]), float(acc["quantized_accuracy"])
        self.values = (f, q)
        self.bars.setOpts(height=[f, q])
        bg, fg = plot_colors()
        for x, v in ((0, f), (1, q)):
            # on a filled box, so a gridline through the text does not strike it out
            t = pg.TextItem(f"{v:.2%}", anchor=(0.5, 1.15), color=fg, fill=pg.mkBrush(bg))
            t.setZValue(10)
            t.setPos(x, v)
            self.plot.addItem(t)
            self.text.append(t)
        self.note.setText(f"float32 {f:.2%} → quantized {q:.2%} ({(q - f) * 100:+.2f} points)")


class AnalysisPanel(QTabWidget):
    tensor_clicked = Signal(str)

    def __init__(self, window: Any) -> None:
        super().__init__()
        self.setObjectName("analysisTabs")
        self._window = window
        self.doc: PlanDocument | None = None
        self.selection: list[str] = []
        self.error = ErrorPlot()
        self.memory = MemoryPlot()
        self.histogram = HistogramPlot()
        self.whatif = WhatIfPlot()
        self.bench = BenchmarkTable()
        self.accuracy = AccuracyPanel()
        for w, title in ((self.error, "Error"), (self.memory, "Memory"),
                         (self.histogram, "Histogram"), (self.whatif, "What-if"),
                         (self.bench, "Benchmark"), (self.accuracy, "Accuracy")):
            self.addTab(w, title)
        self.error.tensor_clicked.connect(self.tensor_clicked)
        self.whatif.run_btn.clicked.connect(lambda: window.run_whatif())
        self.whatif.encoding_chosen.connect(lambda enc: window.assign(self.selection, enc))
        self.accuracy.run_btn.clicked.connect(lambda: window.run_evaluate())

    def apply_palette(self) -> None:
        """Re-colour every plot from the current palette (light/dark switch at run time)."""
        from .theme import plot_colors

        bg, fg = plot_colors()
        pg.setConfigOptions(background=bg, foreground=fg)
        for plot in self.findChildren(pg.PlotWidget):
            plot.setBackground(bg)
            for name in ("left", "bottom"):
                ax = plot.getAxis(name)
                ax.setPen(fg)
                ax.setTextPen(fg)
            plot.getPlotItem().titleLabel.setText(plot.getPlotItem().titleLabel.text,
                                                  color=fg)

    def show_tab(self, title: str) -> None:
        for i in range(self.count()):
            if self.tabText(i) == title:
                self.setCurrentIndex(i)

    def set_document(self, doc: PlanDocument | None) -> None:
        if self.doc is not None:
            self.doc.unsubscribe(self._on_doc)
        self.doc = doc
        self.selection = []
        if doc is not None:
            doc.subscribe(self._on_doc)
        self.histogram.shown = None
        self.refresh()

    def _on_doc(self, what: str) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.error.update_from(self.doc)
        self.memory.update_from(self.doc)
        self.bench.update_from(self.doc)
        self.accuracy.update_from(self.doc)
        self.whatif.update_from(self.doc, self.selection)
        if self.selection:
            self.histogram.show_tensor(self.doc, self.selection[0])

    def set_selection(self, names: list[str]) -> None:
        self.selection = names
        self.whatif.update_from(self.doc, names)
        if names:
            self.histogram.show_tensor(self.doc, names[0])

    def show_whatif(self, names: list[str]) -> None:
        self.whatif.update_from(self.doc, names)
        self.show_tab("What-if")
