"""`qtstudio-cli quantize MODEL`: quantize in memory and report every tensor's error."""

from __future__ import annotations

import argparse
import sys

from qtstudio.core.plan import resolve_plan
from qtstudio.formats import open_model
from qtstudio.jobs.quantize import quantize_job

from .cluster_args import add_ray_arg, check_ray_arg, cluster_executor
from .gptq_args import add_gptq_args, calibration_tokens, check_gptq_args, gptq_options
from .job_runner import run_cli_job
from .outputs import check_output, write_text
from .recipe_args import (
    add_recipe_args,
    add_target_arg,
    build_recipe,
    check_threads,
    target_format,
)
from .recipe_method import apply_recipe_method, defer_gptq_defaults


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="quantize in memory and write per-tensor error metrics")
    p.add_argument("model")
    add_recipe_args(p)
    p.add_argument("--report", required=True, metavar="FILE.json", help="where to write metrics")
    p.add_argument("--imatrix", metavar="FILE", help="llama.cpp importance matrix (.gguf/.dat)")
    p.add_argument("--threads", type=int, help="worker threads for the codecs (default: all)")
    add_target_arg(p, default="none",
                   help_text="apply this export format's fallbacks first (default none)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_arg(p)
    add_gptq_args(p)
    defer_gptq_defaults(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.preset and not args.recipe:
        raise ValueError("quantize needs --preset NAME or --recipe FILE")
    check_threads(args)
    check_output(args.report, args)
    check_ray_arg(args)
    apply_recipe_method(args)
    use_gptq = check_gptq_args(args)
    if use_gptq and args.ray:
        raise ValueError("--ray: --method gptq runs in this process (its blocks are not cluster "
                         "tasks yet); leave out one of them")
    imatrix = None
    if args.imatrix:
        from qtstudio.formats.imatrix import load_imatrix
        imatrix = dict(load_imatrix(args.imatrix).entries)
    with open_model(args.model) as model:
        recipe = build_recipe(args, model)
        plan = resolve_plan(model, recipe, target_format=target_format(args),
                            has_imatrix=imatrix is not None)
        if use_gptq:
            from qtstudio.jobs.gptq import gptq_quantize_job

            tokens = calibration_tokens(args, model)
            report = run_cli_job(
                lambda cancel: gptq_quantize_job(model, plan, tokens, options=gptq_options(args),
                                                 threads=args.threads, cancel=cancel),
                quiet=args.quiet, on_stop="no report written")
        else:
            with cluster_executor(args) as ex:
                report = run_cli_job(
                    lambda cancel: quantize_job(model, plan, imatrix=imatrix,
                                                threads=args.threads, cancel=cancel,
                                                executor=ex),
                    quiet=args.quiet, on_stop="no report written")
        write_text(args.report, report.to_json(), args)
    t = report.totals()
    snr = t["overall_snr_db"]
    print(f"{t['n_tensors']} tensors, {t['total_bytes']} bytes, {t['avg_bpw']:.4f} bpw, "
          f"overall SNR {'exact' if snr is None else f'{snr:.2f} dB'}, "
          f"{t['elapsed']:.2f} s -> {args.report}")
    gptq_rows = [r for r in report.tensors if r.get("method") == "gptq"]
    if gptq_rows:
        g = sum(r["output_error_gptq"] for r in gptq_rows)
        p = sum(r["output_error_plain"] for r in gptq_rows)
        print(f"GPTQ: {len(gptq_rows)} tensors, calibration output error {g:.4g} against "
              f"{p:.4g} for plain rounding to the same types ({g / p:.3f}x)" if p > 0 else
              f"GPTQ: {len(gptq_rows)} tensors")
    for name, count in report.nonfinite.items():
        print(f"warning: {name}: {count} non-finite values, left unquantized", file=sys.stderr)
    return 0
