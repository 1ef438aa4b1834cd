"""The streamed torch forward pass against transformers, from every source we open.

Oracles: transformers' own modules (logits, sentence embeddings, forward hooks on nn.Linear
inputs); our GGUF export read back through the GGUF path; the codecs' decode(quantize(w)).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qtstudio.calib import (  # noqa: E402
    CalibrationError,
    DecoderEngine,
    EncoderEngine,
    open_engine,
    pad_sentences,
    plan_weight_fn,
)
from qtstudio.core.plan import resolve_plan  # noqa: E402
from qtstudio.core.qtensor import dequantize, quantize  # noqa: E402
from qtstudio.core.recipe import Recipe  # noqa: E402
from qtstudio.export.gguf import export_gguf  # noqa: E402
from qtstudio.formats import open_model  # noqa: E402
from tests.helpers.tiny_models import build_tiny_bert, build_tiny_llama  # noqa: E402

TOKENS = np.array([[5, 17, 42, 99, 100, 7, 250, 3, 64, 128, 31, 200],
                   [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                   [300, 12, 12, 12, 40, 41, 42, 43, 44, 9, 0, 1]])


def _hf_logits(folder, tokens):
    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return m(torch.from_numpy(tokens)).logits.numpy()


def _ours(path, tokens, **kw):
    with open_model(path) as m:
        eng = open_engine(m, batch_tokens=24, **kw)  # two windows per batch: batching is used
        h = eng.embed(tokens)
        for i in range(eng.n_blocks):
            h = eng.run_block(i, h)
        return eng.logits(h.reshape(-1, h.shape[-1]), eng.load_head()).reshape(
            *tokens.shape, -1).numpy()


def _export(src, out, recipe):
    with open_model(src) as m:
        export_gguf(m, resolve_plan(m, recipe), out)
    return out


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("llama") / "hf", seed=3)


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "llama-tied"])
def test_logits_match_transformers_hf_and_gguf(tmp_path, model_type):
    folder = build_tiny_llama(tmp_path / "hf", model_type=model_type.split("-")[0], seed=1,
                              tie_embeddings=model_type.endswith("tied"))
    ref = _hf_logits(folder, TOKENS)
    scale = np.abs(ref).max()
    assert np.abs(_ours(folder, TOKENS) - ref).max() < 1e-5 * scale
    # the F32 GGUF export: the q/k rows come back from ggml's interleave (llama) or not (qwen2)
    gg = _export(folder, tmp_path / "f32.gguf", Recipe(preset="F32"))
    assert np.abs(_ours(gg, TOKENS) - ref).max() < 1e-5 * scale


def test_torch_state_dict_source(tmp_path, llama):
    ref = _hf_logits(llama, TOKENS)
    m = transformers.AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)
    folder = tmp_path / "pt"
    folder.mkdir()
    torch.save(m.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text((llama / "config.json").read_text())
    assert np.abs(_ours(folder, TOKENS) - ref).max() < 1e-5 * np.abs(ref).max()


def test_quantized_gguf_equals_plan_on_source(tmp_path, llama):
    """A Q4_K GGUF decoded by our codecs is the HF model under the same plan's weight fn."""
    recipe = Recipe(preset="Q4_K_M")
    gg = _export(llama, tmp_path / "q4km.gguf", recipe)
    with open_model(llama) as m:
        fn = plan_weight_fn(m, resolve_plan(m, recipe))
        expect = _ours(llama, TOKENS, weight_fn=fn)
    got = _ours(gg, TOKENS)
    assert np.abs(got - expect).max() < 1e-4 * np.abs(expect).max()
    # and the plan really changed the model
    assert np.abs(expect - _hf_logits(llama, TOKENS)).max() > 1e-3


def test_requantizing_a_quantized_gguf_needs_permission(tmp_path, llama):
    gg = _export(llama, tmp_path / "q4km.gguf", Recipe(preset="Q4_K_M"))
    with open_model(gg) as m:
        plan = resolve_plan(m, Recipe(preset="Q2_K"))
        with pytest.raises(CalibrationError, match="allow-requantize"):
            plan_weight_fn(m, plan)
        plan_weight_fn(m, plan, allow_requantize=True)


def test_observer_sees_every_linear_input_as_transformers(llama):
    model = transformers.AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32).eval()
    seen: dict[str, torch.Tensor] = {}
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            blk = int(name.split(".layers.")[1].split(".")[0])
            key = f"blk.{blk}.{names[name.rsplit('.', 1)[1]]}.weight"
            hooks.append(mod.register_forward_hook(
                lambda _m, inp, _o, key=key: seen.__setitem__(
                    key, inp[0].detach().reshape(-1, inp[0].shape[-1]).clone())))
    with torch.no_grad():
        model(torch.from_numpy(TOKENS))
    ours: dict[str, list[torch.Tensor]] = {}
    with open_model(llama) as m:
        eng = DecoderEngine(m, batch_tokens=24,
                            observer=lambda n, x: ours.setdefault(n, []).append(x.clone()))
        h = eng.embed(TOKENS)
        for i in range(eng.n_blocks):
            h = eng.run_block(i, h)
    assert sorted(ours) == sorted(seen)
    for k, ref in seen.items():
        got = torch.cat(ours[k])  # one call per window batch, in window order
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-5 * float(ref.abs().max())), k


def test_override_and_single_block_hooks(llama):
    with open_model(llama) as m:
        eng = DecoderEngine(m)
        h0 = eng.embed(TOKENS)
        w0 = eng.load_block(0)
        ref = eng.run_block(0, h0, weights=w0)
        assert torch.equal(ref, eng.run_block(0, h0))  # loading again changes nothing
        name = "blk.0.attn_v.weight"
        info = eng.access.info(name)
        cand = dequantize(quantize(m.load(info.name), "Q2_K"))
        swapped = eng.run_block(0, h0, weights=w0, overrides={name: cand})
        # the same tensor applied through a weight function gives the same block output
        fn = lambda i, w: cand if i.name == info.name else w  # noqa: E731
        via_fn = DecoderEngine(m, weight_fn=fn).run_block(0, h0)
        assert torch.allclose(swapped, via_fn, atol=1e-6)
        err = float(((swapped - ref) ** 2).mean() / (ref ** 2).mean())
        assert err > 0
        # the weights held by the caller are not changed by an override
        assert torch.equal(eng.run_block(0, h0, weights=w0), ref)
        with pytest.raises(ValueError, match="shape"):
            eng.run_block(0, h0, weights=w0, overrides={name: cand[:, :8]})


def test_bert_sentence_embeddings_match_transformers(tmp_path):
    folder = build_tiny_bert(tmp_path / "bert", seed=2)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    texts = ["the quick brown fox", "hello world, hello tokens and more tokens here",
             "numbers like 12345"]
    enc = tok(texts, padding=True, return_tensors="pt")
    model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    ref = (hidden * mask).sum(1) / mask.sum(1)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    inputs = pad_sentences(ids, cls_id, sep_id, 128)
    assert np.array_equal(inputs.ids, enc["input_ids"].numpy())
    for src in (folder, _export(folder, tmp_path / "bert.gguf", Recipe(preset="F32"))):
        with open_model(src) as m:
            eng = open_engine(m, batch_tokens=20)
            assert isinstance(eng, EncoderEngine)
            h = eng.embed(inputs)
            for i in range(eng.n_blocks):
                h = eng.run_block(i, h)
            got = eng.pool(h)
        cos = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
        assert float(cos.min()) > 0.99999, src


def test_demo_mlp_engine_matches_demo_module():
    from qtstudio.core import demo
    from qtstudio.jobs.demo_eval import build_module

    x, _ = demo.load_test_set()
    with torch.no_grad():
        ref = build_module()(torch.from_numpy(x)).numpy()
    with open_model(demo.demo_model_path()) as m:
        eng = open_engine(m)
        h = eng.embed(x)
        for i in range(eng.n_blocks):
            h = eng.run_block(i, h)
    assert np.allclose(h.numpy(), ref, atol=1e-5)


def test_unsupported_architecture_is_one_line(tmp_path):
    from safetensors.numpy import save_file

    save_file({"h.0.attn.c_attn.weight": np.zeros((8, 24), np.float32)},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_layer": 1}')
    with open_model(tmp_path) as m, pytest.raises(CalibrationError, match="gpt2") as err:
        open_engine(m)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
