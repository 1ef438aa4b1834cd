"""Measured output sensitivity: the cache answers a rerun, and a killed run resumes.

Oracles: a fresh measurement of the same tensors (the resumed and cached numbers must equal
it), the cache files a SIGKILLed subprocess left behind, and the ordering of the candidates
(fewer bits, more KL) on a model that has learned something.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from qtstudio.calib.data import prepare_data
from qtstudio.core.optimize import cost_table
from qtstudio.core.sensitivity_cache import SensitivityCache, measurement_key
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.jobs.sensitivity import sensitivity_job
from tests.helpers.trained_lm import corpus_file

CANDS = ("Q2_K", "Q4_K", "Q6_K")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return corpus_file(tmp_path_factory.mktemp("data") / "calib.txt", 300_000, 320_000)


def _measure(folder, data, cache, method="block"):
    with open_model(folder) as m:
        table = cost_table(m, CANDS, objective="kl")
        cd = prepare_data(m, "decoder", data, ctx=64, chunks=4)
        res = run_job(sensitivity_job(m, table, cd, method=method, cache=cache))
        return res, {t.name: [o.error for o in t.options] for t in table.tensors}


def test_fewer_bits_more_kl_and_cache_rerun(lm, calib, tmp_path):
    res, kl = _measure(lm, calib, tmp_path)
    assert sorted(res.measured) == sorted(kl) and res.reused == []
    for name, errs in kl.items():
        assert errs[0] > errs[-1] > 0, (name, errs)  # Q2_K hurts more than Q6_K
    assert set(res.out_err) >= {n for n in kl if "layers" in n}
    again, kl2 = _measure(lm, calib, tmp_path)
    assert again.measured == [] and sorted(again.reused) == sorted(kl)
    assert kl2 == kl
    # another method is another key: nothing reused
    with open_model(lm) as m:
        cd = prepare_data(m, "decoder", calib, ctx=64, chunks=4)
        other = measurement_key(m.path, cd.windows.tokens, list(CANDS), "kl")
    assert other != res.key


def test_killed_run_resumes_without_redoing_finished_tensors(lm, calib, tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from qtstudio.calib.data import prepare_data
        from qtstudio.core.optimize import cost_table
        from qtstudio.formats import open_model
        from qtstudio.jobs.sensitivity import sensitivity_job
        m = open_model({str(lm)!r})
        table = cost_table(m, {CANDS!r}, objective="kl")
        cd = prepare_data(m, "decoder", {str(calib)!r}, ctx=64, chunks=4)
        for p in sensitivity_job(m, table, cd, method="block", cache={str(tmp_path)!r}):
            if p.stage == "sensitivity" and p.name and p.name != "reference" and p.index >= 3:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    left = [f for f in next(tmp_path.iterdir()).glob("*.json") if f.name != "meta.json"]
    assert len(left) == 3  # exactly the finished tensors, no temporary files
    assert not list(next(tmp_path.iterdir()).glob(".tmp-*"))
    resumed, kl = _measure(lm, calib, tmp_path)
    assert len(resumed.reused) == 3 and len(resumed.measured) == len(kl) - 3
    assert not set(resumed.reused) & set(resumed.measured)
    _fresh, kl_fresh = _measure(lm, calib, False)
    for name in kl:
        np.testing.assert_allclose(kl[name], kl_fresh[name], rtol=1e-6)


def test_cache_ignores_damaged_files(tmp_path):
    c = SensitivityCache("k", tmp_path)
    c.put("a", {"options": []})
    assert c.get("a") == {"options": [], "name": "a"}
    c._file("b").write_text("{not json")
    assert c.get("b") is None and c.finished(["a", "b"]) == ["a"]
    assert not list((tmp_path / "k").glob(".tmp-*"))
