"""`eval`: KL / perplexity / top-1 of plans on a trained model, the CLI, and bad input.

Oracles: the ordering of quantization strength (Q8_0 < Q4_K_M < Q2_K in error), a model that
predicts its corpus far better than chance, and the one-line errors the brief asks for.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from qtstudio.calib import CalibrationError, make_windows
from qtstudio.cli import main
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import Cancelled, CancelToken, run_job
from qtstudio.jobs.eval import eval_job
from tests.helpers.trained_lm import corpus_file

KEYS = {"kl_mean", "kl_median", "kl_p99", "kl_max", "ppl_reference", "ppl_quantized",
        "top1_agreement", "tokens"}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return corpus_file(tmp_path_factory.mktemp("data") / "held_out.txt", 320_000, 360_000)


def _eval(folder, recipe, data, **kw):
    with open_model(folder) as m:
        plan = resolve_plan(m, recipe, target_format="gguf")
        return run_job(eval_job(m, plan, data, ctx=64, chunks=8, **kw))


def test_kl_grows_as_bits_shrink(lm, held_out):
    results = {p: _eval(lm, Recipe(preset=p), held_out) for p in ("Q8_0", "Q4_K_M", "Q2_K")}
    kl = {p: r.kl_mean for p, r in results.items()}
    assert 0 < kl["Q8_0"] < kl["Q4_K_M"] < kl["Q2_K"], kl
    r = results["Q4_K_M"]
    # the model learned its corpus: far better than the 512-way chance perplexity
    assert r.ppl_reference < 150  # held-out text; chance is 512
    assert r.ppl_quantized > r.ppl_reference * 0.98
    assert results["Q8_0"].top1_agreement > 0.95 > results["Q2_K"].top1_agreement
    assert r.tokens == 8 * 63 and r.kl.shape == (r.tokens,)
    assert r.kl_by_position().shape == (63,)
    counts, edges = r.kl_histogram(20)
    assert counts.sum() == np.count_nonzero(r.kl) and edges.size == 21
    d = r.to_dict()
    assert set(d) >= KEYS and d["kl_max"] >= d["kl_p99"] >= d["kl_median"]
    json.dumps(d)


def test_float_plan_has_zero_kl(lm, held_out):
    r = _eval(lm, Recipe(preset="F32"), held_out)
    assert r.kl_max < 1e-9 and r.top1_agreement == 1.0
    assert r.ppl_reference == pytest.approx(r.ppl_quantized, rel=1e-9)


def test_cli_eval_json(lm, held_out, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(["eval", str(lm), "--data", str(held_out), "--preset", "Q4_K_M", "--ctx", "64",
                 "--chunks", "3", "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert set(d) >= KEYS and d["tokens"] == 3 * 63
    text = capsys.readouterr().out
    assert "KL(reference || quantized)" in text and "perplexity" in text
    assert main(["eval", str(lm), "--data", str(held_out), "--rule", ".*=Q8_0", "--ctx", "64",
                 "--chunks", "1", "--json", "--quiet"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= KEYS


@pytest.mark.parametrize("content,problem", [
    (b"", "empty"), (b"  \n\n", "empty"), (b"\x00\x01\x02binary\x00", "binary"),
    (b"caf\xe9 au lait " * 10, "not UTF-8"), (b"too short", "shorter than one window")])
def test_bad_data_is_one_line_naming_the_file(lm, tmp_path, capsys, content, problem):
    bad = tmp_path / "calib.txt"
    bad.write_bytes(content)
    out = tmp_path / "res.json"
    rc = main(["eval", str(lm), "--data", str(bad), "--preset", "Q8_0", "--ctx", "64",
               "--json", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and problem in err and str(bad) in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".res.json*"))


def test_model_without_tokenizer(lm, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(lm / f, bare / f)
    assert main(["eval", str(bare), "--preset", "Q8_0", "--ctx", "64", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no tokenizer" in err and str(bare) in err


def test_cancel_stops_the_job(lm, held_out):
    cancel = CancelToken()
    with open_model(lm) as m:
        job = eval_job(m, resolve_plan(m, Recipe(preset="Q8_0")), held_out, ctx=64, chunks=2,
                       cancel=cancel)
        next(job)
        next(job)
        cancel.cancel()
        with pytest.raises(Cancelled):
            run_job(job)


def test_windows_with_bos():
    w = make_windows(list(range(10)), 4, bos_id=99)
    assert w.tokens.tolist() == [[99, 0, 1, 2], [99, 3, 4, 5], [99, 6, 7, 8]]
    assert w.scored_positions == 9
    assert make_windows(list(range(10)), 4, chunks=2).tokens.tolist() == [[0, 1, 2, 3],
                                                                          [4, 5, 6, 7]]
    with pytest.raises(CalibrationError, match="shorter than one window"):
        make_windows([1, 2], 4)


def test_encoder_eval_cosines(tmp_path):
    from tests.helpers.tiny_models import build_tiny_bert

    folder = build_tiny_bert(tmp_path / "bert")
    data = tmp_path / "sentences.txt"
    data.write_text("the quick brown fox\n\nhello world, hello tokens\nnumbers like 12345\n")
    with open_model(folder) as m:
        r8 = run_job(eval_job(m, resolve_plan(m, Recipe(preset="Q8_0")), data, ctx=64))
        r2 = run_job(eval_job(m, resolve_plan(m, Recipe(preset="Q2_K")), data, ctx=64))
    d = r8.to_dict()
    assert d["sentences"] == 3 and 0.99 < d["cosine_min"] <= d["cosine_mean"] <= 1.0 + 1e-9
    assert r2.to_dict()["cosine_mean"] < d["cosine_mean"]


def test_demo_mlp_job_matches_demo_accuracy():
    from qtstudio.core import demo
    from qtstudio.jobs.demo_eval import evaluate

    with open_model(demo.demo_model_path()) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_0"), target_format=None)
        r = run_job(eval_job(m, plan, None))
    ref = evaluate(plan)
    assert r.accuracy_reference == pytest.approx(ref["float_accuracy"])
    assert r.accuracy_quantized == pytest.approx(ref["quantized_accuracy"])
    assert r.kl_mean > 0
