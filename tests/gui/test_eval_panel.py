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
