"""Held-out KL at matched sizes: uniform candidates, llama.cpp presets, mse / imatrix / kl plans.

On the trained test llama (tests/helpers/trained_lm.py). Calibration text and held-out text are
disjoint slices of the embedded corpus, both outside the model's training slice; the optimizer
(and the kl objective's eval check) only ever see the calibration slice. For each preset size
the three objectives are solved at that preset's exact byte count and every plan is scored by
``eval`` on the held-out windows (activations rounded as llama.cpp's CPU backend does). The kl
objective wins a size when its held-out KL is below the preset's, every uniform candidate that
fits, and the mse and imatrix plans. Also prints the sensitivity measurement time per block and
the time of a rerun answered from the cache.

``--gptq`` adds the GPTQ method: the kl objective measured and checked with GPTQ bytes
(``optimize --method gptq``), and the preset quantized by GPTQ, both GPTQ'd on the calibration
windows and scored on the held-out ones.

    python benchmarks/bench_optimize_kl.py [--chunks 16] [--held-chunks 32] [--method kl] [--gptq]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qtstudio.calib.data import prepare_data
from qtstudio.core.optimize import DEFAULT_CANDIDATES, cost_table
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import QuantMethod, Recipe
from qtstudio.formats import open_model
from qtstudio.jobs import run_job
from qtstudio.jobs.eval import eval_job
from qtstudio.jobs.imatrix import imatrix_job
from qtstudio.jobs.optimize import optimize_job
from qtstudio.jobs.optimize_gptq import GPTQCandidates, gptq_eval_job, gptq_options
from qtstudio.jobs.sensitivity import sensitivity_job
from tests.helpers.trained_lm import corpus_text, trained_llama

PRESETS = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=16, help="calibration windows of 64 tokens")
    ap.add_argument("--held-chunks", type=int, default=32, help="held-out windows of 64")
    ap.add_argument("--method", default="kl", choices=("kl", "block"))
    ap.add_argument("--gptq", action="store_true", help="add the GPTQ method's rows")
    args = ap.parse_args()
    folder = trained_llama()
    tmp = Path(tempfile.mkdtemp(prefix="bench-kl-"))
    cal, held = tmp / "calibration.txt", tmp / "held_out.txt"
    text = corpus_text()
    cal.write_text(text[300_000:320_000], encoding="utf-8")
    held.write_text(text[320_000:380_000], encoding="utf-8")
    cache = tmp / "cache"
    with open_model(folder) as m:
        cd = prepare_data(m, "decoder", cal, ctx=64, chunks=args.chunks)
        hd = prepare_data(m, "decoder", held, ctx=64, chunks=args.held_chunks)
        params = m.total_params

        def held_kl(recipe: Recipe, imatrix=None) -> tuple[float, int]:
            plan = resolve_plan(m, recipe, target_format="gguf", has_imatrix=imatrix is not None)
            r = run_job(eval_job(m, plan, hd, imatrix=imatrix))
            return r.kl_mean, plan.total_bytes

        gq = QuantMethod("gptq", data=str(cal), ctx=64, windows=args.chunks)
        gtokens = cd.windows.tokens

        def held_kl_gptq(recipe: Recipe) -> tuple[float, int]:
            plan = resolve_plan(m, recipe, target_format="gguf")
            r, _ = run_job(gptq_eval_job(m, plan, hd, gtokens, options=gptq_options(gq)))
            return r.kl_mean, plan.total_bytes

        # sensitivity: first run (timed per block) and the cached rerun
        table = cost_table(m, DEFAULT_CANDIDATES, objective="kl")
        t0 = time.perf_counter()
        sens = run_job(sensitivity_job(m, table, cd, method=args.method, cache=cache))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_job(sensitivity_job(m, cost_table(m, DEFAULT_CANDIDATES, objective="kl"),
                                        cd, method=args.method, cache=cache))
        rerun = time.perf_counter() - t0
        print(f"model: trained llama {folder.name}, {params} params; calibration "
              f"{args.chunks}x64 tokens, held-out {args.held_chunks}x64 tokens")
        print(f"sensitivity ({args.method}, {len(table.candidates)} candidates, "
              f"{len(table.tensors)} tensors): first run {first:.1f} s, per block "
              + ", ".join(f"{i}: {s:.1f} s" for i, s in sorted(sens.block_seconds.items()))
              + f"; cached rerun {rerun:.2f} s ({len(again.reused)} tensors reused, "
              f"{len(again.measured)} measured)")
        if args.gptq:
            t0 = time.perf_counter()
            gs = run_job(sensitivity_job(m, cost_table(m, DEFAULT_CANDIDATES, objective="kl"),
                                         cd, method=args.method, cache=cache,
                                         candidates=GPTQCandidates(gptq_options(gq))))
            print(f"sensitivity with GPTQ values: first run {time.perf_counter() - t0:.1f} s, "
                  "per block " + ", ".join(f"{i}: {s:.1f} s"
                                           for i, s in sorted(gs.block_seconds.items())))
        memo: dict = {}
        imx = run_job(imatrix_job(m, cd)).to_importance_matrix()
        uniform = {}
        for c in DEFAULT_CANDIDATES:
            uniform[c] = held_kl(Recipe(overrides={t.name: c for t in m.tensors
                                                   if t.quantizable}))
        print(f"\n{'size (preset)':<16} {'bpw':>6}  {'plan':<14} {'bytes':>9} {'held-out KL':>12}")
        wins = gptq_wins = 0
        for p in PRESETS:
            kl_p, nb = held_kl(Recipe(preset=p))
            rows = [(f"preset {p}", nb, kl_p)]
            for c, (kl_u, nb_u) in uniform.items():
                if nb_u <= nb:
                    rows.append((f"uniform {c}", nb_u, kl_u))
            for obj in ("mse", "imatrix", "kl"):
                kw = {"imatrix": dict(imx.entries)} if obj == "imatrix" else {}
                if obj == "kl":
                    kw = {"data": cd, "cache": cache, "sensitivity_method": args.method}
                r = run_job(optimize_job(m, target_bytes=nb, objective=obj, **kw))
                rec = r.recipe()
                kl_o, nb_o = held_kl(rec, imx if obj == "imatrix" else None)
                label = obj + (f" ({r.chosen})" if obj == "kl" and r.chosen != "kl plan" else "")
                rows.append((label, nb_o, kl_o))
            kl_kl = rows[-1][2]
            win = all(kl_kl < x[2] for x in rows[:-1])
            wins += win
            if args.gptq:
                kl_gp, nb_gp = held_kl_gptq(Recipe(preset=p))
                r = run_job(optimize_job(m, target_bytes=nb, objective="kl", data=cd,
                                         cache=cache, sensitivity_method=args.method, quant=gq,
                                         gptq_tokens=gtokens, check_memo=memo))
                kl_gk, nb_gk = held_kl_gptq(r.recipe())
                rows.append((f"preset {p} gptq", nb_gp, kl_gp))
                label = "kl gptq" + (f" ({r.chosen})" if r.chosen != "kl plan" else "")
                rows.append((label, nb_gk, kl_gk))
                gptq_wins += kl_gk < kl_gp
            for k, (label, b, kl) in enumerate(rows):
                head = f"{p} ({8 * nb / params:.3f})" if k == 0 else ""
                print(f"{head:<16} {8 * b / params:>6.3f}  {label:<14} {b:>9} {kl:>12.4g}")
            print(f"{'':<16} kl objective below the preset, every uniform that fits and the "
                  f"mse and imatrix plans: {win}")
            if args.gptq:
                print(f"{'':<16} kl gptq below preset gptq: {kl_gk < kl_gp}")
        print(f"\nkl objective wins at {wins}/{len(PRESETS)} sizes")
        if args.gptq:
            print(f"kl gptq below preset gptq at {gptq_wins}/{len(PRESETS)} sizes")
    return 0 if wins == len(PRESETS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
