"""Run ▸ Optimize: the method choice (plain rounding or GPTQ) and what reaches the optimizer."""

from __future__ import annotations

import pytest

from qtstudio.core.recipe import QuantMethod

pytestmark = pytest.mark.gui


def test_gptq_offered_with_the_kl_objective_and_a_calibration_file(window, small_model,
                                                                     tmp_path, monkeypatch):
    window.open_model(small_model)
    window.calibration_file = None
    window.act_optimize.trigger()
    dlg = window.optimize_dlg
    gptq = dlg.method.model().item(dlg.method.findData("gptq"))
    assert dlg.method.currentData() == "plain" and not dlg.desc_act.isEnabled()
    dlg.objective.setCurrentIndex(dlg.objective.findData("kl"))
    assert not gptq.isEnabled() and "Calibration file" in gptq.toolTip()
    cal = tmp_path / "cal.txt"
    cal.write_text("some calibration text\n", encoding="utf-8")
    window.calibration_file = str(cal)
    dlg.refresh_method()
    assert gptq.isEnabled()
    dlg.method.setCurrentIndex(dlg.method.findData("gptq"))
    assert dlg.desc_act.isEnabled()
    dlg.desc_act.setChecked(True)
    # mse takes plain rounding only: the choice falls back and GPTQ is greyed out
    dlg.objective.setCurrentIndex(dlg.objective.findData("mse"))
    assert dlg.method.currentData() == "plain" and not gptq.isEnabled()
    assert "kl objective" in gptq.toolTip() and dlg.quant_method() is None
    dlg.objective.setCurrentIndex(dlg.objective.findData("kl"))
    dlg.method.setCurrentIndex(dlg.method.findData("gptq"))
    seen = {}

    def run_optimize(**kwargs):
        seen.update(kwargs)
        return object()
    monkeypatch.setattr(window, "run_optimize", run_optimize)
    dlg.set_target(12.0)
    dlg.run_btn.click()
    assert seen.get("objective") == "kl", dlg.problem.text()
    assert seen["quant"] == QuantMethod("gptq", desc_act=True, data=str(cal))
