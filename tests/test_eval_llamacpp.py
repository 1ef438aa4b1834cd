"""Our evaluator against llama.cpp itself (llama-cpp-python), on the trained test model.

- reference logits equal llama.cpp's on an F32 export;
- our tokens equal llama.cpp's tokenization of the same text (HF tokenizer.json and the
  GGUF-metadata tokenizer);
- eval's kl_mean for Q8_0 / Q4_K_M / Q2_K is within 30% of the KL computed from llama.cpp's own
  logits of each exported GGUF against the F32 export, same windows, and grows as bits shrink;
- llama.cpp's llama_model_quantize, given our imatrix file as read by the gguf package, writes
  the bytes our export writes with it.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from qtstudio.calib import engine_kind, load_tokenizer, open_engine  # noqa: E402
from qtstudio.calib.data import prepare_data  # noqa: E402
from qtstudio.cli import main  # noqa: E402
from qtstudio.core.plan import resolve_plan  # noqa: E402
from qtstudio.core.presets import PRESETS  # noqa: E402
from qtstudio.core.recipe import Recipe  # noqa: E402
from qtstudio.export.gguf import export_gguf  # noqa: E402
from qtstudio.formats import open_model  # noqa: E402
from qtstudio.formats.imatrix import load_imatrix  # noqa: E402
from qtstudio.jobs import run_job  # noqa: E402
from qtstudio.jobs.eval import eval_job  # noqa: E402
from tests.helpers.oracles import llama_window_logits, quiet_stderr  # noqa: E402
from tests.helpers.trained_lm import corpus_file  # noqa: E402

pytestmark = pytest.mark.slow
CTX, CHUNKS = 64, 6


def _export(src, out, recipe, **kw):
    with open_model(src) as m:
        export_gguf(m, resolve_plan(m, recipe, has_imatrix="imatrix" in kw), out, **kw)
    return out


def _llama(path):
    with quiet_stderr():
        return llama_cpp.Llama(str(path), n_ctx=CTX, logits_all=True, verbose=False,
                               n_threads=2, n_batch=CTX)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return corpus_file(tmp_path_factory.mktemp("data") / "held_out.txt", 330_000, 370_000)


@pytest.fixture(scope="module")
def windows(lm, data):
    with open_model(lm) as m:
        return prepare_data(m, engine_kind(m), data, ctx=CTX, chunks=CHUNKS).windows.tokens


@pytest.fixture(scope="module")
def f32_gguf(lm, tmp_path_factory):
    return _export(lm, tmp_path_factory.mktemp("f32") / "f32.gguf", Recipe(preset="F32"))


def test_reference_logits_equal_llama_cpp(lm, f32_gguf, windows):
    got = llama_window_logits(f32_gguf, windows, ctx=CTX)
    with open_model(lm) as m:
        eng = open_engine(m)
        h = eng.embed(windows)
        for i in range(eng.n_blocks):
            h = eng.run_block(i, h)
        ours = eng.logits(h.reshape(-1, h.shape[-1]), eng.load_head()).reshape(got.shape)
    ours = ours.numpy()
    assert np.linalg.norm(ours - got) / np.linalg.norm(got) < 2e-3
    assert (ours.argmax(-1) == got.argmax(-1)).mean() > 0.99


def test_tokens_equal_llama_cpp(lm, f32_gguf, data):
    text = data.read_text(encoding="utf-8")[:20_000]
    llm = _llama(f32_gguf)
    theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    llm.close()
    for src in (lm, f32_gguf):
        with open_model(src) as m:
            assert load_tokenizer(m).encode(text) == theirs, src


def test_kl_agrees_with_llama_cpp_and_grows(lm, f32_gguf, windows, data, tmp_path):
    ref = _log_softmax(llama_window_logits(f32_gguf, windows, ctx=CTX)[:, :-1])
    ours, theirs = {}, {}
    for preset in ("Q8_0", "Q4_K_M", "Q2_K"):
        q = _export(lm, tmp_path / f"{preset}.gguf", Recipe(preset=preset))
        lq = _log_softmax(llama_window_logits(q, windows, ctx=CTX)[:, :-1])
        theirs[preset] = float((np.exp(ref) * (ref - lq)).sum(-1).mean())
        with open_model(lm) as m:
            r = run_job(eval_job(m, resolve_plan(m, Recipe(preset=preset)), data, ctx=CTX,
                                 chunks=CHUNKS))
        ours[preset] = r.kl_mean
        assert r.tokens == windows.shape[0] * (CTX - 1)
    print("kl ours / llama.cpp:", {p: (ours[p], theirs[p]) for p in ours})
    for p in ours:
        assert 0.7 < ours[p] / theirs[p] < 1.3, (p, ours, theirs)
    assert ours["Q8_0"] < ours["Q4_K_M"] < ours["Q2_K"]
    assert theirs["Q8_0"] < theirs["Q4_K_M"] < theirs["Q2_K"]


def _gguf_imatrix_weights(path):
    """sum / count per tensor, read with the gguf package (not our reader)."""
    reader = gguf.GGUFReader(path)
    t = {x.name: np.asarray(x.data, np.float32) for x in reader.tensors}
    return {k[: -len(".in_sum2")]: (v.reshape(-1) / t[k[: -len(".in_sum2")] + ".counts"][0])
            for k, v in t.items() if k.endswith(".in_sum2")}


def test_llama_quantize_takes_our_imatrix(lm, data, tmp_path):
    im_path = tmp_path / "im.gguf"
    assert main(["imatrix", str(lm), "--data", str(data), "--ctx", str(CTX), "--chunks", "8",
                 "-o", str(im_path), "--quiet"]) == 0
    f16 = _export(lm, tmp_path / "f16.gguf", Recipe(preset="F16"))
    weights = _gguf_imatrix_weights(im_path)
    names = sorted(weights)
    arr = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()
    keep = []
    for i, n in enumerate(names):
        v = np.ascontiguousarray(weights[n], dtype=np.float32)
        keep.append(v)
        arr[i].name = n.encode()
        arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[i].size = v.size
    arr[len(names)].name = None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = PRESETS["Q4_K_M"].ftype
    params.nthread = 2
    params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    theirs = tmp_path / "theirs.gguf"
    with quiet_stderr():
        assert llama_cpp.llama_model_quantize(str(f16).encode(), str(theirs).encode(),
                                              ctypes.byref(params)) == 0
    ours = _export(f16, tmp_path / "ours.gguf", Recipe(preset="Q4_K_M"),
                   imatrix=load_imatrix(im_path))
    rt = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
    ot = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    assert set(rt) == set(ot)
    for name, t in rt.items():
        assert ot[name].tensor_type == t.tensor_type, name
        assert bytes(ot[name].data.tobytes()) == bytes(t.data.tobytes()), name


@pytest.mark.parametrize("kind", ["sentencepiece", "llama3-split", "bert"])
def test_gguf_metadata_tokenizers_equal_llama_cpp(tmp_path, kind):
    from qtstudio.calib.bpe_pretokenizer import LLAMA3_PATTERN
    from tests.helpers.tiny_models import (
        build_tiny_bert,
        build_tiny_llama,
        use_sentencepiece_tokenizer,
    )

    text = ("the quick brown fox jumps over the lazy dog. Numbers 12345 and 678; "
            "hello world, don't stop!\n  two  spaces\tand a tab")
    if kind == "bert":
        folder = build_tiny_bert(tmp_path / "hf")
    else:
        folder = build_tiny_llama(tmp_path / "hf", pre_split=LLAMA3_PATTERN
                                  if kind == "llama3-split" else None)
        if kind == "sentencepiece":
            use_sentencepiece_tokenizer(folder)
    gg = _export(folder, tmp_path / "m.gguf", Recipe(preset="F32"))
    with quiet_stderr():
        llm = llama_cpp.Llama(str(gg), vocab_only=True, verbose=False)
    theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    if kind == "bert":  # llama.cpp's WordPiece wraps the text in CLS ... SEP
        theirs = [t for t in theirs if t not in (llm.token_bos(), llm.token_eos())]
    llm.close()
    with open_model(gg) as m:
        assert load_tokenizer(m).encode(text) == theirs
