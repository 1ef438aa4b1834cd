"""Run ▸ Evaluate plan in the window: the job's numbers in the panel, stale KL in the summary.

Oracle: the same eval_job run directly on the same plan and file (the worker process must show
exactly its KL), and a plan edit marking the summary's KL stale.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.jobs.eval import eval_job
from tests.helpers.trained_lm import corpus_text, trained_llama


@pytest.mark.slow
def test_evaluate_plan_panel_and_stale_summary(window, qtbot, tmp_path):
    from qtstudio.core.plan import resolve_plan

    data = tmp_path / "calib.txt"
    data.write_text(corpus_text()[320_000:326_000], encoding="utf-8")
    lm = trained_llama()
    window.open_model(lm)
    doc = window.doc
    window.push_recipe({**doc.recipe_snapshot(), "preset": "Q4_K_M"}, "preset")
    window.choose_calibration_file(str(data))
    window.eval_ctx = 64
    assert window.run_eval_plan() is not None
    assert window.wait_idle(300000)
    with open_model(lm) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"), target_format="gguf")
        want = run_job(eval_job(m, plan, data, ctx=64)).kl_mean
    assert doc.last_eval["kl_mean"] == pytest.approx(want, rel=1e-9)
    assert f"{want:.4g}" in window.eval_panel.labels["kl"].text()
    summary = window.findChild(type(window.eval_panel.labels["kl"]), "summary_eval")
    assert f"{want:.4g}" in summary.text() and "stale" not in summary.text()
    window.push_recipe({**doc.recipe_snapshot(), "preset": "Q2_K"}, "preset")
    assert "stale" in summary.text()


def test_sensitivity_plot_sums_each_depth(qtbot):
    from types import SimpleNamespace

    from qtstudio.core.optimize import Option, TensorCosts
    from qtstudio.gui.sensitivity_plot import SensitivityPlot

    def tc(name, errs):
        return TensorCosts(name, (4, 4), 16, [Option(e, 1, (e,), v) for e, v in errs.items()])

    tensors = [tc("emb", {"Q2_K": 0.5, "Q6_K": 0.01}), tc("a0", {"Q2_K": 0.2, "Q6_K": 0.002}),
               tc("b0", {"Q2_K": 0.1, "Q6_K": 0.001}), tc("head", {"Q2_K": 0.3, "Q6_K": 0.02})]
    sens = SimpleNamespace(table=SimpleNamespace(tensors=tensors),
                           depth={"emb": -1, "a0": 0, "b0": 0, "head": 1})
    w = SensitivityPlot()
    qtbot.addWidget(w)
    w.show_sensitivity(sens)
    x, y = w.series["Q2_K"]
    assert list(x) == [-1, 0, 1] and y == pytest.approx([0.5, 0.3, 0.3])
    assert w.series["Q6_K"][1] == pytest.approx([0.01, 0.003, 0.02])
