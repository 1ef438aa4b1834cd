"""`imatrix`: values against forward hooks on the transformers model, both file formats, and
the effect that matters: an imatrix from one text lowers KL on another text."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qtstudio.calib import engine_kind  # noqa: E402
from qtstudio.calib.data import prepare_data  # noqa: E402
from qtstudio.cli import main  # noqa: E402
from qtstudio.core.plan import resolve_plan  # noqa: E402
from qtstudio.core.recipe import Recipe  # noqa: E402
from qtstudio.formats import open_model  # noqa: E402
from qtstudio.formats.imatrix import load_imatrix  # noqa: E402
from qtstudio.jobs import run_job  # noqa: E402
from qtstudio.jobs.eval import eval_job  # noqa: E402
from qtstudio.jobs.imatrix import imatrix_job  # noqa: E402
from tests.helpers.trained_lm import corpus_file  # noqa: E402

HF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
            "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("texts")
    return (corpus_file(d / "calib_a.txt", 0, 60_000),
            corpus_file(d / "eval_b.txt", 330_000, 380_000))  # beyond the training text


def test_values_equal_transformers_hooks(lm, texts):
    with open_model(lm) as m:
        cd = prepare_data(m, engine_kind(m), texts[0], ctx=64, chunks=5)
        result = run_job(imatrix_job(m, cd))
    model = transformers.AutoModelForCausalLM.from_pretrained(lm, dtype=torch.float32).eval()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(key):
        def f(_m, inp, _o):
            x = inp[0].reshape(-1, inp[0].shape[-1]).double()
            sums[key] = sums.get(key, 0) + (x ** 2).sum(0)
            counts[key] = counts.get(key, 0) + x.shape[0]
        return f

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            blk = int(name.split(".layers.")[1].split(".")[0])
            mod.register_forward_hook(hook(f"blk.{blk}.{HF_NAMES[name.rsplit('.', 1)[1]]}.weight"))
    with torch.no_grad():
        model(torch.from_numpy(cd.windows.tokens))
    assert sorted(result.sums) == sorted(sums)  # no output head, as llama-imatrix
    for k, ref in sums.items():
        assert result.counts[k] == counts[k] == 5 * 64
        np.testing.assert_allclose(result.sums[k], ref.numpy(), rtol=2e-4, atol=1e-6)
    assert result.chunk_count == 5 and result.chunk_size == 64


def test_cli_writes_both_formats_atomically(lm, texts, tmp_path, capsys):
    g, d = tmp_path / "im.gguf", tmp_path / "im.dat"
    for out in (g, d):
        assert main(["imatrix", str(lm), "--data", str(texts[0]), "--ctx", "64", "--chunks",
                     "3", "-o", str(out), "--quiet"]) == 0
    a, b = load_imatrix(g), load_imatrix(d)
    assert a.format == "gguf" and b.format == "legacy"
    assert sorted(a.entries) == sorted(b.entries) and len(a) == 14
    for k in a.entries:
        np.testing.assert_allclose(a.entries[k], b.entries[k], rtol=1e-6)
    assert a.chunk_count == 3 and a.chunk_size == 64 and a.datasets == [str(texts[0])]
    assert "wrote" in capsys.readouterr().out
    # bad input: nothing written
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\x00\xff\x00")
    out = tmp_path / "never.gguf"
    assert main(["imatrix", str(lm), "--data", str(bad), "-o", str(out), "--quiet"]) == 2
    assert not out.exists() and str(bad) in capsys.readouterr().err


@pytest.mark.parametrize("recipe", [Recipe(preset="Q3_K_M"), Recipe(default_encoding="IQ4_XS"),
                                    Recipe(preset="Q4_K_M")], ids=["Q3_K", "IQ4_XS", "Q4_K_M"])
def test_imatrix_from_one_text_lowers_kl_on_another(lm, texts, tmp_path, recipe):
    path = tmp_path / "im.gguf"
    assert main(["imatrix", str(lm), "--data", str(texts[0]), "--ctx", "64", "--chunks", "40",
                 "-o", str(path), "--quiet"]) == 0
    im = load_imatrix(path)
    kl = {}
    with open_model(lm) as m:
        for label, imx in (("plain", None), ("imatrix", im)):
            plan = resolve_plan(m, recipe, has_imatrix=imx is not None)
            r = run_job(eval_job(m, plan, texts[1], ctx=64, chunks=48, imatrix=imx))
            kl[label] = r.kl_mean
    assert kl["imatrix"] < kl["plain"], kl
