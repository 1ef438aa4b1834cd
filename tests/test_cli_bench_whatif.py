"""qtstudio-cli bench / whatif: tables, JSON files, model formats, bad input and Ctrl-C."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from qtstudio.cli import main
from tests.helpers.cli_process import interrupt_after_progress
from tests.helpers.raw_checkpoints import write_hf_llama

MATRICES = 7 + 2  # per layer q k v o gate up down, plus the embedding and lm_head


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return write_hf_llama(tmp_path_factory.mktemp("m") / "m", layers=1, hidden=256, ffn=512)


def _table_rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("model.", "lm_head", "blk.", "token_embd", "output"))}


def test_bench_table_and_json(llama, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    assert main(["bench", str(llama), "--preset", "Q8_0", "--rule", "ffn_up=Q4_K",
                 "--repeats", "1", "--json", str(out_json), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "encoding", "shape", "qmatmul", "ms",
                                           "float32", "ms", "speedup"]
    rows = _table_rows(out)
    assert len(rows) == MATRICES
    assert rows["model.layers.0.mlp.up_proj.weight"][1:5] == ["Q4_K", "512", "x", "256"]
    d = json.loads(out_json.read_text())
    assert (d["batch"], d["threads"], d["repeats"]) == (8, 1, 1)
    res = {r["name"]: r for r in d["results"]}
    assert set(res) == set(rows)
    for name, r in res.items():
        assert r["encoding"] == rows[name][1]
        assert r["seconds"] > 0 and r["float_seconds"] > 0
        assert f"{r['seconds'] * 1e3:.3f}" == rows[name][5]  # the table prints the JSON's time
        assert r["speedup"] == pytest.approx(r["float_seconds"] / r["seconds"])
    t = d["totals"]
    assert t["qmatmul_layers"] == MATRICES and t["codec_layers"] == 0
    assert t["qmatmul_seconds"] == pytest.approx(sum(r["seconds"] for r in res.values()))
    assert f"total ({MATRICES} layers)" in out and "results -> " in out
    assert not list(tmp_path.glob(".*.part"))  # the atomic writer left nothing behind


def test_bench_tensor_glob_threads_and_codec_rows(llama, capsys):
    assert main(["bench", str(llama), "--preset", "Q8_0", "--rule", "attn_q=INT8_PT_SYM",
                 "--tensors", "blk.0.attn_*", "--threads", "2", "--batch", "3",
                 "--repeats", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert sorted(rows) == [f"model.layers.0.self_attn.{p}_proj.weight" for p in "koqv"]
    assert rows["model.layers.0.self_attn.q_proj.weight"][-1] == "*"
    assert "2 threads each, batch of 3" in out and "1 layer(s): quantize + dequantize" in out


def test_whatif_table_verbose_and_json(llama, tmp_path, capsys):
    out_json = tmp_path / "w.json"
    assert main(["whatif", str(llama), "--encodings", "Q2_K,Q4_0,q8_0", "--preset", "Q4_K_M",
                 "--verbose", "--json", str(out_json), "--quiet"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out_json.read_text())
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    curve = {e["encoding"]: e for e in d["encodings"]}
    assert list(curve) == ["Q2_K", "Q4_0", "Q8_0"]
    assert curve["Q8_0"]["rel_error"] < curve["Q4_0"]["rel_error"] < curve["Q2_K"]["rel_error"]
    for enc, e in curve.items():
        assert lines[enc][1:4] == [f"{e['bpw']:.3f}", f"{e['rel_error']:.5f}",
                                   f"{MATRICES}/{MATRICES}"]
    assert curve["Q4_0"]["bpw"] == pytest.approx(4.5)
    # the Q4_K_M mixture sits between Q4_0 and Q8_0 in both size and error
    p = d["plan"]
    assert 4.5 < p["bpw"] < 8.5 and curve["Q8_0"]["rel_error"] < p["rel_error"]
    assert p["rel_error"] < curve["Q4_0"]["rel_error"]
    assert f"plan (Q4_K_M): {p['bpw']:.3f} bpw" in out
    assert len(d["tensors"]) == 3 * MATRICES
    per = {(r["name"], r["encoding"]): r for r in d["tensors"]}
    r = per[("model.layers.0.mlp.down_proj.weight", "Q4_0")]
    assert r["bpw"] == pytest.approx(4.5) and r["shape"] == [256, 512]
    assert f"{r['rel_error']:.5f}" in out  # --verbose printed the per-tensor line


def test_whatif_notes_encodings_no_tensor_takes(tmp_path, capsys):
    path = tmp_path / "odd.safetensors"
    rng = np.random.default_rng(0)
    save_file({"odd.weight": rng.standard_normal((16, 96)).astype(np.float32)}, path)
    assert main(["whatif", str(path), "--encodings", "Q4_K,Q4_0", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert ("note: Q4_K: no selected tensor can take it: odd.weight (row length 96 is not a "
            "multiple of Q4_K's block of 256)") in captured.err
    rows = [line.split()[0] for line in captured.out.splitlines()[2:]]
    assert rows == ["Q4_0"]
    assert main(["whatif", str(path), "--encodings", "Q4_K", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no selected tensor can take Q4_K" in err and "row length 96" in err


def _as_torch(llama, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({k: torch.from_numpy(v.astype(np.float32))
                for k, v in load_file(llama / "model.safetensors").items()}, path)
    return path


def _as_gguf(llama, tmp_path):
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for k, v in load_file(llama / "model.safetensors").items():
        if k.startswith("model.layers.0.mlp"):
            w.add_tensor(k.replace("model.layers.0.mlp.", "blk.0.ffn_"), v.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("make", [_as_torch, _as_gguf])
def test_other_model_formats(llama, tmp_path, capsys, make):
    path = make(llama, tmp_path)
    assert main(["whatif", str(path), "--encodings", "Q4_0,Q8_0", "--tensors", "*up*",
                 "--quiet"]) == 0
    assert "1/1" in capsys.readouterr().out
    assert main(["bench", str(path), "--preset", "Q4_0", "--tensors", "*up*", "--repeats", "1",
                 "--quiet"]) == 0
    assert len(_table_rows(capsys.readouterr().out)) == 1


@pytest.mark.parametrize("argv, message", [
    (["bench", "{tmp}/nope.safetensors", "--preset", "Q8_0"], "nope.safetensors: no such file"),
    (["whatif", "{tmp}/nope.gguf", "--encodings", "Q4_0"], "nope.gguf: no such file"),
    (["whatif", "{m}", "--encodings", "Q4_0,Q9_X"], "--encodings: unknown encoding 'Q9_X'"),
    (["whatif", "{m}", "--encodings", "Q4_0", "--tensors", "zzz*"],
     "--tensors zzz*: no tensor of"),
    (["bench", "{m}", "--preset", "Q8_0", "--tensors", "*norm*"], "no 2-D float tensor matching"),
    (["bench", "{m}"], "bench needs --preset NAME"),
    (["bench", "{m}", "--preset", "Q8_0", "--threads", "0"], "--threads must be at least 1"),
    (["bench", "{m}", "--preset", "Q8_0", "--json", "{tmp}/no/dir/x.json"],
     "folder"),
    (["whatif", "{m}", "--encodings", "Q4_0", "--max-elements", "0"], "--max-elements"),
    (["whatif", "{m}", "--encodings", "Q4_0", "--chunks", "2"], "--chunks: only with --data"),
    (["whatif", "{m}", "--encodings", "Q4_0", "--data", "{m}/config.json", "--ctx", "1"],
     "--ctx 1: a window needs at least 2 tokens"),
    (["whatif", "{m}", "--encodings", "Q4_0", "--data", "{tmp}/nope.txt"],
     "nope.txt: no such calibration file"),
])
def test_bad_input_is_one_line_exit_2(llama, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, m=llama) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("qtstudio-cli: error: ") and message in err
    assert "\n" not in err and "Traceback" not in err and captured.out == ""


def test_bench_ctrl_c_exits_130_and_writes_nothing(llama, tmp_path):
    out_json = tmp_path / "b.json"
    # many repeats keep each layer busy for a while, so the interrupt lands mid-run
    code, out, err = interrupt_after_progress(
        ["bench", str(llama), "--preset", "Q8_0", "--repeats", "3000", "--json", str(out_json)])
    assert code == 130, err
    assert "stopped by Ctrl-C; no results written" in err and "Traceback" not in err
    assert out == "" and not out_json.exists() and not list(tmp_path.glob(".*.part"))


def test_whatif_data_adds_output_error_from_the_sensitivity_job(tmp_path, capsys, monkeypatch):
    """--data: each tensor alone at each encoding on calibration text, the job's numbers in the
    table and the JSON, and a rerun taken from the cache."""
    from qtstudio.formats import open_model
    from qtstudio.jobs import run_job
    from qtstudio.jobs.whatif import output_error_job, output_errors
    from tests.helpers.trained_lm import corpus_text, trained_llama

    monkeypatch.setenv("QTSTUDIO_CACHE", str(tmp_path / "cache"))
    lm = trained_llama()
    calib = tmp_path / "calib.txt"
    calib.write_text(corpus_text()[:1500], encoding="utf-8")
    out_json = tmp_path / "w.json"
    argv = ["whatif", str(lm), "--encodings", "Q8_0,Q4_K,Q2_K", "--tensors", "model.layers.0.*",
            "--data", str(calib), "--ctx", "32", "--preset", "Q4_K_M", "--json", str(out_json),
            "--quiet", "--verbose"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(7 tensors measured, 0 from the cache)" in out
    d = json.loads(out_json.read_text())
    names = d["tensors_selected"]
    assert len(names) == 7 and d["data"] == str(calib)
    with open_model(lm) as m:
        sens = run_job(output_error_job(m, {n: ["Q8_0", "Q4_K", "Q2_K"] for n in names},
                                        str(calib), ctx=32))
    assert sens.measured == []  # the CLI's run filled the cache
    truth = output_errors(sens)
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for e in d["encodings"]:
        enc = e["encoding"]
        oe = [truth[(n, enc)]["out_err"] for n in names]
        p = [int(np.prod(m_shape)) for m_shape in
             ({r["name"]: r["shape"] for r in d["tensors"]}[n] for n in names)]
        assert e["out_err"] == pytest.approx(np.dot(oe, p) / sum(p), rel=1e-12)
        assert e["kl"] == pytest.approx(sum(truth[(n, enc)]["kl"] for n in names), rel=1e-12)
        assert lines[enc][1:6] == [f"{e['bpw']:.3f}", f"{e['rel_error']:.5f}",
                                   f"{e['out_err']:.3e}", f"{e['kl']:.3e}", "7/7"]
    q = {x["encoding"]: x for x in d["encodings"]}
    assert q["Q8_0"]["out_err"] < q["Q4_K"]["out_err"] < q["Q2_K"]["out_err"]
    assert q["Q8_0"]["kl"] < q["Q4_K"]["kl"] < q["Q2_K"]["kl"]
    for r in d["tensors"]:
        assert r["out_err"] == truth[(r["name"], r["encoding"])]["out_err"]
        assert r["kl"] == truth[(r["name"], r["encoding"])]["kl"]
    assert d["plan"]["kl"] > 0 and d["plan"]["out_err"] > 0
    assert main(argv) == 0
    assert "(0 tensors measured, 7 from the cache)" in capsys.readouterr().out
