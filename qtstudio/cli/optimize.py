"""`qtstudio-cli optimize MODEL`: per-tensor encodings chosen for the least error at a size."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from qtstudio.core.human_numbers import human_bytes
from qtstudio.core.optimize import DEFAULT_CANDIDATES, OBJECTIVES, OptimizeResult, parse_size
from qtstudio.core.recipe import QuantMethod, RecipeError
from qtstudio.formats import open_model
from qtstudio.jobs.optimize import optimize_job

from .cluster_args import add_ray_arg, check_ray_arg, cluster_executor
from .gptq_args import tuned_gptq_flags
from .job_runner import run_cli_job
from .outputs import check_output, write_text
from .recipe_args import add_calibration_args, add_target_arg, target_format

#: GPTQ calibration windows without --chunks (quantize --method gptq's --calib-windows default)
DEFAULT_GPTQ_WINDOWS = 64


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="choose each tensor's encoding for the least error "
                                        "within a target size; writes a recipe")
    p.add_argument("model")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-bpw", type=float, metavar="X",
                      help="average bits per weight over all parameters, as `plan` reports it")
    goal.add_argument("--target-size", metavar="SIZE",
                      help="total bytes: 123456, 4.2GB (10^9) or 3.9GiB (2^30)")
    p.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES), metavar="A,B,...",
                   help=f"encodings to choose from (default {','.join(DEFAULT_CANDIDATES)})")
    p.add_argument("--imatrix", metavar="FILE",
                   help="llama.cpp importance matrix (.gguf/.dat): used by the quantizers, and "
                        "to weigh the error unless --objective mse")
    p.add_argument("--objective", choices=OBJECTIVES,
                   help="error to minimise: mse (sum of squared errors), imatrix (weighted "
                        "by column importance; the default with --imatrix) or kl (measured "
                        "output KL of each tensor's candidates on --data, summed; the plan is "
                        "then checked by a real eval against the presets that fit)")
    add_calibration_args(p, prefix="kl objective: ",
                         data_help="kl objective: UTF-8 calibration text (default: the Python "
                                   "documentation shipped with the standard library, weaker "
                                   "than your own)")
    p.add_argument("--sensitivity", choices=("kl", "block"), default="kl",
                   help="kl objective: measure each candidate by the model's output KL (kl, "
                        "default) or by its block's output error scaled to KL per block "
                        "(block: cheaper on deep models)")
    p.add_argument("--no-check", action="store_true",
                   help="kl objective: skip the eval check against uniform and preset plans")
    p.add_argument("--no-cache", action="store_true",
                   help="kl objective: measure again instead of using the sensitivity cache")
    p.add_argument("--method", choices=("plain", "gptq"), default="plain",
                   help="how the planned types are filled: plain rounding (default) or gptq "
                        "(kl objective only: sensitivities and the check use GPTQ bytes on "
                        "--data; the recipe records it for quantize/export --recipe)")
    p.add_argument("--gptq-damp", type=float, default=0.01, metavar="F",
                   help="gptq: dampening, fraction of the mean Hessian diagonal (default 0.01)")
    p.add_argument("--gptq-block-size", type=int, default=128, metavar="N",
                   help="gptq: columns per lazy-update batch (default 128)")
    p.add_argument("--desc-act", action="store_true",
                   help="gptq: act order, columns by decreasing activation energy")
    p.add_argument("--allow-requantize", action="store_true",
                   help="measure tensors of a quantized GGUF from their decoded values")
    p.add_argument("--float-type", default="F32", metavar="TYPE",
                   help="storage for tensors that stay float (F32, F16, BF16; default F32)")
    add_target_arg(p, default="gguf",
                   help_text="file format whose fallbacks the sizes follow (default gguf)")
    p.add_argument("--sample-elements", type=int, default=None, metavar="N",
                   help="values measured per tensor at most; larger tensors are measured on "
                        "evenly spaced rows (default 2097152; 0 measures every row)")
    p.add_argument("--threads", type=int, help="worker threads for the codecs (default: all)")
    p.add_argument("--out", metavar="FILE", help="write the recipe (for plan/quantize --recipe)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_arg(p)
    p.set_defaults(func=run)


def _fmt_err(x: float) -> str:
    return f"{x:.4g}"


def print_result(r: OptimizeResult) -> None:
    rows = r.rows()
    w = max([len(x["name"]) for x in rows] + [4])
    print(f"{'name':<{w}}  {'encoding':<9} {'bytes':>11} {'bpw':>7} {'rel err':>9}  measured")
    for x in rows:
        rel = "-" if x["rel_error"] is None else f"{x['rel_error']:.4f}"
        how = "exact" if x["exact"] else f"{x['measured_rows']}/{x['rows']} rows"
        note = f"  ({x['note']})" if x["note"] else ""
        print(f"{x['name']:<{w}}  {x['encoding']:<9} {x['nbytes']:>11} {x['bpw']:>7.3f} "
              f"{rel:>9}  {how}{note}")
    sig = r.total_signal
    rel = f", relative {math.sqrt(r.total_error / sig):.5f}" if sig > 0 else ""
    print(f"target: {r.budget} bytes ({human_bytes(r.budget)}), {r.target_bpw:.4f} bpw")
    print(f"result: {r.total_bytes} bytes ({human_bytes(r.total_bytes)}), {r.avg_bpw:.4f} bpw; "
          f"{r.table.objective} error {_fmt_err(r.total_error)}{rel}; "
          + ("proven optimal" if r.proven_optimal
             else f"best found (lower bound {_fmt_err(r.lower_bound)})"))
    m = r.method
    if m is not None and not m.is_plain:
        print(f"method: {m.name} on {m.data} (up to {m.windows} windows of {m.ctx} tokens, "
              f"damp {m.damp_percent:g}, block {m.block_size}, act order "
              f"{'on' if m.desc_act else 'off'}): sensitivities and the check use its bytes")
    if r.checks:
        print("eval check on the calibration data (mean KL):")
        for c in r.checks:
            pred = (f"  (additive prediction {c['predicted_kl']:.4g})"
                    if "predicted_kl" in c else "")
            mark = "  <- kept" if c["label"] == r.chosen else ""
            print(f"  {c['label']:<16} {c['nbytes']:>11} bytes {c['bpw']:>7.3f} bpw  KL "
                  f"{c['kl_mean']:.4g}{pred}{mark}")
        if r.chosen != "kl plan":
            print(f"the check kept {r.chosen}: it measured lower KL than the solved plan")
        if r.gptq_bytes:
            print(f"GPTQ bytes of the kept plan: sha256 {r.gptq_bytes['digest'][:16]}... "
                  f"({len(r.gptq_bytes['tensors'])} tensors)")
    print("uniform baselines:")
    for b in r.baselines:
        verdict = ("fits" if b.fits else "over target")
        print(f"  {b.candidate:<8} {b.nbytes:>11} bytes {b.bpw:>7.3f} bpw  error "
              f"{_fmt_err(b.error):>10}  {verdict}")


def _quant_method(args: argparse.Namespace) -> QuantMethod:
    """The recipe's method from --method and the GPTQ flags (refused without GPTQ)."""
    if args.method != "gptq":
        stray = tuned_gptq_flags(args)
        if stray:
            raise ValueError(f"{', '.join(stray)}: only with --method gptq")
        return QuantMethod()
    if args.objective != "kl":
        raise ValueError("--method gptq needs --objective kl: the mse and imatrix objectives "
                         "measure plain rounding's weight error")
    if not args.data:
        raise ValueError("--method gptq needs --data FILE: GPTQ's Hessians come from that "
                         "calibration text, and the recipe names it so quantize/export "
                         "--recipe reproduce the bytes")
    try:
        return QuantMethod("gptq", damp_percent=args.gptq_damp,
                           block_size=args.gptq_block_size, desc_act=args.desc_act,
                           data=str(Path(args.data).resolve()), ctx=args.ctx,
                           windows=args.chunks or DEFAULT_GPTQ_WINDOWS)
    except RecipeError as exc:
        raise ValueError(str(exc).replace("method ", "--method gptq: ", 1)) from None


def run(args: argparse.Namespace) -> int:
    target_bytes = parse_size(args.target_size) if args.target_size is not None else None
    candidates = [c for c in args.candidates.split(",") if c.strip()]
    if args.sample_elements is not None and args.sample_elements < 0:
        raise ValueError("--sample-elements must be 0 (every row) or positive")
    check_output(args.out, args)
    check_ray_arg(args)
    imatrix = None
    if args.imatrix:
        from qtstudio.formats.imatrix import load_imatrix
        imatrix = dict(load_imatrix(args.imatrix).entries)
    kwargs = {} if args.sample_elements is None else {"sample_elements": args.sample_elements}
    if args.objective == "kl":
        if args.imatrix:
            raise ValueError("--objective kl measures output KL; it takes --data, not --imatrix")
        if args.ctx < 2:
            raise ValueError(f"--ctx {args.ctx}: a window needs at least 2 tokens")
        if args.chunks is not None and args.chunks < 1:
            raise ValueError(f"--chunks {args.chunks}: must be at least 1")
        kwargs.update(data=args.data, ctx=args.ctx, chunks=args.chunks,
                      sensitivity_method=args.sensitivity, check=not args.no_check,
                      cache=not args.no_cache, allow_requantize=args.allow_requantize)
    elif args.data:
        raise ValueError("--data is used by --objective kl only")
    quant = _quant_method(args)
    if not quant.is_plain:
        kwargs["quant"] = quant
    with open_model(args.model) as model, cluster_executor(args) as ex:
        result = run_cli_job(
            lambda cancel: optimize_job(
                model, target_bpw=args.target_bpw, target_bytes=target_bytes,
                candidates=candidates, imatrix=imatrix, objective=args.objective,
                float_encoding=args.float_type,
                target_format=target_format(args),
                threads=args.threads, cancel=cancel, executor=ex, **kwargs),
            quiet=args.quiet, on_stop="no recipe written")
    if imatrix is not None:
        unweighted = [t.name for t in result.table.tensors
                      if result.table.objective == "imatrix" and not t.weighted
                      and t.note is None]
        if unweighted:
            print(f"warning: {len(unweighted)} tensors have no importance weights in "
                  f"{args.imatrix}; their error is unweighted", file=sys.stderr)
    if args.out:
        write_text(args.out, result.recipe().to_json(), args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result)
        if args.out:
            print(f"recipe -> {args.out}")
    return 0
