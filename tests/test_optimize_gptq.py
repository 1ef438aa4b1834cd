"""`optimize --objective kl --method gptq` on the trained llama: sensitivities from GPTQ values,
the check on GPTQ bytes, a recipe that makes `export`/`quantize --recipe` write those bytes.

Oracles: plain rounding measured the same way (GPTQ must lower the block output error it was
built to lower), the gguf package reading the exported file (its tensor bytes against the
digests the optimizer's check computed), and the quantize report's per-tensor method.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from qtstudio.calib.data import prepare_data
from qtstudio.cli import main
from qtstudio.core.optimize import cost_table
from qtstudio.core.recipe import QuantMethod, Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.jobs.optimize_gptq import GPTQCandidates, gptq_options
from qtstudio.jobs.sensitivity import sensitivity_job
from tests.helpers.trained_lm import corpus_text, trained_llama


@pytest.fixture(scope="module")
def lm():
    return trained_llama()


@pytest.fixture
def cal(tmp_path):
    path = tmp_path / "cal.txt"
    path.write_text(corpus_text()[300_000:310_000], encoding="utf-8")
    return path


@pytest.mark.slow
def test_gptq_candidates_lower_block_error_than_plain_rounding(lm, cal, tmp_path):
    """Each candidate of a block linear is GPTQ on the float model's Hessian of its input: the
    block output error it causes must be below plain rounding's for the grid types."""
    with open_model(lm) as m:
        cd = prepare_data(m, "decoder", cal, ctx=32, chunks=2)
        got = {}
        for label, cand in (("plain", None),
                            ("gptq", GPTQCandidates(gptq_options(QuantMethod("gptq"))))):
            table = cost_table(m, ["Q4_K"], objective="kl")
            got[label] = run_job(sensitivity_job(m, table, cd, method="block", cache=False,
                                                 candidates=cand)).out_err
    names = [n for n in got["plain"] if got["plain"][n]]
    assert len(names) == 14  # the linears of both blocks
    lower = [n for n in names if got["gptq"][n]["Q4_K"] < got["plain"][n]["Q4_K"]]
    assert len(lower) >= 12, {n: (got["plain"][n], got["gptq"][n]) for n in names}
    assert sum(got["gptq"][n]["Q4_K"] for n in names) < \
        0.9 * sum(got["plain"][n]["Q4_K"] for n in names)


def test_gptq_cache_key_differs_from_plain(lm, cal, tmp_path):
    with open_model(lm) as m:
        cd = prepare_data(m, "decoder", cal, ctx=32, chunks=1)
        plain = run_job(sensitivity_job(m, cost_table(m, ["Q8_0"], objective="kl"), cd,
                                        method="block", cache=tmp_path))
        again = run_job(sensitivity_job(
            m, cost_table(m, ["Q8_0"], objective="kl"), cd, method="block", cache=tmp_path,
            candidates=GPTQCandidates(gptq_options(QuantMethod("gptq")))))
    assert plain.key != again.key and again.reused == [] and len(again.measured) == 16


@pytest.mark.parametrize("extra, message", [
    (["--objective", "kl", "--method", "gptq"], "--method gptq needs --data FILE"),
    (["--objective", "mse", "--method", "gptq"], "--method gptq needs --objective kl"),
    (["--objective", "kl", "--desc-act"], "--desc-act: only with --method gptq"),
    (["--objective", "kl", "--gptq-block-size", "64", "--desc-act", "--gptq-damp", "0.1"],
     "--desc-act, --gptq-damp, --gptq-block-size: only with --method gptq"),
    (["--objective", "kl", "--method", "gptq", "--gptq-damp", "2", "--data", "CAL"],
     "damp_percent must be a number in"),
])
def test_bad_method_combinations_are_one_line_errors(lm, cal, capsys, extra, message):
    extra = [str(cal) if x == "CAL" else x for x in extra]
    assert main(["optimize", str(lm), "--target-bpw", "5", *extra]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_recipe_method_with_missing_data_file_names_it(lm, tmp_path, capsys):
    rec = tmp_path / "r.json"
    Recipe(preset="Q4_K_M", method=QuantMethod("gptq", data=str(tmp_path / "gone.txt"))
           ).save(rec)
    assert main(["quantize", str(lm), "--recipe", str(rec), "--report",
                 str(tmp_path / "q.json")]) != 0
    err = capsys.readouterr().err
    assert "gone.txt does not exist" in err and str(rec) in err
    # --method plain drops the recipe's GPTQ (and its data): plain rounding runs
    assert main(["quantize", str(lm), "--recipe", str(rec), "--method", "plain", "--report",
                 str(tmp_path / "q.json"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "q.json").read_text())["tensors"]
    assert not any(r.get("method") == "gptq" for r in rows)


def _gguf_tensor_digests(path, heads: dict[str, int]) -> dict[str, str]:
    """sha256 of each tensor's bytes as the checkpoint orders its rows: GGUF interleaves each
    rotary head's two halves of q/k rows (``heads``: GGUF suffix -> head count), undone here
    on whole rows of blocks."""
    from gguf import GGUFReader

    out = {}
    for t in GGUFReader(str(path)).tensors:
        data = np.asarray(t.data)
        n = next((h for suffix, h in heads.items() if t.name.endswith(suffix)), None)
        if n is not None:
            rows = data.shape[0]
            data = data.reshape(n, rows // n // 2, 2, -1).swapaxes(1, 2).reshape(rows, -1)
        out[t.name] = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    return out


@pytest.mark.slow
def test_optimize_gptq_recipe_reproduces_the_checked_bytes(lm, cal, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setenv("QTSTUDIO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    rc = main(["optimize", str(lm), "--objective", "kl", "--method", "gptq", "--desc-act",
               "--data", str(cal), "--ctx", "32", "--chunks", "2", "--sensitivity", "block",
               "--candidates", "Q4_K,Q6_K,Q8_0", "--target-bpw", "5.5", "--out", str(out),
               "--json", "--quiet"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    recipe = Recipe.load(out)
    assert recipe.method == QuantMethod("gptq", desc_act=True, data=str(cal.resolve()),
                                        ctx=32, windows=2)
    assert result["method"]["name"] == "gptq"
    assert {c["label"] for c in result["checks"]} >= {"kl plan", "uniform Q4_K"}
    assert all(len(c["gptq_digest"]) == 64 for c in result["checks"])
    kept = result["gptq_bytes"]
    assert kept["digest"] == next(c["gptq_digest"] for c in result["checks"]
                                  if c["label"] == result["chosen"])
    # export --recipe: GPTQ from the recipe's data and parameters, the very bytes checked
    gguf = tmp_path / "m.gguf"
    assert main(["export", str(lm), "--recipe", str(out), "-o", str(gguf), "--quiet"]) == 0
    cfg = json.loads((lm / "config.json").read_text())
    heads = {"attn_q.weight": cfg["num_attention_heads"],
             "attn_k.weight": cfg.get("num_key_value_heads") or cfg["num_attention_heads"]}
    written = _gguf_tensor_digests(gguf, heads)
    with open_model(lm) as m:
        gguf_name = {t.name: t.gguf_name for t in m.tensors}
    assert len(kept["tensors"]) >= 10
    for name, digest in kept["tensors"].items():
        assert written[gguf_name[name]] == digest, name
    # plain rounding of the same plan writes other bytes for those tensors
    plain = tmp_path / "p.gguf"
    assert main(["export", str(lm), "--recipe", str(out), "--method", "plain", "-o",
                 str(plain), "--quiet"]) == 0
    plain_written = _gguf_tensor_digests(plain, heads)
    assert all(plain_written[gguf_name[n]] != d for n, d in kept["tensors"].items())
    # quantize --recipe reports those tensors as GPTQ's
    rep = tmp_path / "q.json"
    assert main(["quantize", str(lm), "--recipe", str(out), "--report", str(rep),
                 "--quiet"]) == 0
    rows = {r["name"]: r for r in json.loads(rep.read_text())["tensors"]}
    assert {n for n, r in rows.items() if r.get("method") == "gptq"} == set(kept["tensors"])
