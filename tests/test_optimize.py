"""The optimizer: exact allocation on small instances, never worse than uniform, targets, CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from safetensors.numpy import save_file

import qtstudio
from qtstudio.cli import main
from qtstudio.core.demo import demo_model_path
from qtstudio.core.optimize import (
    InfeasibleTargetError,
    budget_for_bpw,
    cost_table,
    measure_tensor,
    optimize,
    parse_size,
    sample_rows,
    solve,
)
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import Cancelled, CancelToken, run_job
from qtstudio.jobs.demo_eval import evaluate
from qtstudio.jobs.optimize import optimize_job
from tests.helpers.raw_checkpoints import write_hf_llama


def _brute(options, budget):
    best = math.inf
    for picks in itertools.product(*[range(len(o)) for o in options]):
        b = sum(options[t][p][0] for t, p in enumerate(picks))
        if b <= budget:
            best = min(best, math.fsum(options[t][p][1] for t, p in enumerate(picks)))
    return best


def _random_instance(rng):
    n = int(rng.integers(1, 6))
    options = []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        # Bytes and errors drawn independently: dominated and non-convex options on purpose.
        options.append([(int(rng.integers(1, 60)), float(rng.random() * 10)) for _ in range(k)])
    lo = sum(min(b for b, _ in o) for o in options)
    hi = sum(max(b for b, _ in o) for o in options)
    return options, int(rng.integers(lo, hi + 1))


def test_solver_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(400):
        options, budget = _random_instance(rng)
        best = _brute(options, budget)
        sol = solve(options, budget)
        assert sol.nbytes <= budget
        assert sol.nbytes == sum(options[t][p][0] for t, p in enumerate(sol.picks))
        assert sol.proven_optimal
        assert sol.error == pytest.approx(best, rel=1e-12, abs=1e-12)


def test_solver_without_search_is_feasible_and_bounded():
    # With the exact search cut off, the answer still fits and the LP bound is a true bound.
    rng = np.random.default_rng(2)
    for _ in range(300):
        options, budget = _random_instance(rng)
        best = _brute(options, budget)
        sol = solve(options, budget, node_limit=0)
        assert sol.nbytes <= budget
        assert sol.error >= best - 1e-9
        assert sol.lower_bound <= best + 1e-9


def test_solver_rejects_impossible_budget():
    with pytest.raises(ValueError, match="over the budget"):
        solve([[(10, 1.0), (20, 0.5)], [(5, 2.0)]], 14)


def test_parse_size():
    assert parse_size("4.2GB") == 4_200_000_000
    assert parse_size("3.5GiB") == int(3.5 * 2**30)
    assert parse_size("800 MB") == 800_000_000
    assert parse_size("123456") == 123456
    assert parse_size("2k") == 2048
    for bad in ("", "GB", "-1GB", "4.2 parsecs", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_sample_rows_exact_for_small_and_spread_for_large():
    assert sample_rows(100, 256, 100 * 256) is None
    assert sample_rows(100, 256, 0) is None
    idx = sample_rows(1000, 256, 64 * 256)
    assert idx is not None and len(idx) == 64
    assert len(set(idx.tolist())) == 64 and idx.min() >= 0 and idx.max() < 1000
    assert idx.min() < 1000 // 64 and idx.max() >= 1000 - 1000 // 64  # covers both ends
    assert np.array_equal(idx, sample_rows(1000, 256, 64 * 256))


@pytest.fixture()
def llama_dir(tmp_path):
    return write_hf_llama(tmp_path / "m", layers=2, hidden=256, ffn=512, vocab=100,
                          dtype=np.float32)


def test_measured_errors_and_bytes_match_independent_paths(llama_dir):
    with open_model(llama_dir) as m:
        r = run_job(optimize_job(m, target_bpw=5.0, candidates=["Q3_K", "Q4_K", "Q8_0"]))
        # Uniform sizes agree with a plan resolved the ordinary way.
        for b in r.baselines:
            assert b.nbytes == resolve_plan(m, Recipe(default_encoding=b.candidate)).total_bytes
        # Errors (exact at this size) agree with a direct quantize/decode round trip.
        name = "model.layers.1.mlp.down_proj.weight"
        x = m.load(name)
        t = next(t for t in r.table.tensors if t.name == name)
        assert t.measured_rows == t.rows == 256
        for o in t.options:
            y = qtstudio.dequantize(qtstudio.quantize(x, o.encoding))
            sse = float(np.sum((y.astype(np.float64) - x) ** 2))
            assert o.error == pytest.approx(sse, rel=1e-9)
        plan = resolve_plan(m, r.recipe())
        assert plan.total_bytes == r.total_bytes <= r.budget
        assert plan.avg_bpw <= 5.0


def test_sampled_measurement_scales_the_rows_it_measured(llama_dir):
    with open_model(llama_dir) as m:
        table = cost_table(m, ["Q4_K"])
        t = next(t for t in table.tensors if t.name == "model.layers.0.mlp.up_proj.weight")
        x = m.load(t.name)
        measure_tensor(t, x, sample_elements=64 * 256)
        idx = sample_rows(512, 256, 64 * 256)
        sub = x[idx]
        y = qtstudio.dequantize(qtstudio.quantize(np.ascontiguousarray(sub), "Q4_K"))
        expect = float(np.sum((y.astype(np.float64) - sub) ** 2)) * 512 / 64
        assert t.measured_rows == 64 and t.rows == 512
        assert t.options[0].error == pytest.approx(expect, rel=1e-9)
        yall = qtstudio.dequantize(qtstudio.quantize(x, "Q4_K"))
        exact = float(np.sum((yall.astype(np.float64) - x) ** 2))
        assert t.options[0].error == pytest.approx(exact, rel=0.1)


@pytest.mark.parametrize("node_limit", [0, 200_000])
def test_never_worse_than_any_uniform_that_fits(llama_dir, node_limit):
    with open_model(llama_dir) as m:
        table = run_job(optimize_job(m, target_bpw=8.0, node_limit=node_limit)).table
        assert len(table.tensors) == 16
        for bpw in (3.2, 4.2, 4.6, 5.6, 6.8, 8.0):
            # The measured table is reused: only the budget changes.
            r = optimize(table, budget_for_bpw(bpw, table.total_params), node_limit=node_limit)
            assert r.total_bytes <= r.budget
            fitting = [b for b in r.baselines if b.fits]
            assert fitting, bpw
            for b in fitting:
                assert b.nbytes <= r.budget
                assert r.total_error <= b.error * (1 + 1e-12), (bpw, b.candidate)


def test_imatrix_objective_weighs_columns(llama_dir):
    rng = np.random.default_rng(5)
    with open_model(llama_dir) as m:
        name = "model.layers.0.self_attn.q_proj.weight"
        w = rng.random(256).astype(np.float32) * 4
        imatrix = {"blk.0.attn_q.weight": w}
        r = run_job(optimize_job(m, target_bpw=5.0, candidates=["Q4_K"], imatrix=imatrix))
        assert r.table.objective == "imatrix"
        t = next(t for t in r.table.tensors if t.name == name)
        assert t.weighted
        x = m.load(name)
        y = qtstudio.dequantize(qtstudio.quantize(x, "Q4_K", imatrix=w))
        expect = float(np.sum((y.astype(np.float64) - x) ** 2 * w))
        assert t.options[0].error == pytest.approx(expect, rel=1e-9)
        other = next(t for t in r.table.tensors if t.name != name)
        assert not other.weighted
        with pytest.raises(ValueError, match="importance matrix"):
            run_job(optimize_job(m, target_bpw=5.0, objective="imatrix"))


def test_infeasible_target_is_caught_before_measuring(monkeypatch):
    with open_model(demo_model_path()) as m:
        def no_load(name):
            raise AssertionError("weights were read for an impossible target")

        monkeypatch.setattr(m, "load", no_load)
        # The floor, by hand: F32 biases 1576 B; fc1 (64 columns) cannot take Q2_K's 256-blocks
        # and falls back to Q4_0 (256*64/32*18 = 9216 B); fc2 Q2_K 32768/256*84 = 10752 B;
        # fc3 (128 columns) Q4_0 10*128/32*18 = 720 B. 22264 B over 50826 params.
        with pytest.raises(InfeasibleTargetError) as exc:
            run_job(optimize_job(m, target_bpw=3.0))
        msg = str(exc.value)
        assert "22264 bytes (3.5043 bpw)" in msg and "model.safetensors" in msg
        assert exc.value.floor == 22264
        with pytest.raises(InfeasibleTargetError):
            run_job(optimize_job(m, target_bytes=22263))


def test_cancel_stops_between_tensors_and_candidates(llama_dir):
    with open_model(llama_dir) as m:
        loaded = []
        real_load = m.load
        m.load = lambda name: loaded.append(name) or real_load(name)  # type: ignore[method-assign]
        cancel = CancelToken()
        job = optimize_job(m, target_bpw=5.0, cancel=cancel)
        seen = []
        with pytest.raises(Cancelled):
            for p in job:
                seen.append(p)
                if p.stage == "measure" and p.index == 2:
                    cancel.cancel()
        assert len(loaded) == 3  # stopped inside the third tensor, before any further load
        assert [p.index for p in seen] == [0, 1, 2]


def test_nonfinite_tensor_stays_float(tmp_path):
    rng = np.random.default_rng(0)
    t = {f"l{i}.weight": rng.standard_normal((32, 256)).astype(np.float32) for i in range(3)}
    t["l1.weight"][3, 7] = np.nan
    save_file(t, tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        # 3 x 8192 params: l1 stays F32 (32768 B), the others take Q2_K (32 x 84 B each).
        r = run_job(optimize_job(m, target_bpw=13.0))
        assert r.choice("l1.weight").encoding == "F32"
        assert r.choice("l1.weight").nbytes == 32 * 256 * 4
        plan = resolve_plan(m, r.recipe())
        assert plan.total_bytes == r.total_bytes <= r.budget
        with pytest.raises(InfeasibleTargetError):
            run_job(optimize_job(m, target_bpw=12.0))  # fits before measuring, not after


def test_demo_model_at_uniform_q4k_size():
    uniform = evaluate(Recipe(default_encoding="Q4_K"))
    with open_model(demo_model_path()) as m:
        r = run_job(optimize_job(m, target_bytes=uniform["total_bytes"]))
    base = next(b for b in r.baselines if b.candidate == "Q4_K")
    assert base.fits and r.total_bytes <= uniform["total_bytes"]
    assert r.total_error <= base.error
    got = evaluate(r.recipe())
    # 360 test images: a single flipped prediction moves accuracy by 0.28 points.
    assert got["quantized_accuracy"] >= got["float_accuracy"] - 0.02


def test_cli_end_to_end(llama_dir, tmp_path, capsys):
    out = tmp_path / "recipe.json"
    assert main(["optimize", str(llama_dir), "--target-bpw", "4.8", "--out", str(out),
                 "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["avg_bpw"] <= 4.8 and doc["total_bytes"] <= doc["budget_bytes"]
    assert {"uniform", "tensors", "recipe", "lower_bound", "floor_bpw"} <= set(doc)
    assert main(["plan", str(llama_dir), "--recipe", str(out), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["avg_bpw"] <= 4.8
    assert plan["total_bytes"] == doc["total_bytes"]
    chosen = {t["name"]: t["encoding"] for t in doc["tensors"]}
    for t in plan["tensors"]:
        assert t["encoding"] == chosen.get(t["name"], "F32")
    assert "optimize: target" in json.loads(out.read_text())["notes"]

    assert main(["optimize", str(llama_dir), "--target-size", "800KB", "--candidates",
                 "Q4_K,Q6_K", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "uniform baselines:" in text and "bpw" in text
    assert main(["optimize", str(llama_dir), "--target-bpw", "1.0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "below the smallest reachable size" in err and "bpw" in err
    assert main(["optimize", str(llama_dir), "--target-bpw", "5", "--candidates", "Q9_X",
                 "--quiet"]) == 2
    assert "unknown encoding" in capsys.readouterr().err


def test_big_float_tensors_read_only_sampled_rows(tmp_path):
    import tracemalloc

    import torch
    from safetensors.torch import save_file as save_torch

    rng = np.random.default_rng(3)
    big = rng.standard_normal((8192, 256)).astype(np.float32)
    bf = torch.from_numpy(rng.standard_normal((4096, 256)).astype(np.float32)).bfloat16()
    idx = sample_rows(4096, 256, 64 * 256)
    bad_row = next(r for r in range(4096) if r not in set(idx.tolist()))
    bf[bad_row, 5] = float("inf")  # in a row the sample skips
    save_torch({"big.weight": torch.from_numpy(big).half(), "bf.weight": bf,
                "ok.weight": torch.from_numpy(big[:1024]).bfloat16()}, tmp_path / "m.safetensors")
    with open_model(tmp_path / "m.safetensors") as m:
        tracemalloc.start()
        try:
            r = run_job(optimize_job(m, target_bpw=16.0, sample_elements=64 * 256,
                                     candidates=["Q4_K", "Q8_0"]))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8192 * 256 * 4 // 2  # well under one float32 copy of big.weight
        assert r.choice("bf.weight").encoding == "F32"
        assert "non-finite" in (next(t for t in r.table.tensors if t.name == "bf.weight").note
                                or "")
        # Same numbers as measuring from the whole loaded tensor.
        for name in ("big.weight", "ok.weight"):
            got = next(t for t in r.table.tensors if t.name == name)
            ref = next(t for t in cost_table(m, ["Q4_K", "Q8_0"]).tensors if t.name == name)
            measure_tensor(ref, m.load(name), sample_elements=64 * 256)
            assert got.measured_rows == 64 and got.rows == ref.rows
            assert [o.error for o in got.options] == [o.error for o in ref.options]
            assert got.signal == pytest.approx(ref.signal, rel=1e-12)
