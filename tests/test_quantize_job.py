"""The quantize job: progress, cancellation between tensors and row chunks, non-finite values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from safetensors.numpy import save_file

import qtstudio
from qtstudio.core.metrics import tensor_metrics
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import Cancelled, CancelToken, run_job
from qtstudio.jobs.quantize import quantize_job


@pytest.fixture()
def model(tmp_path):
    rng = np.random.default_rng(0)
    t = {f"l{i}.weight": rng.standard_normal((64, 256)).astype(np.float32) for i in range(4)}
    t["norm.weight"] = np.ones(256, np.float32)
    bad = rng.standard_normal((8, 256)).astype(np.float32)
    bad[1, 2], bad[5, 0] = np.nan, np.inf
    t["bad.weight"] = bad
    save_file(t, tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        yield m


def test_report_metrics_match_direct_quantization(model):
    plan = resolve_plan(model, Recipe(preset="Q4_K_M"), target_format=None)
    seen = []
    got = {}
    report = run_job(quantize_job(model, plan, chunk_bytes=16 * 256 * 4,
                                  sink=lambda e, qt: got.setdefault(e.name, qt)), seen.append)
    rows = {r["name"]: r for r in report.tensors}
    for name in ("l0.weight", "l3.weight"):
        x = model.load(name)
        qt = qtstudio.quantize(x, plan.entry(name).encoding)
        m = tensor_metrics(x, qtstudio.dequantize(qt))
        assert rows[name]["rmse"] == pytest.approx(m.rmse, rel=1e-9)
        assert rows[name]["snr_db"] == pytest.approx(m.snr_db, rel=1e-9)
        assert got[name].tobytes() == qt.tobytes()  # chunking does not change the bytes
    assert rows["bad.weight"]["nonfinite"] == 2 and rows["bad.weight"]["rmse"] is None
    assert report.nonfinite == {"bad.weight": 2}
    assert rows["norm.weight"]["encoding"] == "F32" and rows["norm.weight"]["rmse"] == 0
    # progress: one per tensor at least, chunk updates inside the 64-row tensors, then done
    per_tensor = [p for p in seen if p.message and not p.message.startswith("rows")]
    assert [p.name for p in per_tensor[:-1]] == [e.name for e in plan.entries]
    assert any(p.message.startswith("rows 16-32 of 64") for p in seen)
    assert seen[-1].stage == "done" and seen[-1].bytes_done == seen[-1].bytes_total
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(seen))
    t = report.totals()
    assert t["n_tensors"] == len(plan.entries) and t["n_nonfinite_tensors"] == 1


def test_cancel_between_tensors(model):
    plan = resolve_plan(model, Recipe(preset="Q8_0"), target_format=None)
    token = CancelToken()
    job = quantize_job(model, plan, cancel=token)
    first = next(job)
    assert first.index == 0
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)


def test_cancel_between_row_chunks(model):
    plan = resolve_plan(model, Recipe(preset="Q8_0"), target_format=None)
    token = CancelToken()
    job = quantize_job(model, plan, cancel=token, chunk_bytes=8 * 256 * 4)
    p = next(job)
    while not p.message.startswith("rows"):
        p = next(job)
    assert p.message == "rows 0-8 of 64"  # first chunk of the first 64-row tensor done
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)


def test_imatrix_changes_weighting(model):
    plan = resolve_plan(model, Recipe(preset="Q4_0"), target_format=None)
    w = np.zeros(256, np.float32)
    w[:32] = 1.0
    plain = run_job(quantize_job(model, plan))
    weighted = run_job(quantize_job(model, plan, imatrix={"l0.weight": w}))
    a = next(r for r in plain.tensors if r["name"] == "l0.weight")
    b = next(r for r in weighted.tensors if r["name"] == "l0.weight")
    assert a["rmse"] != b["rmse"]
    x = model.load("l0.weight")
    y = qtstudio.dequantize(qtstudio.quantize(x, "Q4_0", imatrix=w))
    assert b["rmse"] == pytest.approx(tensor_metrics(x, y, imatrix=w).rmse, rel=1e-9)


def test_per_tensor_int8_is_never_split_into_chunks(model):
    plan = resolve_plan(model, Recipe(default_encoding="INT8_PT_ASYM"), target_format=None)
    got = {}
    run_job(quantize_job(model, plan, chunk_bytes=4 * 256 * 4,
                         sink=lambda e, qt: got.setdefault(e.name, qt)))
    x = model.load("l2.weight")
    assert got["l2.weight"].tobytes() == qtstudio.quantize(x, "INT8_PT_ASYM").tobytes()
