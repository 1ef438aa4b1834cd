"""GGUF files from our exporter, loaded and run by llama.cpp (llama-cpp-python).

Oracles: transformers for logits and embeddings, llama.cpp's own llama_model_quantize for
bytes, the gguf package's decoders for what a quantized file holds.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qtstudio.core.plan import resolve_plan  # noqa: E402
from qtstudio.core.presets import PRESETS  # noqa: E402
from qtstudio.core.recipe import Recipe, Rule  # noqa: E402
from qtstudio.export.gguf import export_gguf  # noqa: E402
from qtstudio.formats import open_model  # noqa: E402
from qtstudio.formats.imatrix import load_imatrix, save_imatrix_gguf, save_imatrix_legacy  # noqa: E402
from tests.helpers.oracles import quiet_stderr  # noqa: E402
from tests.helpers.tiny_models import (  # noqa: E402
    build_tiny_bert,
    build_tiny_llama,
    use_sentencepiece_tokenizer,
)

pytestmark = pytest.mark.slow

TOKENS = [5, 17, 42, 99, 100, 7, 250, 3, 64, 128, 31, 200]
TEXT = "the quick brown fox jumps over the lazy dog, hello world"


def _export(src, out, recipe, **kw):
    with open_model(src) as m:
        return export_gguf(m, resolve_plan(m, recipe, has_imatrix="imatrix" in kw), out, **kw)


def _llama_logits(path, tokens):
    with quiet_stderr():
        llm = llama_cpp.Llama(str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2,
                              vocab_only=False)
        llm.eval(tokens)
        out = np.array(llm.scores[: len(tokens)], dtype=np.float32)
        llm.close()
    return out


def _hf_logits(folder, tokens, state=None):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if state is not None:
        model.load_state_dict(state, strict=False)
    with torch.no_grad():
        return model.eval()(torch.tensor([tokens])).logits[0].numpy()


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _dequantized_state(folder, gguf_path):
    """HF state dict rebuilt from what the GGUF file holds (gguf package decoders)."""
    cfg = transformers.AutoConfig.from_pretrained(folder)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    stored = {t.name: gguf.quants.dequantize(t.data, t.tensor_type)
              for t in gguf.GGUFReader(gguf_path).tensors}
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    state = {}
    for name, p in model.state_dict().items():
        g = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        w = np.asarray(stored[g], dtype=np.float32).reshape(p.shape)
        heads = n_head if g.endswith("attn_q.weight") else n_kv if g.endswith(
            "attn_k.weight") else None
        if heads:  # undo the rotary row interleave written for ggml
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(p.shape)
        state[name] = torch.from_numpy(np.array(w, dtype=np.float32))
    return state


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("llama") / "hf")


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "llama-tied"])
def test_f32_logits_match_transformers(tmp_path, model_type):
    folder = build_tiny_llama(tmp_path / "hf", model_type=model_type.split("-")[0], seed=1,
                              tie_embeddings=model_type.endswith("tied"))
    out = tmp_path / "f32.gguf"
    _export(folder, out, Recipe(preset="F32"))
    got = _llama_logits(out, TOKENS)
    ref = _hf_logits(folder, TOKENS)
    assert _rel(got, ref) < 2e-3
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("recipe", [
    Recipe(preset="Q4_K_M"),
    Recipe(rules=[Rule.parse(r"attn_(q|k)\.=Q8_0", target="gguf_name"),
                  Rule.parse(r"attn_v=Q6_K", target="gguf_name"),
                  Rule.parse(r"ffn_down=Q5_K", target="gguf_name"),
                  Rule.parse(r"ffn_.*=Q4_0", target="gguf_name"),
                  Rule.parse(r"token_embd=Q8_0", target="gguf_name")],
           float_encoding="F16", default_encoding="IQ4_NL"),
], ids=["Q4_K_M", "custom-mix"])
def test_quantized_logits_within_quantization_error(tiny_llama, tmp_path, recipe):
    out = tmp_path / "q.gguf"
    _export(tiny_llama, out, recipe)
    got = _llama_logits(out, TOKENS)
    float_ref = _hf_logits(tiny_llama, TOKENS)
    # transformers running exactly the weights the file holds: what is left is llama.cpp's
    # own arithmetic (it also rounds activations to 8 bits for quantized matmuls)
    quant_ref = _hf_logits(tiny_llama, TOKENS, _dequantized_state(tiny_llama, out))
    quant_error = _rel(quant_ref, float_ref)
    print(f"quantization error {quant_error:.4f}, llama.cpp vs the same weights "
          f"{_rel(got, quant_ref):.4f}, vs float {_rel(got, float_ref):.4f}")
    assert quant_error > 1e-3  # the plan really quantized something
    assert _rel(got, quant_ref) < 0.25 * quant_error + 5e-3
    assert _rel(got, float_ref) < 1.5 * quant_error


def test_tokenizer_matches_hf(tiny_llama, tmp_path):
    from tokenizers import Tokenizer

    out = tmp_path / "f16.gguf"
    _export(tiny_llama, out, Recipe(preset="F16"))
    with quiet_stderr():
        llm = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
        ours = llm.tokenize(TEXT.encode(), add_bos=False)
        llm.close()
    assert ours == Tokenizer.from_file(str(tiny_llama / "tokenizer.json")).encode(TEXT).ids


def test_sentencepiece_tokenizer_model(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    folder = build_tiny_llama(tmp_path / "hf", seed=3)
    proto = use_sentencepiece_tokenizer(folder)
    out = tmp_path / "spm.gguf"
    _export(folder, out, Recipe(preset="Q8_0"))
    f = gguf.GGUFReader(out).fields
    assert f["tokenizer.ggml.model"].contents() == "llama"
    assert f["tokenizer.ggml.bos_token_id"].contents() == 1
    sp = spm.SentencePieceProcessor(model_proto=proto)
    with quiet_stderr():
        llm = llama_cpp.Llama(str(out), n_ctx=64, verbose=False, n_threads=2)
        ours = llm.tokenize(TEXT.encode(), add_bos=False)
        llm.eval(ours[:8])  # the model runs with this vocabulary
        llm.close()
    assert ours == sp.encode(TEXT)


@pytest.fixture(scope="module")
def f16_source(tmp_path_factory):
    """An F16 GGUF with 8 blocks (so the layer rules of the mixtures show) and an FFN width
    of 352, not a multiple of 256 (so the shape fallbacks show)."""
    root = tmp_path_factory.mktemp("src")
    folder = build_tiny_llama(root / "hf", layers=8, intermediate=352, hidden=256, seed=2)
    path = root / "f16.gguf"
    _export(folder, path, Recipe(preset="F16"))
    return path


def _llama_quantize(src, dst, preset, imatrix=None):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = PRESETS[preset].ftype
    params.nthread = 2
    keep = []
    if imatrix is not None:
        names = sorted(imatrix.entries)
        arr = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()
        for i, n in enumerate(names):
            v = np.ascontiguousarray(imatrix.entries[n], dtype=np.float32)
            keep.append(v)
            arr[i].name = n.encode()
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(names)].name = None
        keep.append(arr)
        params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    with quiet_stderr():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                            ctypes.byref(params))
    assert rc == 0


def _fields(reader):
    return {k: (f.types, b"".join(bytes(p.tobytes()) for p in f.parts[2:]))
            for k, f in reader.fields.items()}


def _compare_tensors(ref_path, our_path):
    ref, ours = gguf.GGUFReader(ref_path), gguf.GGUFReader(our_path)
    rt = {t.name: t for t in ref.tensors}
    ot = {t.name: t for t in ours.tensors}
    assert set(rt) == set(ot)
    for name, t in rt.items():
        assert ot[name].tensor_type == t.tensor_type, name
        assert bytes(ot[name].data.tobytes()) == bytes(t.data.tobytes()), name
    return ref, ours


@pytest.mark.parametrize("preset", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S",
                                    "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
                                    "Q6_K", "F16", "BF16", "F32"])
def test_preset_equals_llama_quantize(f16_source, tmp_path, preset):
    ref_path, our_path = tmp_path / "ref.gguf", tmp_path / "ours.gguf"
    _llama_quantize(f16_source, ref_path, preset)
    _export(f16_source, our_path, Recipe(preset=preset))
    ref, ours = _compare_tensors(ref_path, our_path)
    assert _fields(ours) == _fields(ref)  # every key, type and value (order aside)
    # and the tensor order is the source's
    assert [t.name for t in ours.tensors] == [t.name for t in gguf.GGUFReader(f16_source).tensors]


def test_tensor_type_rules_equal_llama_quantize(f16_source, tmp_path):
    """Our rules and llama-quantize --tensor-type on the same lines give the same file."""
    lines = ["ffn_up=iq4_xs", "attn_output=q5_0", r"blk\.[0-3]\.ffn_gate=q8_0",
             "attn_k=iq4_nl", "ffn_gate=tq2_0", "ffn_down=q3_k"]
    ref_path, our_path = tmp_path / "ref.gguf", tmp_path / "ours.gguf"
    _export(f16_source, our_path, Recipe.from_tensor_type_lines(lines, preset="Q4_K_M"))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = PRESETS["Q4_K_M"].ftype
    params.nthread = 2
    arr = (llama_cpp.llama_model_tensor_override * (len(lines) + 1))()
    for i, line in enumerate(lines):
        pattern, type_name = line.split("=")
        arr[i].pattern = pattern.encode()
        arr[i].type = int(gguf.GGMLQuantizationType[type_name.upper()])
    arr[len(lines)].pattern = None
    params.tt_overrides = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    with quiet_stderr():
        assert llama_cpp.llama_model_quantize(str(f16_source).encode(), str(ref_path).encode(),
                                              ctypes.byref(params)) == 0
    _, ours = _compare_tensors(ref_path, our_path)
    kinds = {t.tensor_type.name for t in ours.tensors}
    assert {"IQ4_XS", "IQ4_NL", "TQ2_0", "Q8_0", "Q5_0"} <= kinds


def _calibration(src):
    rng = np.random.default_rng(7)
    sums = {}
    with open_model(src) as m:
        for t in m.tensors:
            if len(t.shape) == 2 and t.name != "token_embd.weight":
                sums[t.name] = (rng.random(t.shape[-1]) ** 3 * 40).astype(np.float32)
    return sums


@pytest.mark.parametrize("fmt", ["gguf", "legacy"])
@pytest.mark.parametrize("preset", ["Q4_K_M", "Q4_0", "Q2_K"])
def test_imatrix_bytes_equal_llama_quantize(f16_source, tmp_path, preset, fmt):
    sums = _calibration(f16_source)
    path = tmp_path / ("im.gguf" if fmt == "gguf" else "im.dat")
    if fmt == "gguf":
        save_imatrix_gguf(path, sums, dict.fromkeys(sums, 5.0), datasets=["cal.txt"],
                          chunk_count=5, chunk_size=128)
    else:
        save_imatrix_legacy(path, sums, dict.fromkeys(sums, 5), chunk_count=5, dataset="c")
    im = load_imatrix(path)
    ref_path, our_path = tmp_path / "ref.gguf", tmp_path / "ours.gguf"
    _llama_quantize(f16_source, ref_path, preset, imatrix=im)
    _export(f16_source, our_path, Recipe(preset=preset), imatrix=im)
    _compare_tensors(ref_path, our_path)
    plain = tmp_path / "plain.gguf"
    _export(f16_source, plain, Recipe(preset=preset))
    differs = [a.name for a, b in zip(gguf.GGUFReader(plain).tensors,
                                      gguf.GGUFReader(our_path).tensors, strict=True)
               if bytes(a.data.tobytes()) != bytes(b.data.tobytes())]
    assert differs  # the matrix was really used


def test_bert_embeddings_match_transformers(tmp_path):
    from tokenizers import Tokenizer

    folder = build_tiny_bert(tmp_path / "bert")
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(TEXT).ids
    model = transformers.BertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).last_hidden_state[0].numpy().mean(0)
    errors = {}
    for preset in ("F32", "Q8_0"):
        out = tmp_path / f"{preset}.gguf"
        _export(folder, out, Recipe(preset=preset))
        with quiet_stderr():
            llm = llama_cpp.Llama(str(out), embedding=True, n_ctx=64, verbose=False,
                                  n_threads=2)
            assert llm.tokenize(TEXT.encode(), add_bos=True) == ids
            got = np.array(llm.embed(TEXT, normalize=False), dtype=np.float32)
            llm.close()
        errors[preset] = _rel(got, ref)
    assert errors["F32"] < 1e-3
    assert errors["F32"] < errors["Q8_0"] < 0.05
