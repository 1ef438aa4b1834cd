"""A custom encoding found through the ``qtstudio.encodings`` entry point, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qtstudio
from qtstudio.core import encodings as enc_mod

FIXTURE = Path(__file__).parent / "plugin_fixture"


def _make_dist(root: Path) -> Path:
    """A dist-info that declares the plugin's entry point, as pip would install it."""
    dist = root / "qtstudio_test_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qtstudio-test-plugin\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[qtstudio.encodings]\nsign1 = qtstudio_test_plugin:SignEncoding\n")
    return root


@pytest.fixture()
def plugin_registry(tmp_path, monkeypatch):
    site = _make_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(FIXTURE))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(enc_mod.REGISTRY, "_plugins_loaded", False)
    yield enc_mod.REGISTRY
    enc_mod.REGISTRY._by_name.pop("SIGN1_TEST", None)


def test_plugin_quantizes_through_public_api(plugin_registry):
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    qt = qtstudio.quantize(x, "sign1_test")
    assert qt.encoding.name == "SIGN1_TEST"
    assert qt.nbytes == 4 * (4 + 8)
    y = qtstudio.dequantize(qt)
    np.testing.assert_array_equal(np.sign(y), np.sign(x))
    np.testing.assert_allclose(np.abs(y[:, 0]), np.mean(np.abs(x), axis=1), rtol=1e-6)
    assert "SIGN1_TEST" in [e.name for e in qtstudio.encodings()]
    assert not plugin_registry.plugin_errors


def test_plugin_in_a_plan_and_job(plugin_registry, tmp_path):
    from safetensors.numpy import save_file

    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe, Rule
    from qtstudio.formats import open_model
    from qtstudio.jobs import run_job
    from qtstudio.jobs.quantize import quantize_job

    x = np.random.default_rng(1).standard_normal((8, 32)).astype(np.float32)
    save_file({"a.weight": x}, tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        plan = resolve_plan(m, Recipe(rules=[Rule("a", "SIGN1_TEST")]))
        assert plan.entry("a.weight").encoding == "SIGN1_TEST"
        assert plan.entry("a.weight").nbytes == 8 * 8
        report = run_job(quantize_job(m, plan))
    assert report.tensors[0]["encoding"] == "SIGN1_TEST"
    assert 0.5 < report.tensors[0]["cosine"] < 1.0


def test_cli_info_lists_the_plugin(tmp_path):
    site = _make_dist(tmp_path / "site")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURE), str(site), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "qtstudio.cli", "info", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    names = {e["name"]: e for e in json.loads(out.stdout)["encodings"]}
    assert "SIGN1_TEST" in names
    assert names["SIGN1_TEST"]["elements_per_block"] == 8
