"""`optimize --objective kl` on the trained llama: lower held-out KL than the preset it matches.

Oracle: `eval` (the full quantized forward against the reference) on text the optimizer never
saw, for the plan the CLI wrote and for llama.cpp's Q4_K_M mixture at the same byte budget.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from qtstudio.cli import main
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.jobs.eval import eval_job
from tests.helpers.trained_lm import corpus_text, trained_llama


@pytest.fixture(scope="module")
def lm():
    return trained_llama()


@pytest.mark.slow
def test_kl_objective_beats_preset_at_matched_size_on_held_out(lm, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.setenv("QTSTUDIO_CACHE", str(tmp_path / "cache"))
    text = corpus_text()
    cal, held = tmp_path / "cal.txt", tmp_path / "held.txt"
    cal.write_text(text[300_000:320_000], encoding="utf-8")
    held.write_text(text[320_000:360_000], encoding="utf-8")
    with open_model(lm) as m:
        preset = resolve_plan(m, Recipe(preset="Q4_K_M"), target_format="gguf")
    out = tmp_path / "kl.recipe.json"
    rc = main(["optimize", str(lm), "--objective", "kl", "--data", str(cal), "--ctx", "64",
               "--chunks", "8", "--sensitivity", "block", "--target-size",
               str(preset.total_bytes), "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "eval check on the calibration data" in printed and "<- kept" in printed
    recipe = Recipe.from_dict(json.loads(out.read_text()))
    with open_model(lm) as m:
        plan = resolve_plan(m, recipe, target_format="gguf")
        assert plan.total_bytes <= preset.total_bytes
        kl_plan = run_job(eval_job(m, plan, held, ctx=64, chunks=24)).kl_mean
        kl_preset = run_job(eval_job(m, preset, held, ctx=64, chunks=24)).kl_mean
    assert 0 < kl_plan < kl_preset, (kl_plan, kl_preset)
    # --data belongs to the kl objective; anything else is a one-line error
    assert main(["optimize", str(lm), "--data", str(cal), "--target-bpw", "5"]) != 0
    assert "--objective kl" in capsys.readouterr().err
