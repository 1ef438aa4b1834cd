"""Run ▸ Cluster…: the address field, its checks, and the jobs it reaches."""

from __future__ import annotations

import pytest

from qtstudio.gui import cluster_settings as cs

pytestmark = pytest.mark.gui


def test_address_saved_and_handed_to_the_jobs(window, small_model, monkeypatch, qtbot):
    monkeypatch.setattr(cs, "ray_available", lambda: True)
    window.open_model(small_model)
    assert window._cluster() == {}  # nothing set: the jobs run here, as before
    dlg = cs.ClusterSettingsDialog(window)
    ok = dlg.buttons.button(dlg.buttons.StandardButton.Ok)
    dlg.address.setText("head-node:6379x")
    assert not ok.isEnabled() and "HOST:PORT" in dlg.problem.text()
    dlg.address.setText("ray://head-node:10001")
    assert ok.isEnabled()
    dlg.address.setText("10.0.0.5:6379")
    dlg.accept()
    assert cs.cluster_address() == "10.0.0.5:6379"
    assert window._cluster() == {"executor": "10.0.0.5:6379"}

    seen = {}

    def fake_factory(target, path, *args, **kwargs):
        seen[target] = kwargs
        return lambda cancel: iter(())

    import qtstudio.gui.process_job as pj

    monkeypatch.setattr(pj, "process_factory", fake_factory)
    monkeypatch.setattr(window, "start_job", lambda title, factory, done: None)
    window.run_quantize()
    window.run_optimize(target_bpw=4.5)
    assert seen["qtstudio.jobs.quantize:quantize_job"]["executor"] == "10.0.0.5:6379"
    assert seen["qtstudio.jobs.optimize:optimize_job"]["executor"] == "10.0.0.5:6379"

    dlg = cs.ClusterSettingsDialog(window)
    dlg.address.clear()
    dlg.accept()
    assert cs.cluster_address() is None and window._cluster() == {}


def test_without_ray_the_field_says_how_to_install(window, monkeypatch):
    monkeypatch.setattr(cs, "ray_available", lambda: False)
    dlg = cs.ClusterSettingsDialog(window)
    dlg.address.setText("auto")
    assert "pip install" in dlg.problem.text()
    assert not dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled()
    cs.set_cluster_address("auto")
    assert cs.cluster_address() is None  # a saved address is ignored until Ray is installed
