"""GPTQ on the trained test llama (tests/helpers/trained_lm.py): held-out KL of the GGUF exports
run by llama.cpp (GPTQ below plain rounding at the same size), GGUF and torch state-dict sources
through the command line, the Hugging Face GPTQ checkpoint unpacked independently, errors and
cancel."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

gguf_quants = pytest.importorskip("gguf.quants")
from gguf import GGMLQuantizationType  # noqa: E402

from qtstudio.calib import load_tokenizer, tokenize_windows  # noqa: E402
from qtstudio.cli import main  # noqa: E402
from qtstudio.core.plan import resolve_plan  # noqa: E402
from qtstudio.core.recipe import Recipe  # noqa: E402
from qtstudio.export.gguf_gptq import gptq_export_job  # noqa: E402
from qtstudio.formats import open_model  # noqa: E402
from qtstudio.jobs import run_job  # noqa: E402
from qtstudio.quant.gptq import GPTQOptions  # noqa: E402
from tests.helpers.oracles import llama_window_logits, mean_kl  # noqa: E402
from tests.helpers.trained_lm import corpus_text, trained_llama  # noqa: E402


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """root/model: the cached trained llama; calibration and held-out text from the part of the
    corpus it was not trained on (training reads the first 300 000 characters)."""
    root = tmp_path_factory.mktemp("gptq_lm")
    (root / "model").symlink_to(trained_llama(), target_is_directory=True)
    text = corpus_text()
    (root / "calib.txt").write_text(text[300_000:340_000], encoding="utf-8")
    (root / "heldout.txt").write_text(text[400_000:440_000], encoding="utf-8")
    return root


def calibration_windows(model, path, *, ctx, windows):
    text = path.read_text(encoding="utf-8")
    return tokenize_windows(load_tokenizer(model), text, ctx, chunks=windows).tokens


def _hf_logits(folder, ids):
    m = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return m(input_ids=torch.as_tensor(ids)).logits.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("enc,recipe", [
    ("Q4_0", Recipe(preset="Q4_0", pure=True)), ("Q4_K", Recipe(preset="Q4_K_M", pure=True)),
    ("Q3_K", Recipe(preset="Q3_K_S", pure=True)),
    ("IQ4_XS", Recipe(default_encoding="IQ4_XS", output_tensor_type="IQ4_XS",
                      token_embedding_type="IQ4_XS"))], ids=lambda v: getattr(v, "preset", v))
def test_gptq_gguf_runs_in_llama_cpp_with_less_heldout_kl_than_plain(lm, tmp_path, enc,
                                                                     recipe):
    pytest.importorskip("llama_cpp")
    from qtstudio.export.gguf import export_gguf

    with open_model(lm / "model") as m:
        plan = resolve_plan(m, recipe, target_format="gguf")
        assert {e.encoding for e in plan.entries if len(e.shape) == 2} == {enc}
        calib = calibration_windows(m, lm / "calib.txt", ctx=64, windows=32)
        held = calibration_windows(m, lm / "heldout.txt", ctx=48, windows=6)
        run_job(gptq_export_job(m, plan, tmp_path / "gptq.gguf", calib,
                                options=GPTQOptions(desc_act=True)))
        export_gguf(m, plan, tmp_path / "plain.gguf")
    assert (tmp_path / "gptq.gguf").stat().st_size == (tmp_path / "plain.gguf").stat().st_size
    ref = _hf_logits(lm / "model", held)
    kl_gptq = mean_kl(ref, llama_window_logits(tmp_path / "gptq.gguf", held, ctx=64))
    kl_plain = mean_kl(ref, llama_window_logits(tmp_path / "plain.gguf", held, ctx=64))
    assert kl_gptq < 0.9 * kl_plain, (kl_gptq, kl_plain)
    assert not list(tmp_path.glob("qtstudio-gptq-*"))


@pytest.fixture(scope="module")
def sources(lm, tmp_path_factory):
    """The trained llama as an F32 GGUF file and as a torch state dict beside config.json."""
    from qtstudio.export.gguf import export_gguf

    root = tmp_path_factory.mktemp("gptq_sources")
    with open_model(lm / "model") as m:
        export_gguf(m, resolve_plan(m, Recipe(preset="F32"), target_format="gguf"),
                    root / "f32.gguf")
    pt = root / "pt"
    pt.mkdir()
    hf = transformers.LlamaForCausalLM.from_pretrained(lm / "model", dtype=torch.float32)
    torch.save(hf.state_dict(), pt / "pytorch_model.bin")
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(lm / "model" / f, pt / f)
    return {"hf": lm / "model", "gguf": root / "f32.gguf", "pt": pt}


def _gptq_export(lm, src, out):
    assert main(["export", str(src), "--preset", "Q4_K_M", "--method", "gptq", "--data",
                 str(lm / "calib.txt"), "--calib-ctx", "48", "--calib-windows", "8", "-o",
                 str(out), "--quiet"]) == 0
    from gguf import GGUFReader

    reader = GGUFReader(str(out))
    return {t.name: (t.tensor_type.name, np.array(t.data)) for t in reader.tensors}


@pytest.fixture(scope="module")
def hf_gptq_gguf(lm, tmp_path_factory):
    return _gptq_export(lm, lm / "model", tmp_path_factory.mktemp("gptq_hf") / "hf.gguf")


@pytest.mark.parametrize("source", ["gguf", "pt"])
def test_gguf_and_state_dict_sources_export_the_same_gptq_file(lm, sources, hf_gptq_gguf,
                                                                tmp_path, source):
    """The same float weights from another container give the same GPTQ bytes (a GGUF llama's
    q/k rows are interleaved: GPTQ's rows are independent, so only their order differs, and
    the GGUF writer puts both in the same order)."""
    got = _gptq_export(lm, sources[source], tmp_path / "out.gguf")
    assert got.keys() == hf_gptq_gguf.keys()
    for name, (kind, data) in hf_gptq_gguf.items():
        assert got[name][0] == kind, name
        decoded = [gguf_quants.dequantize(d, GGMLQuantizationType[k])
                   for k, d in (got[name], (kind, data))]
        assert np.allclose(decoded[0], decoded[1], rtol=0, atol=1e-6 * np.abs(decoded[1]).max()
                           + 1e-7), name
    assert hf_gptq_gguf["blk.0.attn_q.weight"][0] == "Q4_K"


def test_quantize_cli_on_a_gguf_source_reports_gptq_against_plain(lm, sources, tmp_path,
                                                                  capsys):
    report = tmp_path / "r.json"
    assert main(["quantize", str(sources["gguf"]), "--preset", "Q3_K_M", "--method", "gptq",
                 "--data", str(lm / "calib.txt"), "--calib-ctx", "48", "--calib-windows", "8",
                 "--report", str(report), "--quiet"]) == 0
    assert "GPTQ: 15 tensors" in capsys.readouterr().out  # 14 block linears and the head
    rows = [r for r in json.loads(report.read_text())["tensors"] if r.get("method") == "gptq"]
    assert {r["encoding"] for r in rows} >= {"Q3_K", "Q4_K"}  # Q3_K_M mixes them
    assert all(r["output_error_gptq"] < r["output_error_plain"] for r in rows)


def test_a_quantized_gguf_source_needs_allow_requantize(lm, sources, tmp_path, capsys):
    from qtstudio.export.gguf import export_gguf

    with open_model(sources["hf"]) as m:
        export_gguf(m, resolve_plan(m, Recipe(preset="Q8_0"), target_format="gguf"),
                    tmp_path / "q8.gguf")
    out = tmp_path / "out.gguf"
    args = ["export", str(tmp_path / "q8.gguf"), "--preset", "Q4_K_M", "--method", "gptq",
            "--data", str(lm / "calib.txt"), "--calib-ctx", "32", "--calib-windows", "2",
            "-o", str(out), "--quiet"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "--allow-requantize" in err and "Traceback" not in err
    assert not out.exists()
    assert main([*args, "--allow-requantize"]) == 0 and out.is_file()


def _unpack(words, bits, axis_len):
    """int32 words [k, cols] -> levels [k * 32 / bits, cols] (independent of the exporter)."""
    w = torch.as_tensor(words).to(torch.int64) & 0xFFFFFFFF
    per = 32 // bits
    parts = [(w >> (bits * j)) & ((1 << bits) - 1) for j in range(per)]
    return torch.stack(parts, dim=1).reshape(-1, w.shape[1])[:axis_len].numpy()


def _decode_checkpoint(t, prefix):
    """The documented layout, decoded here: [out, in] float32."""
    qweight, qzeros, scales, g_idx = (t[prefix + s] for s in (".qweight", ".qzeros", ".scales",
                                                              ".g_idx"))
    levels = _unpack(qweight, 4, g_idx.shape[0])                     # [in, out]
    zeros = _unpack(qzeros.T.copy(), 4, scales.shape[1]).T + 1       # [groups, out]
    return (scales.astype(np.float32)[g_idx] * (levels - zeros[g_idx])).T


def _rtn_int4(w, group=64):
    """Plain symmetric 4-bit rounding with the same groups: the baseline GPTQ must beat."""
    g = w.reshape(w.shape[0], -1, group)
    s = (np.abs(g).max(-1, keepdims=True) * 2 / 15).astype(np.float16).astype(np.float32)
    return (s * (np.clip(np.round(g / s) + 8, 0, 15) - 8)).reshape(w.shape)


def _logits_with(folder, ids, weights):
    m = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, w in weights.items():
            m.get_parameter(name).copy_(torch.as_tensor(w))
        return m(input_ids=torch.as_tensor(ids)).logits.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("asym,desc_act", [(False, True), (True, False)])
def test_hf_gptq_checkpoint_decodes_to_a_model_better_than_rounding(lm, tmp_path, asym,
                                                                      desc_act):
    from safetensors.numpy import load_file

    out = tmp_path / "hf"
    args = ["export", str(lm / "model"), "--format", "hf-gptq", "--method", "gptq",
            "--data", str(lm / "calib.txt"), "--calib-ctx", "64", "--calib-windows", "32",
            "--group-size", "64", "-o", str(out), "--quiet"]
    assert main(args + (["--asym"] if asym else []) + (["--desc-act"] if desc_act else [])) == 0
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["bits"] == 4 and qc["group_size"] == 64
    assert qc["desc_act"] is desc_act and qc["sym"] is (not asym)
    assert qc["checkpoint_format"] == "gptq"
    t = load_file(str(out / "model.safetensors"))
    p = "model.layers.1.mlp.down_proj"
    assert p + ".weight" not in t
    assert t[p + ".qweight"].dtype == np.int32 and t[p + ".qweight"].shape == (512 // 8, 256)
    assert t[p + ".qzeros"].shape == (512 // 64, 256 // 8)
    assert t[p + ".scales"].dtype == np.float16 and t[p + ".scales"].shape == (8, 256)
    g_idx = t[p + ".g_idx"]
    assert sorted(np.bincount(g_idx).tolist()) == [64] * 8
    assert bool(np.all(np.diff(g_idx) >= 0)) is not desc_act  # act order: processing order
    if not asym:
        assert np.all(_unpack(t[p + ".qzeros"].T.copy(), 4, 256) == 7)  # 8 stored as 8 - 1
    names = [n for n in t if n.endswith(".qweight")]
    assert len(names) == 14
    with open_model(lm / "model") as m:
        held = calibration_windows(m, lm / "heldout.txt", ctx=48, windows=6)
        plain = {n[:-len("qweight")] + "weight": _rtn_int4(m.load(n[:-len("qweight")] + "weight"))
                 for n in names}
    gptq_w = {n[:-len("qweight")] + "weight": _decode_checkpoint(t, n[:-len(".qweight")])
              for n in names}
    ref = _hf_logits(lm / "model", held)
    kl_gptq = mean_kl(ref, _logits_with(lm / "model", held, gptq_w))
    kl_plain = mean_kl(ref, _logits_with(lm / "model", held, plain))
    assert kl_gptq < 0.5 * kl_plain, (kl_gptq, kl_plain)


@pytest.mark.slow
def test_gptqmodel_loads_the_checkpoint_as_documented(lm, tmp_path):
    """An independent loader (GPTQModel, when installed) decodes the same weights."""
    gptqmodel = pytest.importorskip("gptqmodel")
    from safetensors.numpy import load_file

    out = tmp_path / "hf"
    assert main(["export", str(lm / "model"), "--format", "hf-gptq", "--method", "gptq",
                 "--data", str(lm / "calib.txt"), "--calib-ctx", "48", "--calib-windows", "8",
                 "--desc-act", "-o", str(out), "--quiet"]) == 0
    t = load_file(str(out / "model.safetensors"))
    loaded = gptqmodel.GPTQModel.load(str(out), device="cpu")
    layer = loaded.model.model.layers[1].mlp.down_proj
    theirs = layer.dequantize_weight().float().numpy()
    ours = _decode_checkpoint(t, "model.layers.1.mlp.down_proj")
    theirs = theirs.T if theirs.shape != ours.shape else theirs
    # they decode in bfloat16: 8 significant bits
    assert np.abs(theirs - ours).max() <= 2 ** -7 * np.abs(ours).max()


def test_cli_errors_are_one_line(lm, tmp_path, capsys):
    model = str(lm / "model")
    cases = [
        (["quantize", model, "--preset", "Q4_0", "--method", "gptq", "--report",
          str(tmp_path / "r.json")], "needs --data"),
        (["quantize", model, "--preset", "Q4_0", "--data", str(lm / "calib.txt"), "--report",
          str(tmp_path / "r.json")], "only with --method gptq"),
        (["quantize", model, "--preset", "Q4_0", "--gptq-block-size", "64", "--data",
          str(lm / "calib.txt"), "--report", str(tmp_path / "r.json")],
         "--data, --gptq-block-size: only with --method gptq"),
        (["quantize", model, "--preset", "Q4_0", "--method", "gptq", "--data",
          str(tmp_path / "missing.txt"), "--report", str(tmp_path / "r.json")],
         "no such calibration file"),
        (["export", model, "--format", "hf-gptq", "-o", str(tmp_path / "o")],
         "add --method gptq"),
    ]
    for args, text in cases:
        assert main(args) != 0
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_quantize_cli_reports_gptq_against_plain(lm, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["quantize", str(lm / "model"), "--preset", "Q4_K_M", "--method", "gptq",
                 "--data", str(lm / "calib.txt"), "--calib-ctx", "48", "--calib-windows", "8",
                 "--report", str(report), "--quiet"]) == 0
    assert "GPTQ: 15 tensors" in capsys.readouterr().out  # 14 block linears and the head
    doc = json.loads(report.read_text())
    rows = [r for r in doc["tensors"] if r.get("method") == "gptq"]
    assert len(rows) == 15
    assert sum(r["output_error_gptq"] for r in rows) < sum(r["output_error_plain"] for r in rows)
    assert {r["name"] for r in doc["tensors"]} >= {"model.embed_tokens.weight"}


def test_cancel_mid_gptq_leaves_no_file_and_no_temp_folder(lm, tmp_path, monkeypatch):
    import tempfile

    from qtstudio.jobs import Cancelled, CancelToken

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the GPTQ store goes
    out = tmp_path / "out"
    out.mkdir()
    token = CancelToken()
    with open_model(lm / "model") as m:
        plan = resolve_plan(m, Recipe(preset="Q4_0", pure=True), target_format="gguf")
        calib = calibration_windows(m, lm / "calib.txt", ctx=32, windows=2)
        job = gptq_export_job(m, plan, out / "model.gguf", calib, cancel=token)
        seen = []
        with pytest.raises(Cancelled):
            for p in job:
                seen.append(p.name)
                if p.name.endswith("k_proj.weight"):  # inside block 0, GPTQ under way
                    token.cancel()
    assert any(n.endswith("q_proj.weight") for n in seen)
    assert list(out.iterdir()) == []
    assert list(temp.iterdir()) == []
