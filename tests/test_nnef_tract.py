"""NNEF exports loaded and run by tract, compared with torch on the same dequantized weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

tract = pytest.importorskip("tract")

from qtstudio.export.nnef import export_nnef  # noqa: E402
from qtstudio.export.nnef.dat import read_header  # noqa: E402
from qtstudio.export.nnef.job import export_nnef_job  # noqa: E402
from qtstudio.export.nnef.sources import NoGraphError, demo_source, hf_source  # noqa: E402
from qtstudio.jobs import Cancelled, CancelToken  # noqa: E402


def _check(report, *, max_float_rel: float | None = None):
    v = report.verification
    assert v is not None and v["ok"], json.dumps(v, indent=1)
    for o in v["outputs"]:
        same = o["vs_torch_same_weights"]
        assert same["max_abs"] <= 1e-4 * same["scale"]
        if max_float_rel is not None:
            assert o["vs_float_model"]["rel_max"] <= max_float_rel
    return v


class Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(64, 96)
        self.norm = torch.nn.LayerNorm(96)
        self.fc2 = torch.nn.Linear(96, 32)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.norm(self.fc1(x)))
        h = torch.nn.functional.silu(self.fc2(h)) * torch.sigmoid(h[:, :32])
        return torch.softmax(self.head(torch.tanh(h)), dim=-1)


@pytest.mark.parametrize("plan, expect", [
    (None, {"fc1.weight": "F32"}),
    ("F16", {"fc1.weight": "F16", "norm.weight": "F32"}),
    ("Q4_0", {"fc1.weight": "Q4_0", "fc2.weight": "Q4_0", "head.weight": "Q4_0"}),
    ({"fc1.weight": "INT8_PT_SYM", "fc2.weight": "INT8_PC_ASYM", "head.weight": "INT8_PC_SYM",
      "norm.weight": "INT8_PT_ASYM", "fc1.bias": "F16"},
     {"fc1.weight": "INT8_PT_SYM", "fc2.weight": "INT8_PC_ASYM", "norm.weight": "INT8_PT_ASYM"}),
])
def test_mlp_encodings_run_in_tract(tmp_path, plan, expect):
    m = Mlp().eval()
    x = torch.randn(5, 64)
    r = export_nnef(m, plan, (x,), tmp_path / "m.nnef", verify=True)
    got = {t.name: t.encoding for t in r.tensors}
    for k, v in expect.items():
        assert got[k] == v
    _check(r)
    if plan == "F16":
        assert r.verification["outputs"][0]["vs_float_model"]["rel_max"] < 1e-2
    if isinstance(plan, dict):
        assert (tmp_path / "m.nnef" / "graph.quant").read_text().count(
            "zero_point_linear_quantize") == 4


def test_unsupported_encoding_is_a_visible_fallback(tmp_path):
    m = Mlp().eval()
    plan = {"fc1.weight": "Q4_K", "fc1.bias": "Q4_0", "norm.weight": "Q4_0"}
    r = export_nnef(m, plan, (torch.randn(2, 64),), tmp_path / "f.nnef", verify=True)
    fb = {t.name: (t.fallback_from, t.encoding, t.reason) for t in r.fallbacks}
    assert fb["fc1.weight"][:2] == ("Q4_K", "F16") and "cannot store Q4_K" in fb["fc1.weight"][2]
    assert fb["fc1.bias"][:2] == ("Q4_0", "F16") and "multiple of 32" in fb["fc1.bias"][2]
    assert fb["norm.weight"][:2] == ("Q4_0", "F16")
    assert r.to_dict()["fallbacks"]
    _check(r)


def test_q4_0_payload_is_ggml_bytes_and_mse_calibration_reported(tmp_path):
    from qtstudio.core.qtensor import quantize

    m = Mlp().eval()
    r = export_nnef(m, "Q4_0", (torch.randn(2, 64),), tmp_path / "mm.nnef")
    raw = (tmp_path / "mm.nnef" / "fc1.weight.dat").read_bytes()
    assert read_header(raw[:128])["item_type"] == 0x54523040
    assert raw[128:] == quantize(m.fc1.weight.detach().numpy(), "Q4_0").tobytes()
    r2 = export_nnef(m, "Q4_0", (torch.randn(2, 64),), tmp_path / "mse.nnef",
                     calibration="mse", verify=True)
    g_mm, g = r.q4_0_gain(), r2.q4_0_gain()
    assert g_mm["gain"] == 0 and g_mm["mse"] == g_mm["mse_minmax"]
    assert g["mse_minmax"] == pytest.approx(g_mm["mse"])
    assert g["gain"] > 0 and g["mse"] < g_mm["mse"]
    _check(r2)


class ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.c1 = torch.nn.Conv2d(2, 16, 4, padding=1)  # rows 2*4*4 = 32: Q4_0
        self.bn = torch.nn.BatchNorm2d(16)
        self.c2 = torch.nn.Conv1d(16, 8, 2, stride=2)  # rows 32: Q4_0
        self.fc = torch.nn.Linear(8 * 4, 4)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = torch.relu(self.bn(self.c1(x)))  # [1, 16, 9, 9]
        h = torch.nn.functional.max_pool2d(h, 2)  # [1, 16, 4, 4]
        h = h.flatten(2)  # [1, 16, 16]
        h = self.c2(h)  # [1, 8, 8]
        return self.fc(h.reshape(1, 2, 32)[:, :, :32])


def test_conv_net_with_q4_0_filters(tmp_path):
    m = ConvNet().eval()
    x = torch.randn(1, 2, 10, 10)
    out = tmp_path / "conv.nnef.tgz"
    r = export_nnef(m, {"c1.weight": "Q4_0", "c2.weight": "Q4_0", "fc.weight": "Q4_0"},
                    (x,), out, verify=True)
    enc = {t.name: t.encoding for t in r.tensors}
    assert enc["c2.weight"] == "Q4_0" and enc["fc.weight"] == "Q4_0"
    # c1 feeds batch norm, which tract folds into the filter: a visible fallback
    fb = {t.name: t for t in r.fallbacks}
    assert enc["c1.weight"] == "F16" and "batch norm" in fb["c1.weight"].reason
    assert out.is_file() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    _check(r)


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a = torch.nn.Linear(32, 8)
        self.b = torch.nn.Linear(32, 4)

    def forward(self, x, y):
        return self.a(x), torch.relu(self.b(y)) * 2


def test_two_inputs_two_outputs_and_module_state_kept(tmp_path):
    m = TwoHeads().train()
    r = export_nnef(m, "Q4_0", (torch.randn(2, 32), torch.randn(3, 32)), tmp_path / "two",
                    verify=True)
    assert [o["shape"] for o in r.verification["outputs"]] == [[2, 8], [3, 4]]
    assert m.training  # exporting does not flip the caller's module to eval
    _check(r)


def test_non_finite_weight_is_named(tmp_path):
    m = TwoHeads().eval()
    with torch.no_grad():
        m.a.weight[1, 3] = float("inf")
    with pytest.raises(ValueError, match=r"a\.weight: row 1"):
        export_nnef(m, "Q4_0", (torch.randn(2, 32), torch.randn(3, 32)), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_cancel_leaves_nothing(tmp_path):
    m = Mlp().eval()
    token = CancelToken()
    job = export_nnef_job(m, "Q4_0", (torch.randn(2, 64),), tmp_path / "c.nnef.tgz",
                          cancel=token)
    next(job)  # traced
    next(job)  # first tensor written into staging
    token.cancel()
    with pytest.raises(Cancelled):
        for _ in job:
            pass
    assert list(tmp_path.iterdir()) == []


def test_demo_model_exports_and_keeps_accuracy(tmp_path):
    from qtstudio.core.demo import load_test_set

    src = demo_source()
    r = export_nnef(src.module, {v: "Q4_0" for v in src.names.values() if "weight" in v},
                    src.example_inputs, tmp_path / "demo.nnef", verify=True,
                    name_map=src.names, calibration="mse")
    assert {t.encoding for t in r.tensors if t.name.endswith("weight")} <= {"Q4_0", "F16"}
    _check(r)
    x, y = load_test_set()
    runnable = tract.nnef().load(str(tmp_path / "demo.nnef")).into_runnable()
    n = src.example_inputs[0].shape[0]
    correct = 0
    for i in range(0, (len(x) // n) * n, n):
        out = runnable.run([x[i:i + n]])[0].to_numpy()
        correct += int((out.argmax(1) == y[i:i + n]).sum())
    assert correct / ((len(x) // n) * n) > 0.85


def test_checkpoint_job_with_core_plan(tmp_path):
    from qtstudio.core.demo import demo_model_path
    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe
    from qtstudio.export.nnef import export_checkpoint_job
    from qtstudio.formats import open_model
    from qtstudio.jobs import run_job

    with open_model(demo_model_path()) as model:
        plan = resolve_plan(model, Recipe(preset="Q8_0"), target_format="nnef")
    stages = []
    report = run_job(export_checkpoint_job(demo_model_path(), plan, tmp_path / "d.nnef.tgz",
                                           verify=True), lambda p: stages.append(p.stage))
    assert stages[0] == "build" and "write" in stages and stages[-1] == "verify"
    planned = {e.name: e.encoding for e in plan.entries}
    assert {t.name: t.encoding for t in report.tensors} == planned
    _check(report)


def test_checkpoint_without_graph_says_what_is_missing(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((4, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(NoGraphError, match=r"computation graph.*config\.json"):
        hf_source(tmp_path / "model.safetensors")
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    with pytest.raises(NoGraphError, match="GGUF"):
        hf_source(tmp_path / "x.gguf")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_arch_xyz"}))
    with pytest.raises(NoGraphError, match="no_such_arch_xyz"):
        hf_source(tmp_path)


def test_cli_export_demo(tmp_path, capsys):
    from qtstudio.cli import main

    out = tmp_path / "demo.nnef.tgz"
    rc = main(["export", "demo", "--format", "nnef", "--preset", "Q4_0", "-o", str(out),
               "--calibration", "mse", "--verify"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert out.is_file()
    assert "Q4_0" in text.out and "ok" in text.out and "gain" in text.out
    assert "%" in text.err  # progress bar


def test_cli_export_demo_with_recipe(tmp_path, capsys):
    from qtstudio.cli import main
    from qtstudio.core.recipe import Recipe, Rule

    recipe = Recipe(rules=[Rule(r"fc1\.weight", "INT8_PT_ASYM"), Rule(r"fc2\.weight", "Q4_0"),
                           Rule(r"fc3\.weight", "Q6_K")], float_encoding="F16")
    recipe.save(tmp_path / "r.json")
    out = tmp_path / "demo_dir"
    rc = main(["export", "demo", "--format", "nnef", "--recipe", str(tmp_path / "r.json"),
               "-o", str(out), "--verify", "--quiet"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "fc3.weight: Q6_K -> F16" in text.err  # the plan's fallback is shown
    # three F16 biases plus fc3.weight, which NNEF cannot hold as Q6_K
    assert "INT8_PT_ASYM x1" in text.out and "Q4_0 x1" in text.out and "F16 x4" in text.out
    assert (out / "graph.quant").is_file() and (out / "graph.nnef").is_file()


def test_cli_export_refuses_checkpoint_without_graph(tmp_path, capsys):
    from safetensors.numpy import save_file

    from qtstudio.cli import main

    save_file({"w": np.zeros((4, 32), np.float32)}, str(tmp_path / "w.safetensors"))
    rc = main(["export", str(tmp_path / "w.safetensors"), "--format", "nnef", "--preset", "Q4_0",
               "-o", str(tmp_path / "o.nnef")])
    assert rc == 2
    assert "config.json" in capsys.readouterr().err
    assert not (tmp_path / "o.nnef").exists()


@pytest.mark.slow
def test_tiny_llama_q4_0_and_int8(tmp_path):
    from tests.helpers.tiny_models import build_tiny_llama

    folder = build_tiny_llama(tmp_path / "llama", hidden=64, intermediate=128)
    src = hf_source(folder)
    plan = {n: ("INT8_PC_SYM" if "down_proj" in n else "Q4_0")
            for n in src.names.values() if n.endswith("proj.weight") or "embed" in n}
    r = export_nnef(src.module, plan, src.example_inputs, tmp_path / "llama.nnef.tgz",
                    name_map=src.names, calibration="mse", verify=True)
    enc = {t.name: t.encoding for t in r.tensors}
    assert enc["model.embed_tokens.weight"] == "Q4_0"
    assert enc["model.layers.0.mlp.down_proj.weight"] == "INT8_PC_SYM"
    assert r.constants == 3  # cos and sin tables and the causal mask, shared by both layers
    v = _check(r)
    assert v["outputs"][0]["vs_float_model"]["cosine"] > 0.9


@pytest.mark.slow
def test_tiny_bert_mixed(tmp_path):
    from tests.helpers.tiny_models import build_tiny_bert

    folder = build_tiny_bert(tmp_path / "bert", hidden=64, intermediate=128)
    src = hf_source(folder)
    plan = {n: "Q4_0" for n in src.names.values() if "attention" in n and n.endswith("weight")
            and "LayerNorm" not in n}
    plan.update({n: "F16" for n in src.names.values() if "intermediate" in n})
    r = export_nnef(src.module, plan, src.example_inputs, tmp_path / "bert.nnef",
                    name_map=src.names, verify=True)
    assert "Q4_0" in {t.encoding for t in r.tensors} and "F16" in {t.encoding for t in r.tensors}
    _check(r)


class PositionsFromIds(torch.nn.Module):
    """Roberta-style position ids (cumsum over a padding mask) and an index gather."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.tok = torch.nn.Embedding(40, 32)
        self.pos = torch.nn.Embedding(20, 32)
        self.register_buffer("table", torch.arange(20).reshape(1, 20) * 3 % 7)

    def forward(self, ids):
        mask = ids.ne(0).int()
        positions = (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + 1
        picked = torch.gather(self.table.expand(ids.shape[0], -1), 1, positions)
        h = self.tok(ids) + self.pos(positions) + picked.unsqueeze(-1).float()
        return torch.where(mask.unsqueeze(-1).bool(), h, torch.zeros_like(h)).mean(1)


def test_integer_paths_cumsum_and_gather(tmp_path):
    m = PositionsFromIds().eval()
    ids = torch.tensor([[5, 7, 0, 9, 11, 0], [1, 2, 3, 4, 0, 0]])
    r = export_nnef(m, {"tok.weight": "Q4_0", "pos.weight": "F16"}, (ids,),
                    tmp_path / "p.nnef", verify=True)
    assert {t.name: t.encoding for t in r.tensors}["tok.weight"] == "Q4_0"
    _check(r)


class MixedKinds(torch.nn.Module):
    """Integer, boolean and float operands meeting in arithmetic and comparisons."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.e = torch.nn.Embedding(50, 32)

    def forward(self, ids):
        keep = (1.0 - (ids > 3).float()).sum(1, keepdim=True)
        ratio = (ids / 7).sum(1, keepdim=True)
        frac = (ids * 2 >= 10).float().mean(1, keepdim=True)
        return self.e(ids).sum(1) * keep + ratio + frac


class MaskBuffers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.lin = torch.nn.Linear(32, 32)
        self.register_buffer("keep", torch.rand(32) > 0.5)

    def forward(self, x):
        y = torch.where(self.keep, self.lin(x), -x)
        return y.masked_fill(x > 1.5, 3.0)


class Clamps(torch.nn.Module):
    """Every way torch spells a clamp: both bounds, one bound (clamp_min, clamp_max, a None
    bound), a tensor bound, and hardtanh."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.lin = torch.nn.Linear(32, 32)
        self.register_buffer("floor", torch.linspace(-1.0, 0.0, 32))

    def forward(self, x):
        y = self.lin(x)
        return (torch.clamp(y, -0.5, 0.5) + torch.clamp_min(y, 0.1) + torch.clamp_max(y, -0.2)
                + torch.clamp(y, min=self.floor) + y.clamp(max=0.25)
                + torch.nn.functional.hardtanh(y, -0.3, 0.3))


def test_clamps_run_in_tract(tmp_path):
    r = export_nnef(Clamps().eval(), "Q4_0", (torch.randn(4, 32),), tmp_path / "c.nnef",
                    verify=True)
    _check(r)


class OptionalArguments(torch.nn.Module):
    """Ops whose optional arguments change the result, each given away from its default:
    leaky_relu's slope, tanh gelu, hardtanh bounds by keyword, a stepped slice, sum with
    keepdim, layer_norm's eps, split/unbind/stack/cat along a named dim, scaled add."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.lin = torch.nn.Linear(32, 32)

    def forward(self, x):
        fn = torch.nn.functional
        y = self.lin(x)
        a = fn.leaky_relu(y, negative_slope=0.3) + fn.gelu(y, approximate="tanh")
        a = a + fn.hardtanh(y, min_val=-0.2, max_val=0.6) + fn.softplus(y)
        a = fn.layer_norm(a, (32,), eps=0.5)
        s = a[:, 1::3]                                    # [4, 11]
        lo, hi = torch.split(a, 16, dim=1)
        rows = torch.stack(torch.unbind(lo, dim=0), dim=1)  # [16, 4]
        t = torch.add(lo, hi, alpha=0.5).sum(dim=1, keepdim=True)  # [4, 1]
        return torch.cat([s, t, rows.t()], dim=-1)


def test_optional_arguments_run_in_tract(tmp_path):
    r = export_nnef(OptionalArguments().eval(), "Q4_0", (torch.randn(4, 32),),
                    tmp_path / "o.nnef", verify=True)
    _check(r)


def test_boolean_buffers_and_masked_fill(tmp_path):
    r = export_nnef(MaskBuffers().eval(), "Q4_0", (torch.randn(4, 32),), tmp_path / "b.nnef",
                    verify=True)
    _check(r)


def test_mixed_integer_and_float_operands(tmp_path):
    ids = torch.tensor([[1, 4, 9, 49, 3], [0, 0, 7, 8, 30]], dtype=torch.int32)
    r = export_nnef(MixedKinds().eval(), "Q4_0", (ids,), tmp_path / "k.nnef", verify=True)
    _check(r)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "roberta", "gemma"])
def test_more_transformers_architectures(tmp_path, arch):
    import transformers

    from qtstudio.export.nnef.sources import _CausalLMLogits, _EncoderHidden

    torch.manual_seed(0)
    if arch == "gpt2":
        m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=128, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0))
        wrapped = _CausalLMLogits(m)
        # GPT-2 keeps [in, out] matrices for addmm; the export stores them [out, in] for Q4_0
        plan = "Q4_0"
    elif arch == "roberta":
        m = transformers.RobertaModel(transformers.RobertaConfig(
            vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128))
        wrapped, plan = _EncoderHidden(m), "Q4_0"
    else:
        m = transformers.GemmaForCausalLM(transformers.GemmaConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16))
        wrapped, plan = _CausalLMLogits(m), "Q4_0"
    ids = torch.randint(3, 128, (1, 8))
    r = export_nnef(wrapped.eval(), plan, (ids,), tmp_path / f"{arch}.nnef", verify=True)
    if arch == "gpt2":
        enc = {t.name: (t.encoding, t.shape) for t in r.tensors}
        assert enc["hf.transformer.h.0.attn.c_attn.weight"] == ("Q4_0", (64, 192))
        assert enc["hf.transformer.h.1.mlp.c_proj.weight"] == ("Q4_0", (256, 64))
    _check(r)


def test_verification_detects_a_wrong_file(tmp_path):
    from qtstudio.export.nnef.verify import fresh_inputs, verify_export

    m = Mlp().eval()
    x = torch.randn(3, 64)
    r = export_nnef(m, "Q4_0", (x,), tmp_path / "w.nnef")
    good = verify_export(tmp_path / "w.nnef", m, (x,), r.decoded, fresh=2)
    assert good["ok"] and good["fresh_inputs"] == 2
    wrong = dict(r.decoded)
    wrong["fc2.weight"] = wrong["fc2.weight"] + 1e-3  # what the file does not hold
    bad = verify_export(tmp_path / "w.nnef", m, (x,), wrong)
    assert not bad["ok"]
    ids = torch.tensor([[3, 9, 4]])
    new = fresh_inputs((ids, x), 5)
    assert new[0].dtype == torch.int64 and new[0].min() >= 3 and new[0].max() <= 9
    assert new[1].shape == x.shape and not torch.equal(new[1], x)
