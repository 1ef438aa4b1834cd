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
from qtstudio.core.qtensor import dequantize, quantize  # noqa: E402
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


def _weighted_error(w: np.ndarray, enc: str, imatrix: np.ndarray | None,
                    importance: np.ndarray) -> float:
    """sum_j importance_j * (w_ij - q_ij)^2: the diagonal estimate of the output error that an
    importance matrix is built to lower, here with another text's activations."""
    d = dequantize(quantize(w, enc, imatrix=imatrix))
    return float((((w - d) ** 2) * importance[None, :]).sum())


# The KL claim holds for IQ4_XS and Q4_K_M; for Q3_K_M, ggml's imatrix search (our bytes are
# ggml's, golden vectors) lowers every matrix's weighted error yet not this small model's KL
# (measured 1.49e-3 plain, 1.56e-3 with the imatrix), so that case asserts the former only.
@pytest.mark.parametrize(("recipe", "kl_drops"),
                         [(Recipe(preset="Q3_K_M"), False),
                          (Recipe(default_encoding="IQ4_XS"), True),
                          (Recipe(preset="Q4_K_M"), True)], ids=["Q3_K", "IQ4_XS", "Q4_K_M"])
def test_imatrix_from_one_text_lowers_error_on_another(lm, texts, tmp_path, recipe, kl_drops):
    path, held_out = tmp_path / "im.gguf", tmp_path / "held_out.gguf"
    for text, out in ((texts[0], path), (texts[1], held_out)):
        assert main(["imatrix", str(lm), "--data", str(text), "--ctx", "64", "--chunks", "40",
                     "-o", str(out), "--quiet"]) == 0
    im, seen = load_imatrix(path), load_imatrix(held_out)
    with open_model(lm) as m:
        plan = resolve_plan(m, recipe, has_imatrix=True)
        checked = 0
        for t in m.tensors:
            enc = plan.encoding_for(t.name)
            weights = im.weights_for(t.gguf_name or "", t.shape[-1])
            if weights is None or not enc.uses_imatrix:
                continue
            w = np.ascontiguousarray(m.load(t.name), dtype=np.float32)
            importance = seen.entries[t.gguf_name]
            plain = _weighted_error(w, enc.name, None, importance)
            weighted = _weighted_error(w, enc.name, weights, importance)
            assert weighted < plain, (t.name, enc.name, weighted, plain)
            checked += 1
        assert checked == 14
        if kl_drops:
            kl = {}
            for label, imx in (("plain", None), ("imatrix", im)):
                p = resolve_plan(m, recipe, has_imatrix=imx is not None)
                kl[label] = run_job(eval_job(m, p, texts[1], ctx=64, chunks=48,
                                             imatrix=imx)).kl_mean
            assert kl["imatrix"] < kl["plain"], kl
