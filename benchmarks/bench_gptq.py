"""GPTQ: where the time goes, and held-out KL against plain rounding at the same size.

1. The trained test llama (tests/helpers/trained_lm.py, cached): for each ggml type, a pure
   plan (every tensor that type) exported twice, plain rounding and GPTQ (act order, 32
   calibration windows of 64 tokens from corpus text it was not trained on); both files run by
   llama.cpp (llama-cpp-python) on held-out text; KL of each against transformers' float
   logits. Per type: measurement seconds (the calibration forward passes that collect the
   Hessians) and GPTQ seconds (factorisations and column loops), and per block for the first.
2. One matrix per shape (default 1024^2, 2048^2, 4096^2; ``--llama7b`` adds a 7B llama's
   11008 x 4096 and 4096 x 11008), Hessian from 4096 correlated random rows: seconds for the
   Hessian product, its factorisation (shared by linears with the same input) and the GPTQ
   column loop, on ``--threads`` threads (default 1).

    python benchmarks/bench_gptq.py [--types Q4_0,Q4_K] [--matrix-types Q4_K] [--llama7b]
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

from qtstudio.calib import load_tokenizer, tokenize_windows
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.export.gguf import export_gguf
from qtstudio.export.gguf_gptq import gptq_export_job
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.quant.ggml_grid import GGMLGridScheme
from qtstudio.quant.gptq import GPTQOptions, gptq, prepare_hessian
from qtstudio.quant.hessian import HessianAccumulator
from tests.helpers.oracles import llama_window_logits, mean_kl
from tests.helpers.trained_lm import corpus_text, trained_llama

PRESET = {"Q2_K": "Q2_K", "Q3_K": "Q3_K_S", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M",
          "Q6_K": "Q6_K", "Q4_0": "Q4_0", "Q5_0": "Q5_0", "Q8_0": "Q8_0"}


def pure_recipe(t: str) -> Recipe:
    """Every matrix in type ``t`` (a preset with --pure, or the type itself where llama.cpp
    has no preset of that name)."""
    if t in PRESET:
        return Recipe(preset=PRESET[t], pure=True)
    return Recipe(default_encoding=t, output_tensor_type=t, token_embedding_type=t)
CTX = 64


def trained_model(types: list[str]) -> None:
    import transformers

    folder = trained_llama()
    text = corpus_text()
    hf = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with open_model(folder) as m, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok = load_tokenizer(m)
        calib = tokenize_windows(tok, text[300_000:340_000], CTX, chunks=32).tokens
        held = tokenize_windows(tok, text[400_000:440_000], CTX, chunks=16).tokens
        with torch.no_grad():
            ref = hf(input_ids=torch.as_tensor(held)).logits.numpy()
        print(f"trained test llama ({folder.name}): hidden 256, 2 blocks, intermediate 512, "
              f"vocab 512; calibration {calib.shape[0]} x {CTX} tokens, held-out "
              f"{held.shape[0]} x {CTX} tokens; KL by llama.cpp against transformers")
        print(f"{'type':7} {'MiB':>6} {'KL plain':>10} {'KL GPTQ':>10} {'ratio':>6} "
              f"{'measure s':>9} {'GPTQ s':>7} {'total s':>7}")
        first = None
        for t in types:
            plan = resolve_plan(m, pure_recipe(t), target_format="gguf")
            export_gguf(m, plan, root / "plain.gguf")
            t0 = time.perf_counter()
            rep = run_job(gptq_export_job(m, plan, root / "gptq.gguf", calib,
                                          options=GPTQOptions(desc_act=True)))
            total = time.perf_counter() - t0
            timings = rep.gptq.block_timings
            first = first or (t, timings, rep.gptq.tensors)
            kp = mean_kl(ref, llama_window_logits(root / "plain.gguf", held, ctx=CTX))
            kg = mean_kl(ref, llama_window_logits(root / "gptq.gguf", held, ctx=CTX))
            size = (root / "gptq.gguf").stat().st_size
            assert size == (root / "plain.gguf").stat().st_size
            print(f"{t:7} {size / 2**20:6.3f} {kp:10.3g} {kg:10.3g} {kg / kp:6.3f} "
                  f"{sum(b.measure_seconds for b in timings):9.2f} "
                  f"{sum(b.gptq_seconds for b in timings):7.2f} {total:7.2f}", flush=True)
    if first is not None:
        t, timings, tensors = first
        print(f"\n{t}: per block (the head is block {len(timings) - 1})")
        print(f"{'block':>5} {'measure s':>9} {'GPTQ s':>7} {'total s':>7}")
        for b in timings:
            print(f"{b.block:5} {b.measure_seconds:9.2f} {b.gptq_seconds:7.2f} "
                  f"{b.seconds:7.2f}")
        print(f"{t}: per tensor GPTQ seconds: " + ", ".join(
            f"{r['name'].split('.')[-2]} {r['shape'][0]}x{r['shape'][1]} "
            f"{r['gptq_seconds']:.2f}" for r in tensors[:7]))


def one_matrix(shapes: list[tuple[int, int]], types: list[str], threads: int) -> None:
    torch.set_num_threads(threads)
    print(f"\none matrix, Hessian from 4096 correlated rows, {threads} thread(s), act order")
    print("seconds wall / CPU of this process (the machine may be shared: CPU time is the work)")
    print(f"{'type':7} {'rows x cols':>12} {'Hessian':>13} {'factor':>13} {'loop':>13}")
    for rows, cols in shapes:
        rng = np.random.default_rng(0)
        mix = (rng.standard_normal((cols, cols)).astype(np.float32)
               * (rng.random(cols, dtype=np.float32) ** 3)[None])
        x = rng.standard_normal((4096, cols), dtype=np.float32) @ mix * 0.1
        w = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        del mix
        t0, c0 = time.perf_counter(), time.process_time()
        acc = HessianAccumulator(cols)
        acc.add(x)
        th = f"{time.perf_counter() - t0:6.2f}/{time.process_time() - c0:6.2f}"
        del x
        opt = GPTQOptions(desc_act=True)
        t0, c0 = time.perf_counter(), time.process_time()
        prepared = prepare_hessian(acc.hessian(), opt)
        tf = f"{time.perf_counter() - t0:6.2f}/{time.process_time() - c0:6.2f}"
        for t in types:
            c0 = time.process_time()
            res = gptq(w, prepared, GGMLGridScheme(t, cols, threads=threads), opt)
            tl = f"{res.seconds:6.2f}/{time.process_time() - c0:6.2f}"
            print(f"{t:7} {f'{rows}x{cols}':>12} {th:>13} {tf:>13} {tl:>13}", flush=True)
        del prepared, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--types", default="Q2_K,Q3_K,Q4_0,Q4_K,Q5_K,Q6_K,IQ4_NL,IQ4_XS,Q8_0")
    ap.add_argument("--matrix-types", default="Q4_K")
    ap.add_argument("--sizes", default="1024,2048,4096", help="square matrices")
    ap.add_argument("--llama7b", action="store_true",
                    help="also a 7B llama's 11008x4096 (gate/up) and 4096x11008 (down)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    if not args.skip_model:
        torch.set_num_threads(2)
        trained_model([t for t in args.types.split(",") if t])
    shapes = [(int(s), int(s)) for s in args.sizes.split(",") if s]
    if args.llama7b:
        shapes += [(11008, 4096), (4096, 11008)]
    one_matrix(shapes, args.matrix_types.split(","), args.threads)


if __name__ == "__main__":
    main()
