"""GPTQ: time per block and held-out KL against plain rounding at the same size.

1. The trained tiny llama the tests build (tests/helpers/gptq_model.py): for each ggml type, a
   pure plan exported twice (plain rounding, GPTQ with act order on 32 windows of 64 tokens),
   both files run by llama.cpp (llama-cpp-python) on held-out text of the same grammar; KL of
   each against transformers' float logits. Prints GPTQ seconds per decoder block.
2. One square matrix (default 2048 x 2048, Hessian from 4096 correlated random rows): GPTQ
   seconds per type, split into the Hessian product and the algorithm.

    python benchmarks/bench_gptq.py [--size 2048] [--types Q4_0,Q4_K,Q6_K]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.export.gguf import export_gguf
from qtstudio.export.gguf_gptq import gptq_export_job
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.quant.calib_data import calibration_windows
from qtstudio.quant.ggml_grid import GGMLGridScheme
from qtstudio.quant.gptq import GPTQOptions, gptq
from qtstudio.quant.hessian import HessianAccumulator
from tests.helpers.oracles import quiet_stderr

PRESET = {"Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q6_K": "Q6_K", "Q4_0": "Q4_0", "Q5_0": "Q5_0",
          "Q8_0": "Q8_0", "IQ4_NL": "IQ4_NL"}


def _llama_logits(path: Path, windows: np.ndarray) -> np.ndarray:
    import llama_cpp

    out = []
    with quiet_stderr():
        llm = llama_cpp.Llama(str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2)
        for w in windows:
            llm.reset()
            llm.eval([int(t) for t in w])
            out.append(np.array(llm.scores[: len(w)], dtype=np.float64))
        llm.close()
    return np.stack(out)


def _kl(ref: np.ndarray, got: np.ndarray) -> float:
    lp = torch.log_softmax(torch.as_tensor(ref, dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.as_tensor(got, dtype=torch.float64), -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def trained_model(types: list[str]) -> None:
    import transformers

    from tests.helpers.gptq_model import build_trained_llama, grammar_text

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = build_trained_llama(root / "model")
        (root / "calib.txt").write_text(grammar_text(1, 600), encoding="utf-8")
        (root / "held.txt").write_text(grammar_text(2, 120), encoding="utf-8")
        hf = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
        print("trained tiny llama: hidden 256, 2 blocks, intermediate 512, vocab 384; "
              "calibration 32 x 64 tokens, held-out 6 x 48 tokens")
        print(f"{'type':8} {'MiB':>6} {'KL plain':>10} {'KL GPTQ':>10} {'ratio':>6} "
              f"{'s/block':>16} {'s total':>8}")
        with open_model(folder) as m:
            calib = calibration_windows(m, root / "calib.txt", ctx=64, windows=32)
            held = calibration_windows(m, root / "held.txt", ctx=48, windows=6)
            with torch.no_grad():
                ref = hf(input_ids=torch.as_tensor(held)).logits.numpy()
            for t in types:
                plan = resolve_plan(m, Recipe(preset=PRESET[t], pure=True), target_format="gguf")
                export_gguf(m, plan, root / "plain.gguf")
                t0 = time.perf_counter()
                rep = run_job(gptq_export_job(m, plan, root / "gptq.gguf", calib,
                                              options=GPTQOptions(desc_act=True)))
                total = time.perf_counter() - t0
                kp = _kl(ref, _llama_logits(root / "plain.gguf", held))
                kg = _kl(ref, _llama_logits(root / "gptq.gguf", held))
                size = (root / "gptq.gguf").stat().st_size
                assert size == (root / "plain.gguf").stat().st_size
                blocks = ", ".join(f"{s:.2f}" for s in rep.gptq.block_seconds)
                print(f"{t:8} {size / 2**20:6.3f} {kp:10.3g} {kg:10.3g} {kg / kp:6.3f} "
                      f"{blocks:>16} {total:8.2f}", flush=True)


def one_matrix(size: int, types: list[str]) -> None:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((size, size)).astype(np.float32) * (rng.random(size) ** 3)[None]
    x = rng.standard_normal((4096, size)).astype(np.float32) @ mix * 0.1
    w = (rng.standard_normal((size, size)) * 0.02).astype(np.float32)
    t0 = time.perf_counter()
    acc = HessianAccumulator(size)
    acc.add(x)
    th = time.perf_counter() - t0
    print(f"\none {size}x{size} matrix, Hessian from 4096 rows: {th:.2f} s")
    print(f"{'type':8} {'act order':>9} {'GPTQ s':>8}")
    for t in types:
        for act in (False, True):
            t0 = time.perf_counter()
            gptq(w, acc.hessian(), GGMLGridScheme(t, size), GPTQOptions(desc_act=act))
            print(f"{t:8} {act!s:>9} {time.perf_counter() - t0:8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--types", default="Q4_0,Q4_K,Q5_K,Q6_K,IQ4_NL,Q8_0")
    ap.add_argument("--matrix-types", default="Q4_0,Q4_K,Q6_K")
    args = ap.parse_args()
    torch.set_num_threads(2)
    trained_model(args.types.split(","))
    one_matrix(args.size, args.matrix_types.split(","))


if __name__ == "__main__":
    main()
