"""The benchmark and what-if jobs (qtstudio.jobs), run without a window."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import gguf
import numpy as np
import pytest
from gguf import quants
from safetensors.numpy import save_file

from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe, Rule
from qtstudio.formats import open_model
from qtstudio.jobs import Cancelled, CancelToken, run_job
from qtstudio.jobs.benchmark import CODEC, QMATMUL, benchmark_job
from qtstudio.jobs.whatif import output_curve, sample_rows, whatif_curve, whatif_job
from tests.helpers.raw_checkpoints import write_hf_llama


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return write_hf_llama(tmp_path_factory.mktemp("m") / "m", layers=1, hidden=256, ffn=512)


def _plan(model, preset="Q8_0", rules=()):
    return resolve_plan(model, Recipe(preset=preset, rules=[Rule.parse(r) for r in rules]),
                        target_format=None)


def test_benchmark_times_every_matrix(llama):
    with open_model(llama) as model:
        plan = _plan(model)
        names = [t.name for t in model.tensors]
        res = run_job(benchmark_job(model, plan, names, repeats=1))
        matrices = {t.name for t in model.tensors if len(t.shape) == 2}
        assert matrices and all(model.tensor(n).quantizable for n in matrices)
        assert {r.name for r in res} == matrices  # norms (vectors) are not layers to time
        for r in res:
            assert r.encoding == plan.entry(r.name).encoding == "Q8_0"
            assert r.shape == tuple(model.tensor(r.name).shape)
            assert r.seconds > 0 and r.float_seconds > 0
            assert r.speedup == pytest.approx(r.float_seconds / r.seconds)
            assert r.method.startswith(QMATMUL) and r.native
            assert "1 thread each, batch of 8" in r.method
            d = r.as_dict()
            assert d["shape"] == list(r.shape) and d["speedup"] == r.speedup


def test_benchmark_codec_fallback_only_without_a_native_kernel(llama):
    # the INT8 family has no ggml type, so qmatmul cannot run it: timed as a codec round trip
    q = "model.layers.0.self_attn.q_proj.weight"
    with open_model(llama) as model:
        plan = _plan(model, rules=[r"q_proj=INT8_PC_SYM"])
        res = {r.name: r for r in run_job(benchmark_job(
            model, plan, [q, "model.layers.0.mlp.up_proj.weight"], repeats=1, threads=2,
            batch=4))}
    assert res[q].encoding == "INT8_PC_SYM" and res[q].method.startswith(CODEC)
    assert not res[q].native
    up = res["model.layers.0.mlp.up_proj.weight"]
    assert up.native and "2 threads each, batch of 4" in up.method
    assert (up.threads, up.batch) == (2, 4)


def test_benchmark_cancel_stops_between_tensors(llama):
    with open_model(llama) as model:
        plan = _plan(model)
        names = [t.name for t in model.tensors if len(t.shape) == 2]
        token = CancelToken()
        job = benchmark_job(model, plan, names, repeats=1, cancel=token)
        first = next(job)
        assert first.name == names[0] and first.index == 0
        token.cancel()
        with pytest.raises(Cancelled):
            next(job)  # the first tensor finishes; the check before the second one stops it


def test_benchmark_rejects_bad_counts(llama):
    with open_model(llama) as model, pytest.raises(ValueError, match="at least 1"):
        run_job(benchmark_job(model, _plan(model), [], threads=0))


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    rng = np.random.default_rng(7)
    t = {"a.weight": rng.standard_normal((64, 512)).astype(np.float32),
         "b.weight": (rng.standard_normal((32, 256)) * 0.02).astype(np.float32),
         # 96 columns: legacy 32-blocks fit, 256-value k-quant super-blocks do not
         "c.weight": rng.standard_normal((16, 96)).astype(np.float32)}
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    save_file(t, path)
    return path, t


def _gguf_rel_error(w: np.ndarray, name: str) -> float:
    qtype = getattr(gguf.GGMLQuantizationType, name)
    d = quants.dequantize(quants.quantize(w, qtype), qtype)
    return float(np.linalg.norm(w - d) / np.linalg.norm(w))


def test_whatif_errors_grow_as_bits_drop(random_weights):
    path, t = random_weights
    encs = ["Q8_0", "Q4_0", "Q2_K", "Q4_K"]
    with open_model(path) as model:
        errors = run_job(whatif_job(model, {n: encs for n in ("a.weight", "b.weight")}))
        for n in ("a.weight", "b.weight"):
            rel = {e: errors[(n, e)]["rel_error"] for e in encs}
            assert rel["Q8_0"] < rel["Q4_K"] < rel["Q4_0"] < rel["Q2_K"]
            # independent oracle: the gguf package's reference codecs give the same error
            for e in ("Q8_0", "Q4_0"):
                assert rel[e] == pytest.approx(_gguf_rel_error(t[n], e), rel=1e-4)
        curve = whatif_curve(errors, ["a.weight", "b.weight"], model, encs)
    assert [r[0] for r in curve] == ["Q2_K", "Q4_0", "Q4_K", "Q8_0"]  # sorted by bpw
    by = {r[0]: r for r in curve}
    assert by["Q8_0"][1] == pytest.approx(8.5) and by["Q4_0"][1] == pytest.approx(4.5)
    pa, pb = 64 * 512, 32 * 256
    want = (errors[("a.weight", "Q4_0")]["rel_error"] * pa
            + errors[("b.weight", "Q4_0")]["rel_error"] * pb) / (pa + pb)
    assert by["Q4_0"][2] == pytest.approx(want) and by["Q4_0"][3] == 2


def test_output_curve_weights_block_error_by_parameters_and_sums_kl():
    params = {"a": 1000, "b": 3000, "head": 5000}
    model = SimpleNamespace(tensor=lambda n: SimpleNamespace(params=params[n]))
    output = {("a", "Q4_0"): {"out_err": 0.1, "kl": 0.01},
              ("b", "Q4_0"): {"out_err": 0.3, "kl": 0.02},
              ("head", "Q4_0"): {"out_err": None, "kl": 0.05},  # no block output
              ("head", "Q8_0"): {"out_err": None, "kl": 0.004},
              ("a", "Q8_0"): {"out_err": 0.02, "kl": None}}
    rows = output_curve(output, ["a", "b", "head"], model, ["Q4_0", "Q8_0", "Q2_K"])
    assert set(rows) == {"Q4_0", "Q8_0"}  # Q2_K: nothing measured
    q4 = rows["Q4_0"]
    assert q4["out_err"] == pytest.approx((0.1 * 1000 + 0.3 * 3000) / 4000)
    assert q4["kl"] == pytest.approx(0.08) and q4["tensors"] == 3
    # the head's KL counts, its missing block error does not; a missing KL counts as 0
    assert rows["Q8_0"] == {"out_err": pytest.approx(0.02), "kl": pytest.approx(0.004),
                            "tensors": 2}
    assert output_curve({("head", "Q4_0"): {"out_err": None, "kl": 0.05}}, ["head"], model,
                        ["Q4_0"])["Q4_0"]["out_err"] is None


def test_whatif_leaves_out_encodings_a_tensor_cannot_take(random_weights):
    path, _ = random_weights
    with open_model(path) as model:
        errors = run_job(whatif_job(model, {"c.weight": ["Q4_0", "Q4_K"]}))
    assert set(errors) == {("c.weight", "Q4_0")}


def test_whatif_samples_evenly_spread_rows(random_weights):
    path, t = random_weights
    with open_model(path) as model:
        w, rows = sample_rows(model, "a.weight", 16 * 512)
        whole, all_rows = sample_rows(model, "a.weight", 1 << 20)
    assert w.shape == (16, 512) and rows[0] == 0 and rows[-1] == 63
    assert np.array_equal(w, t["a.weight"][rows])
    assert np.array_equal(whole, t["a.weight"]) and len(all_rows) == 64


def test_whatif_cancel(random_weights):
    path, _ = random_weights
    with open_model(path) as model:
        token = CancelToken()
        job = whatif_job(model, {"a.weight": ["Q8_0", "Q4_0"]}, cancel=token)
        next(job)
        token.cancel()
        with pytest.raises(Cancelled):
            next(job)


def test_gui_only_wraps_the_jobs():
    """The window starts these jobs from qtstudio.jobs; qtstudio/gui keeps no copy of them."""
    gui = Path(__file__).resolve().parents[1] / "qtstudio" / "gui"
    source = {p.name: p.read_text(encoding="utf-8") for p in gui.glob("*.py")}
    for fn in ("benchmark_job", "whatif_job", "whatif_curve", "sample_rows", "BenchResult"):
        defined = [n for n, s in source.items() if re.search(rf"^(def|class) {fn}\b", s, re.M)]
        assert defined == [], f"{fn} defined in qtstudio/gui/{defined}"
    assert '"qtstudio.jobs.benchmark:benchmark_job"' in source["window_jobs.py"]
    assert "from qtstudio.jobs.whatif import whatif_job" in source["window_jobs.py"]
