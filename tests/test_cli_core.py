"""qtstudio-cli inspect / plan / quantize / eval: the documented forms and JSON fields."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from qtstudio.cli import main
from tests.helpers.cli_process import interrupt_after_progress
from tests.helpers.raw_checkpoints import write_hf_llama


@pytest.fixture()
def llama_dir(tmp_path):
    return write_hf_llama(tmp_path / "m", layers=2, hidden=256, ffn=512)


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_json(llama_dir, capsys):
    d = _json(capsys, ["inspect", str(llama_dir), "--json"])
    assert {"tensors", "total_params", "total_bytes"} <= set(d)
    t = next(x for x in d["tensors"] if x["name"] == "model.layers.1.mlp.down_proj.weight")
    assert t == {**t, "shape": [256, 512], "dtype": "F16", "params": 256 * 512,
                 "nbytes": 256 * 512 * 2, "quantizable": True,
                 "gguf_name": "blk.1.ffn_down.weight"}
    assert d["total_params"] == sum(x["params"] for x in d["tensors"])
    assert d["total_bytes"] == sum(x["nbytes"] for x in d["tensors"])


def test_inspect_text_and_tree(llama_dir, capsys):
    assert main(["inspect", str(llama_dir)]) == 0
    out = capsys.readouterr().out
    assert "blk.0.attn_q.weight" in out and "total: 21 tensors" in out
    assert main(["inspect", str(llama_dir), "--tree", "--depth", "2"]) == 0
    assert "layers" in capsys.readouterr().out


def test_plan_json_and_out(llama_dir, tmp_path, capsys):
    out = tmp_path / "plan.json"
    d = _json(capsys, ["plan", str(llama_dir), "--preset", "Q4_K_M", "--rule",
                       "attn_q=Q8_0", "--rule", "ffn_up=Q4_K", "--out", str(out), "--json"])
    assert {"tensors", "total_bytes", "avg_bpw", "memory_estimate_bytes"} <= set(d)
    e = {t["name"]: t for t in d["tensors"]}
    assert e["model.layers.0.self_attn.q_proj.weight"]["encoding"] == "Q8_0"
    assert e["model.layers.0.self_attn.q_proj.weight"]["gguf_name"] == "blk.0.attn_q.weight"
    assert "fallback_from" not in e["model.layers.0.self_attn.q_proj.weight"]
    assert json.loads(out.read_text())["recipe"]["preset"] == "Q4_K_M"


def test_plan_reports_fallbacks(tmp_path, capsys):
    save_file({"a.weight": np.zeros((4, 96), np.float32)}, tmp_path / "m.safetensors")
    d = _json(capsys, ["plan", str(tmp_path / "m.safetensors"), "--rule", "a=Q4_K", "--json"])
    t = d["tensors"][0]
    assert (t["encoding"], t["fallback_from"]) == ("Q5_0", "Q4_K")
    assert main(["plan", str(tmp_path / "m.safetensors"), "--rule", "a=Q4_K"]) == 0
    text = capsys.readouterr().out
    assert "fallbacks: 1 tensors" in text and "Q4_K -> Q5_0 +1.000 bpw" in text


def test_quantize_report(llama_dir, tmp_path, capsys):
    plan_file = tmp_path / "plan.json"
    assert main(["plan", str(llama_dir), "--preset", "Q4_0", "--out", str(plan_file)]) == 0
    report = tmp_path / "r.json"
    assert main(["quantize", str(llama_dir), "--recipe", str(plan_file), "--rule",
                 "attn_v=Q8_0", "--report", str(report)]) == 0
    captured = capsys.readouterr()
    assert "%" in captured.err  # progress bar on stderr
    r = json.loads(report.read_text())
    rows = {t["name"]: t for t in r["tensors"]}
    v = rows["model.layers.0.self_attn.v_proj.weight"]
    assert v["encoding"] == "Q8_0" and v["snr_db"] > 30
    q = rows["model.layers.0.self_attn.q_proj.weight"]
    assert q["encoding"] == "Q4_0" and 10 < q["snr_db"] < v["snr_db"]
    assert {"rmse", "rel_error", "snr_db", "cosine", "max_abs"} <= set(q)
    assert r["totals"]["n_tensors"] == 21


def test_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    assert main(["inspect", str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qtstudio-cli: error: ") and "bad.safetensors" in err
    assert main(["quantize", str(tmp_path / "bad.safetensors"), "--report", "x.json"]) == 2
    assert "needs --preset NAME or --recipe FILE" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "bad.safetensors"), "--preset", "Q9"]) == 2


def test_eval_demo(capsys):
    d = _json(capsys, ["eval", "demo", "--preset", "Q8_0", "--json"])
    assert d["float_accuracy"] > 0.9
    assert abs(d["quantized_accuracy"] - d["float_accuracy"]) < 0.02
    assert main(["eval", "demo", "--preset", "Q2_K"]) == 0
    out = capsys.readouterr().out
    assert "float accuracy:" in out and "quantized accuracy:" in out and "fallback" in out


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(tmp_path):
    rng = np.random.default_rng(0)
    save_file({f"l{i}.weight": rng.standard_normal((1024, 1024)).astype(np.float32)
               for i in range(48)}, tmp_path / "big.safetensors")
    report = tmp_path / "r.json"
    code, _, err = interrupt_after_progress(
        ["quantize", str(tmp_path / "big.safetensors"), "--preset", "Q6_K", "--report",
         str(report)])
    assert code == 130, err
    assert "stopped by Ctrl-C; no report written" in err
    assert "Traceback" not in err
    assert not report.exists()


def test_plan_target_picks_the_format_whose_fallbacks_apply(tmp_path, capsys):
    save_file({"a.weight": np.zeros((4, 96), np.float32)}, tmp_path / "m.safetensors")
    got = {}
    for target in ("gguf", "nnef", "safetensors", "none"):
        t = _json(capsys, ["plan", str(tmp_path / "m.safetensors"), "--rule", "a=Q4_0",
                           "--target", target, "--json"])["tensors"][0]
        got[target] = (t["encoding"], t.get("fallback_from"))
    # safetensors stores no block types: Q4_0 falls back to F16 there only
    assert got == {"gguf": ("Q4_0", None), "nnef": ("Q4_0", None),
                   "safetensors": ("F16", "Q4_0"), "none": ("Q4_0", None)}
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(tmp_path / "m.safetensors"), "--target", "onnx"])
    assert exc.value.code == 2 and "invalid choice: 'onnx'" in capsys.readouterr().err
