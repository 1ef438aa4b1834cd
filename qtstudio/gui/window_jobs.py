"""The window's background work: one job at a time, progress, cancel, errors in a dialog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from .document import PlanDocument
from .worker import JobWorker


class JobsMixin:
    """Mixed into MainWindow; uses its document, progress widgets, status bar and panels."""

    # ================================================================ jobs ==================
    def start_job(self, title: str, factory, on_result: Callable[[Any], None]) -> JobWorker | None:
        """Run a generator job off the GUI thread; only one at a time."""
        if self.worker is not None:
            self.statusBar().showMessage(f"{self.worker.name} is still running", 4000)
            return None
        w = JobWorker(factory, name=title, parent=self)
        w.yielded.connect(self._on_progress)
        w.returned.connect(on_result)
        w.errored.connect(self._on_job_error)
        w.finished.connect(self._on_job_finished)
        self.worker = w
        self.progress.setValue(0)
        self.progress.setFormat(f"{title}…")
        self.progress.show()
        self.cancel_btn.show()
        self.cancel_btn.setEnabled(True)
        self.statusBar().showMessage(f"{title}…")
        self._update_enabled()
        w.start()
        return w

    def cancel_job(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_btn.setEnabled(False)
            self.statusBar().showMessage(f"Cancelling {self.worker.name}…")

    def _on_progress(self, p: Any) -> None:
        total = getattr(p, "total", 0) or 0
        index = getattr(p, "index", 0) or 0
        bt = getattr(p, "bytes_total", 0) or 0
        bd = getattr(p, "bytes_done", 0) or 0
        frac = bd / bt if bt else (index / total if total else 0.0)
        self.progress.setValue(int(1000 * min(max(frac, 0.0), 1.0)))
        name = getattr(p, "name", "") or ""
        stage = getattr(p, "stage", "") or (self.worker.name if self.worker else "")
        where = f" {min(index + 1, total)}/{total}" if total else ""
        self.progress.setFormat(f"{stage}{where}")
        msg = getattr(p, "message", "") or ""
        self._progress_text = f"{stage}: {name}{where} {msg}".strip()
        self.statusBar().showMessage(self._progress_text)

    def _on_job_error(self, exc: BaseException) -> None:
        from qtstudio.jobs import Cancelled

        title = self.worker.name if self.worker else "job"
        if isinstance(exc, Cancelled):
            self.statusBar().showMessage(f"{title} cancelled; the plan and earlier results "
                                         "are unchanged", 8000)
        else:
            self.show_error(f"{title} failed", exc)

    def _on_job_finished(self) -> None:
        w = self.worker
        self.worker = None
        # a progress line left in the bar would read as work still going on
        bar = self.statusBar()
        if bar.currentMessage() in (getattr(self, "_progress_text", None),
                                    f"{w.name}…" if w is not None else None):
            bar.clearMessage()
        if w is not None:
            w.deleteLater()
        self.progress.hide()
        self.cancel_btn.hide()
        self._update_enabled()
        if self._then_evaluate:
            self._then_evaluate = False
            if self.doc is not None and self._is_demo and self.doc.measurements.errors:
                self.run_evaluate()

    def show_error(self, title: str, exc: BaseException | str) -> None:
        """A non-blocking message box with the error text (the status bar repeats it)."""
        text = str(exc) if not isinstance(exc, str) else exc
        if isinstance(exc, BaseException) and not text:
            text = type(exc).__name__
        self.last_error = f"{title}: {text}"
        self.statusBar().showMessage(self.last_error, 10000)
        box = QMessageBox(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok,
                          self)
        box.setObjectName("errorDialog")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.error_dialog = box
        box.open()

    # ---- the jobs themselves ---------------------------------------------------------------
    def _imatrix_entries(self) -> dict | None:
        """The loaded importance matrix as the jobs take it (tensor name -> column weights)."""
        im = getattr(self, "imatrix", None)
        return dict(im.entries) if im is not None else None

    def _cluster(self) -> dict:
        """``executor=ADDRESS`` for the jobs when Run ▸ Cluster… names a Ray cluster."""
        from .cluster_settings import cluster_address

        address = cluster_address()
        return {"executor": address} if address else {}

    def cluster_dialog(self) -> None:
        from .cluster_settings import ClusterSettingsDialog

        dlg = ClusterSettingsDialog(self)
        self.cluster_dlg = dlg
        dlg.open()

    def run_quantize(self, *, gptq: Any = None) -> JobWorker | None:
        """Quantize the plan in memory and measure it; with ``gptq`` (GPTQSettings from Run ▸
        Quantize with GPTQ…) the block linears get GPTQ's bytes, as quantize --method gptq."""
        from .process_job import process_factory

        doc = self.doc
        if doc is None:
            return None
        plan = doc.plan
        if gptq is not None:  # GPTQ measures its own Hessians: no importance matrix
            factory = process_factory("qtstudio.gui.gptq_support:gptq_quantize_file_job",
                                      doc.model.path, plan, gptq)
            return self.start_job("Quantize with GPTQ", factory,
                                  lambda report: self._on_quantized(doc, plan, report))
        return self.start_job(
            "Quantize", process_factory("qtstudio.jobs.quantize:quantize_job", doc.model.path,
                                        plan, imatrix=self._imatrix_entries(),
                                        **self._cluster()),
            lambda report: self._on_quantized(doc, plan, report))

    def gptq_quantize_dialog(self) -> None:
        if self.doc is None:
            return
        from .gptq_dialog import GPTQQuantizeDialog

        dlg = GPTQQuantizeDialog(self)
        self.gptq_dlg = dlg
        dlg.open()

    def _on_quantized(self, doc: PlanDocument, plan, report) -> None:
        from .analysis import report_metrics

        n = 0
        for name, enc, metrics in report_metrics(report, plan):
            doc.measurements.set_error(name, enc, metrics)
            n += 1
        doc.last_report = report
        doc.notify("measurements")
        msg = f"Quantized {n} tensors; errors are in the tree and the Error plot"
        gptq = [t for t in getattr(report, "tensors", None) or []
                if isinstance(t, dict) and t.get("method") == "gptq"]
        if gptq:
            g = sum(t["output_error_gptq"] for t in gptq)
            p = sum(t["output_error_plain"] for t in gptq)
            msg += (f". GPTQ: {len(gptq)} tensors, calibration output error {g:.4g} against "
                    f"{p:.4g} for plain rounding")
        self.statusBar().showMessage(msg, 12000)

    def run_benchmark(self) -> JobWorker | None:
        from .process_job import process_factory

        doc = self.doc
        if doc is None:
            return None
        names = self.selected_tensor_names() or [t.name for t in doc.model.tensors]
        plan = doc.plan
        return self.start_job(
            "Benchmark", process_factory("qtstudio.jobs.benchmark:benchmark_job", doc.model.path,
                                         plan, names),
            lambda res: self._on_benchmark(doc, res))

    def _on_benchmark(self, doc: PlanDocument, results) -> None:
        for r in results:
            doc.measurements.bench[(r.name, r.encoding)] = r.as_dict()
        doc.notify("measurements")
        self.analysis.show_tab("Benchmark")
        self.statusBar().showMessage(f"Benchmarked {len(results)} layers", 6000)

    def run_whatif(self, *, output: bool = False) -> JobWorker | None:
        """Every candidate's weight error for the selection; with ``output`` also each
        tensor's block output error and KL alone at each candidate, measured on the calibration
        file (the default corpus when none is chosen) in a job process."""
        from qtstudio.jobs.whatif import whatif_job

        doc = self.doc
        if doc is None:
            return None
        names = self.selected_tensor_names()
        if not names:
            self.statusBar().showMessage("Select the tensors to compare first", 5000)
            return None
        cands = {n: doc.candidates(n) for n in names}
        cluster = self._cluster()
        if output:
            from .process_job import process_factory

            # integer ids and masks have no output error to speak of; F32 is the reference
            cands = {n: [e for e in c if not e.startswith("I")] for n, c in cands.items()}
            factory = process_factory(
                "qtstudio.jobs.whatif:whatif_data_job", doc.model.path, cands,
                getattr(self, "calibration_file", None), ctx=getattr(self, "eval_ctx", 512),
                **cluster)
            return self.start_job("What-if with output error", factory,
                                  lambda res: self._on_whatif(doc, names, res[0], res[1]))
        return self.start_job(
            "What-if", lambda cancel: whatif_job(doc.model, cands, cancel=cancel, **cluster),
            lambda res: self._on_whatif(doc, names, res))

    def _on_whatif(self, doc: PlanDocument, names: list[str], results, sens=None) -> None:
        for (name, enc), metrics in results.items():
            doc.measurements.set_error(name, enc, metrics)
        if sens is not None:
            self._take_output_errors(doc, sens)
        doc.notify("measurements")
        self.analysis.show_whatif(names)
        if hasattr(self, "sensitivity_plot"):
            self.sensitivity_plot.show_whatif(doc, names)
            if sens is not None:
                self.show_sensitivity(sens)

    def _take_output_errors(self, doc: PlanDocument, sens) -> None:
        """A sensitivity measurement's output errors into the document (the tree's column)."""
        from qtstudio.jobs.whatif import output_errors

        doc.measurements.set_output(output_errors(sens), sens.data)

    def run_evaluate(self) -> JobWorker | None:
        doc = self.doc
        if doc is None or not self._is_demo:
            self.statusBar().showMessage("Accuracy needs the demo model (File ▸ Open demo)", 5000)
            return None
        from qtstudio.jobs.demo_eval import evaluate

        recipe = doc.recipe

        def job(cancel):
            yield from ()
            return evaluate(recipe)

        return self.start_job("Evaluate", job, lambda res: self._on_evaluated(doc, res))

    def _on_evaluated(self, doc: PlanDocument, result: dict) -> None:
        doc.measurements.accuracy = dict(result)
        doc.notify("measurements")
        self.analysis.show_tab("Accuracy")
        f, q = result.get("float_accuracy"), result.get("quantized_accuracy")
        self.statusBar().showMessage(f"Demo accuracy: float {f:.2%}, quantized {q:.2%}", 8000)

    def export_dialog(self) -> None:
        if self.doc is None:
            return
        from .export_dialog import ExportDialog

        dlg = ExportDialog(self, self.doc)
        self.export_dlg = dlg
        dlg.open()

    # ---- automatic bit allocation -------------------------------------------------------------
    def optimize_dialog(self) -> None:
        if self.doc is None:
            return
        from .optimize_dialog import OptimizeDialog

        dlg = OptimizeDialog(self, self.doc)
        self.optimize_dlg = dlg
        dlg.open()

    def run_optimize(self, *, target_bpw: float | None = None, target_bytes: int | None = None,
                     candidates: list[str] | None = None,
                     objective: str | None = None, quant=None) -> JobWorker | None:
        """Measure and solve in a job process; the answer becomes one undoable plan edit."""
        from qtstudio.core.optimize import DEFAULT_CANDIDATES

        from .process_job import process_factory

        doc = self.doc
        if doc is None:
            return None
        before = doc.recipe_snapshot()
        factory = process_factory(
            "qtstudio.jobs.optimize:optimize_job", doc.model.path, target_bpw=target_bpw,
            target_bytes=target_bytes, candidates=list(candidates or DEFAULT_CANDIDATES),
            imatrix=None if objective == "kl" else self._imatrix_entries(), objective=objective,
            float_encoding=doc.recipe.float_encoding,
            # the kl objective measures on the chosen calibration file (None: default corpus)
            **({"data": getattr(self, "calibration_file", None)} if objective == "kl" else {}),
            quant=quant, **self._cluster())
        return self.start_job("Optimize", factory,
                              lambda result: self._on_optimized(doc, before, result))

    def _on_optimized(self, doc: PlanDocument, before: dict, result) -> None:
        from .optimize_result import OptimizeSummary

        if doc is not self.doc:  # another model was opened meanwhile
            return
        if doc.recipe_snapshot() != before:
            self.statusBar().showMessage("The plan changed while optimizing; result not "
                                         "applied", 8000)
            return
        summary = OptimizeSummary.from_result(result)
        recipe = result.recipe()
        after = doc.recipe_snapshot()
        # One override per quantizable tensor replaces the old ones (rules and preset stay, but
        # no longer decide those tensors), so the plan is exactly the optimizer's answer.
        after["overrides"] = dict(recipe.overrides)
        after["float_encoding"] = recipe.float_encoding
        after["notes"] = recipe.notes
        after["method"] = recipe.method.to_dict()  # a saved recipe carries GPTQ to export
        doc.optimize_summary = summary
        self.push_recipe(after, f"Optimize to {summary.target_text}")
        if getattr(result, "sensitivity", None) is not None and hasattr(self, "show_sensitivity"):
            self._take_output_errors(doc, result.sensitivity)
            doc.notify("measurements")
            self.show_sensitivity(result.sensitivity)  # kl objective: sensitivity along depth
        self.statusBar().showMessage(summary.status_text(), 12000)
