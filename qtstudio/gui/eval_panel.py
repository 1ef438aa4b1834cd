"""Run ▸ Evaluate plan: KL / perplexity / top-1 of the current plan on a calibration file.

``install_eval(window)`` adds File ▸ Calibration file… (remembered in recents), Run ▸ Evaluate
plan (KL) and a results dock (the KL distribution over positions, perplexity, top-1). The job
is ``qtstudio.jobs.eval:eval_job`` in the worker process, with the window's progress and
cancel. The last result is kept on the document with the recipe it was measured for, so the
summary can mark it stale once the plan changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QFileDialog, QFormLayout, QLabel, QVBoxLayout, QWidget

RECENT_KEY = "calibration/recent"
RECENT_MAX = 8


class EvalPanel(QWidget):
    """The numbers and the KL histogram of one EvalResult."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, title in (("data", "Data"), ("plan", "Plan"), ("kl", "KL mean / median"),
                           ("tail", "KL p99 / max"), ("ppl", "Perplexity ref → quant"),
                           ("top1", "Top-1 agreement"), ("tokens", "Positions")):
            lab = QLabel("–", objectName=f"eval_{key}")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            self.labels[key] = lab
            form.addRow(title, lab)
        self.plot = pg.PlotWidget(objectName="evalHistogram")
        self.plot.setLabel("bottom", "KL per position (log10)")
        self.plot.setLabel("left", "positions")
        self.curve = pg.BarGraphItem(x=[], height=[], width=0.1)
        self.plot.addItem(self.curve)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.plot, 1)

    def show_result(self, r: Any) -> None:
        d = r.to_dict()
        self.labels["data"].setText(str(d["data"]))
        plan = d.get("plan", {})
        self.labels["plan"].setText(f"{plan.get('preset') or 'recipe'}, "
                                    f"{plan.get('avg_bpw', 0):.3f} bpw")
        if r.kind == "encoder":
            self.labels["kl"].setText(f"cosine mean {d['cosine_mean']:.6f}")
            self.labels["tail"].setText(f"cosine min {d['cosine_min']:.6f}")
        else:
            self.labels["kl"].setText(f"{d['kl_mean']:.4g} / {d['kl_median']:.4g}")
            self.labels["tail"].setText(f"{d['kl_p99']:.4g} / {d['kl_max']:.4g}")
        if "ppl_reference" in d:
            self.labels["ppl"].setText(f"{d['ppl_reference']:.3f} → {d['ppl_quantized']:.3f}")
        self.labels["top1"].setText(f"{d.get('top1_agreement', float('nan')):.4f}")
        self.labels["tokens"].setText(str(d["tokens"]))
        counts, edges = r.kl_histogram(40)
        le = np.log10(edges)
        self.curve.setOpts(x=(le[:-1] + le[1:]) / 2, height=counts,
                           width=float(le[1] - le[0]) if le.size > 1 else 0.1)


def _recents() -> list[str]:
    v = QSettings().value(RECENT_KEY, [])
    if isinstance(v, str):
        v = [v]
    return [str(x) for x in (v or []) if Path(str(x)).is_file()]


def remember(path: str) -> None:
    items = [path] + [p for p in _recents() if p != path]
    QSettings().setValue(RECENT_KEY, items[:RECENT_MAX])


def install_eval(window) -> None:
    """Menus, dock and job wiring on a MainWindow (one call from its constructor)."""
    window.calibration_file = (_recents() or [None])[0]
    window.eval_panel = EvalPanel()
    dock = QDockWidget("Evaluation", window, objectName="evalDock")
    dock.setWidget(window.eval_panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()
    window.eval_dock = dock

    def choose(path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(window, "Calibration text", "",
                                                  "Text (*.txt);;All files (*)")
            if not path:
                return
        window.calibration_file = path
        remember(path)
        window.statusBar().showMessage(f"calibration file: {path}", 5000)

    def fill_recent() -> None:
        if recent_menu is None:
            return
        recent_menu.clear()
        for p in _recents():
            recent_menu.addAction(p, lambda p=p: choose(p))
        act = recent_menu.addAction("Default corpus (Python documentation)",
                                    lambda: setattr(window, "calibration_file", None))
        act.setToolTip("weaker than text like your real inputs")

    def run() -> Any:
        from .process_job import process_factory

        doc = window.doc
        if doc is None:
            return None
        before = doc.recipe_snapshot()
        factory = process_factory("qtstudio.jobs.eval:eval_job", doc.model.path, doc.plan,
                                  window.calibration_file, ctx=window.eval_ctx)

        def done(result) -> None:
            if doc is not window.doc:
                return
            value = (float(result.cosine.mean()) if result.kind == "encoder"
                     else result.kl_mean)
            doc.last_eval = {"recipe": before, "kl_mean": value,
                             "nbytes": doc.plan.total_bytes, "kind": result.kind}
            window.eval_panel.show_result(result)
            dock.show()
            doc.notify("plan")  # the summary shows the new KL

        return window.start_job("Evaluate plan", factory, done)

    from .sensitivity_plot import SensitivityPlot

    window.sensitivity_plot = SensitivityPlot()
    sdock = QDockWidget("Sensitivity", window, objectName="sensitivityDock")
    sdock.setWidget(window.sensitivity_plot)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, sdock)
    plan_dock = getattr(window, "plan_dock", None)
    if plan_dock is not None:  # a tab beside the plan: the right column's full height
        window.tabifyDockWidget(plan_dock, sdock)
        plan_dock.raise_()
    sdock.hide()

    def show_sensitivity(sens) -> None:
        window.sensitivity_plot.show_sensitivity(sens)
        sdock.show()
        sdock.raise_()

    window.show_sensitivity = show_sensitivity
    window.sensitivity_dock = sdock
    window.eval_ctx = 512
    window.run_eval_plan = run
    window.choose_calibration_file = choose
    window.act_calibration = QAction("&Calibration file…", window,
                                     objectName="actCalibration")
    window.act_calibration.triggered.connect(lambda: choose())
    window.act_eval_plan = QAction("Evaluate plan (&KL)", window, objectName="actEvalPlan")
    window.act_eval_plan.setToolTip("KL, perplexity and top-1 of the current plan against the "
                                    "model as opened, on the calibration file")
    window.act_eval_plan.triggered.connect(run)
    recent_menu = None
    bar = window.menuBar()
    for m in (a.menu() for a in bar.actions()):
        if m is None:
            continue
        title = m.title().replace("&", "")
        if title == "File":
            m.addAction(window.act_calibration)
            recent_menu = m.addMenu("Recent calibration files")
            recent_menu.aboutToShow.connect(fill_recent)
        elif title == "Run":
            m.addAction(window.act_eval_plan)
