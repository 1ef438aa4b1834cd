"""Evaluation speed against llama.cpp, and the peak memory of the streamed pass on a 7B shape.

1. Throughput: a random llama folder (tests/helpers/tiny_models.py; hidden 1024, 8 blocks,
   MLP 2816, 16 heads / 4 KV heads) is exported to an F32 GGUF; the same windows of tokens are
   scored by our reference pass (embeddings, every block, the output head: the logits
   llama.cpp computes) and by llama-cpp-python (``logits_all=True``, one ``eval`` per window),
   both at ``--threads``. Also the whole ``eval`` job (reference + Q4_K_M pass, KL scoring).
2. Memory: a llama-7B-shape checkpoint (benchmarks/bench_open.py's sparse bf16 shards: 32
   blocks, 4096 / 11008, vocab 32000, 13.5 GB apparent, all zeros; fine for memory, not for
   quality) goes through the streamed reference pass in a fresh process, one window; the
   process's peak RSS is reported against its RSS after imports.

    python benchmarks/bench_eval.py [--threads 2] [--windows 4] [--ctx 128] [--ctx-7b 32]
                                    [--skip-7b] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.oracles import quiet_stderr  # noqa: E402


def throughput(threads: int, n_windows: int, ctx: int) -> dict:
    import numpy as np
    import torch

    from qtstudio.calib import open_engine
    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe
    from qtstudio.export.gguf import export_gguf
    from qtstudio.formats import open_model
    from qtstudio.jobs import run_job
    from qtstudio.jobs.eval import eval_job
    from tests.helpers.tiny_models import build_tiny_llama

    torch.set_num_threads(threads)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_llama(Path(tmp) / "hf", hidden=1024, layers=8, heads=16, kv_heads=4,
                                  intermediate=2816, init_range=0.02)
        gg = Path(tmp) / "f32.gguf"
        with open_model(folder) as m:
            export_gguf(m, resolve_plan(m, Recipe(preset="F32")), gg)
            vocab = m.tensor("model.embed_tokens.weight").shape[0]
        rng = np.random.default_rng(0)
        windows = rng.integers(0, vocab, size=(n_windows, ctx))
        tokens = windows.size

        def ours() -> float:
            t0 = time.perf_counter()
            with open_model(folder) as m:
                eng = open_engine(m)
                h = eng.embed(windows)
                for i in range(eng.n_blocks):
                    h = eng.run_block(i, h)
                eng.logits(h.reshape(-1, h.shape[-1]), eng.load_head())
            return time.perf_counter() - t0

        import llama_cpp

        def theirs() -> float:
            with quiet_stderr():
                llm = llama_cpp.Llama(str(gg), n_ctx=ctx, n_batch=ctx, logits_all=True,
                                      verbose=False, n_threads=threads, n_threads_batch=threads)
                t0 = time.perf_counter()
                for w in windows:
                    llm.reset()
                    llm.eval(w.tolist())
                dt = time.perf_counter() - t0
                llm.close()
            return dt

        ours()  # warm-up (imports, first allocations)
        t_ours = min(ours() for _ in range(2))
        t_theirs = min(theirs() for _ in range(2))
        with open_model(folder) as m:
            plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
            from qtstudio.calib.data import CalibrationData
            from qtstudio.calib.windows import Windows

            cd = CalibrationData("decoder", "random", windows=Windows(windows, tokens, "random"))
            t0 = time.perf_counter()
            run_job(eval_job(m, plan, cd, threads=threads))
            t_job = time.perf_counter() - t0
    out.update(tokens=tokens, threads=threads, ours_s=t_ours, llama_cpp_s=t_theirs,
               ours_tok_s=tokens / t_ours, llama_cpp_tok_s=tokens / t_theirs,
               ratio=t_theirs / t_ours, eval_job_s=t_job, eval_job_tok_s=tokens / t_job)
    return out


def rss_child(folder: str, ctx: int, threads: int) -> None:
    import numpy as np
    import torch

    from qtstudio.calib import open_engine
    from qtstudio.formats import open_model

    torch.set_num_threads(threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with open_model(folder) as m:
        eng = open_engine(m)
        h = eng.embed(np.arange(ctx).reshape(1, ctx) % 32000)
        for i in range(eng.n_blocks):
            h = eng.run_block(i, h)
        eng.logits(h.reshape(-1, h.shape[-1]), eng.load_head())
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": dt}))


def rss_7b(ctx: int, threads: int) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_open

    with tempfile.TemporaryDirectory() as tmp:
        index = bench_open.build(Path(tmp))
        proc = subprocess.run([sys.executable, __file__, "--child", str(index.parent),
                               "--ctx", str(ctx), "--threads", str(threads)],
                              capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--skip-7b", action="store_true")
    ap.add_argument("--ctx-7b", type=int, default=32,
                    help="window length of the 7B memory run (its peak is the weights of one "
                         "block and the head; compute on 2 shared cores is what limits it)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        rss_child(args.child, args.ctx, args.threads)
        return
    if not args.skip_throughput:
        _print_throughput(throughput(args.threads, args.windows, args.ctx), args)
    if not args.skip_7b:
        r = rss_7b(args.ctx_7b, args.threads)
        print(f"7B-shape streamed reference pass, 1 window x {args.ctx_7b}: {r['seconds']:.1f} s, "
              f"peak RSS {r['peak_mb']:.0f} MB (after imports {r['base_mb']:.0f} MB)")


def _print_throughput(t: dict, args: argparse.Namespace) -> None:
    print(f"throughput, {t['tokens']} tokens ({args.windows} windows x {args.ctx}), "
          f"{t['threads']} threads:")
    print(f"  qtstudio reference pass: {t['ours_s']:.3f} s, {t['ours_tok_s']:.0f} tokens/s")
    print(f"  llama.cpp (F32 GGUF):    {t['llama_cpp_s']:.3f} s, {t['llama_cpp_tok_s']:.0f} "
          f"tokens/s")
    print(f"  ratio qtstudio / llama.cpp speed: {t['ratio']:.2f}")
    print(f"  eval job (reference + Q4_K_M pass + KL): {t['eval_job_s']:.3f} s, "
          f"{t['eval_job_tok_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
