"""`qtstudio-cli eval MODEL --data FILE`: what a plan does to the model's outputs.

The model as opened is the reference; the plan's decode(quantize(w)) values are the quantized
model (what ``export`` would store). Both run on the same windows of the calibration text.
``eval demo`` keeps scoring the embedded digits MLP by accuracy.
"""

from __future__ import annotations

import argparse
import json
import math

from qtstudio.core import demo
from qtstudio.core.human_numbers import human_bytes
from qtstudio.core.plan import resolve_plan
from qtstudio.formats import open_model
from qtstudio.jobs.demo_eval import evaluate_job

from .job_runner import run_cli_job
from .recipe_args import (
    add_calibration_args,
    add_recipe_args,
    build_recipe,
    check_calibration_args,
    resolve_gguf_plan,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="KL, perplexity and top-1 of a plan against the model as "
                                    "opened, on calibration text (or: eval demo)")
    p.add_argument("model", help="checkpoint (file or folder), or 'demo' for the embedded MLP")
    add_recipe_args(p, preset_help="llama-quantize mixture, e.g. Q4_K_M (demo: default Q4_0)")
    add_calibration_args(p, data_help="UTF-8 calibration text (encoders: one sentence per line); "
                                      "default: the Python documentation shipped with the "
                                      "standard library, which is weaker than text like your "
                                      "real inputs",
                         ctx_help="tokens per window (encoders: most tokens per sentence)",
                         chunks_help="evaluate at most N windows (encoders: sentences)")
    p.add_argument("--imatrix", metavar="FILE",
                   help="importance matrix for the quantizers (GGUF imatrix or legacy .dat)")
    p.add_argument("--allow-requantize", action="store_true",
                   help="re-encode tensors of a quantized GGUF from their decoded values")
    p.add_argument("--weights-only", action="store_true",
                   help="float32 activations in the quantized pass (by default each matmul's "
                        "input is rounded as llama.cpp's CPU backend rounds it for that type)")
    p.add_argument("--threads", type=int, help="torch and codec threads (default: all)")
    p.add_argument("--json", nargs="?", const="-", metavar="OUT",
                   help="write the results as JSON to OUT (no OUT: to stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _is_demo(model: str) -> bool:
    """The embedded model, named `demo` (the CLI's resolver has turned it into its path)."""
    from pathlib import Path

    if model == "demo":
        return True
    try:
        return Path(model).resolve() == demo.demo_model_path().resolve()
    except (OSError, FileNotFoundError):
        return False


def run(args: argparse.Namespace) -> int:
    if _is_demo(args.model):
        return _run_demo(args)
    return _run_model(args)


def _cli_error(message: str) -> Exception:
    from . import CliError

    return CliError(message)


def _run_model(args: argparse.Namespace) -> int:
    from qtstudio.calib import CalibrationError, engine_kind
    from qtstudio.formats.atomic import ExportError, atomic_output, check_target
    from qtstudio.formats.imatrix import load_imatrix
    from qtstudio.jobs.eval import eval_job

    if not (args.preset or args.recipe or args.rule):
        raise ValueError("eval needs --preset NAME, --recipe FILE or --rule REGEX=TYPE")
    check_calibration_args(args, "window")
    to_file = args.json not in (None, "-")
    try:
        if to_file:
            check_target(args.json, [args.model] + ([args.data] if args.data else []))
        imatrix = load_imatrix(args.imatrix) if args.imatrix else None
        with open_model(args.model) as model:
            engine_kind(model)
            _, plan = resolve_gguf_plan(args, model, has_imatrix=imatrix is not None)
            result = run_cli_job(
                lambda cancel: eval_job(model, plan, args.data, ctx=args.ctx, chunks=args.chunks,
                                        imatrix=imatrix, allow_requantize=args.allow_requantize,
                                        threads=args.threads, cancel=cancel,
                                        llama_cpp_activations=not args.weights_only),
                quiet=args.quiet, on_stop="nothing was written")
        doc = result.to_dict()
        if to_file:
            with atomic_output(args.json) as f:
                f.write((json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    except (CalibrationError, ExportError) as exc:
        raise _cli_error(str(exc)) from None
    if args.json == "-":
        print(json.dumps(doc, indent=2))
        return 0
    _print(result, plan, args)
    if to_file:
        print(f"wrote {args.json}")
    return 0


def _print(result, plan, args) -> None:
    d = result.to_dict()
    print(f"model: {result.model}")
    print(f"data: {result.data}")
    print(f"plan: {plan.preset or 'recipe'}, {plan.avg_bpw:.3f} bpw, "
          f"{human_bytes(plan.total_bytes)}")
    if result.kind == "encoder":
        print(f"sentence embeddings: cosine mean {d['cosine_mean']:.6f}, "
              f"min {d['cosine_min']:.6f} ({d['sentences']} sentences)")
    else:
        print(f"windows: {result.n_windows} x {result.ctx} tokens")
        print(f"KL(reference || quantized): mean {d['kl_mean']:.6f}, median {d['kl_median']:.6f}, "
              f"p99 {d['kl_p99']:.6f}, max {d['kl_max']:.6f}")
        if "ppl_reference" in d:
            pr, pq = d["ppl_reference"], d["ppl_quantized"]
            change = f" ({(pq / pr - 1) * 100:+.2f}%)" if math.isfinite(pr) and pr > 0 else ""
            print(f"perplexity: reference {pr:.4f}, quantized {pq:.4f}{change}")
        if "accuracy_reference" in d:
            print(f"accuracy: reference {d['accuracy_reference'] * 100:.2f}%, quantized "
                  f"{d['accuracy_quantized'] * 100:.2f}%")
        print(f"top-1 agreement: {d['top1_agreement'] * 100:.2f}%")
    print(f"tokens: {d['tokens']} in {result.elapsed:.2f} s "
          f"({result.tokens_per_second:.0f} tokens/s, both passes)")


def _run_demo(args: argparse.Namespace) -> int:
    if args.data or args.imatrix:
        raise ValueError("eval demo scores the demo's own digits test set; --data and --imatrix "
                         "are for checkpoints")
    if not (args.preset or args.recipe or args.rule):
        args.preset = "Q4_0"
    with open_model(demo.demo_model_path()) as model:
        recipe = build_recipe(args, model)
        plan = resolve_plan(model, recipe, target_format=None)
    result = run_cli_job(lambda cancel: evaluate_job(plan, cancel), quiet=args.quiet,
                         on_stop="nothing was evaluated")
    result["preset"] = recipe.preset
    if args.json is not None:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            from qtstudio.formats.atomic import atomic_output

            with atomic_output(args.json) as f:
                f.write((text + "\n").encode("utf-8"))
        return 0
    print(f"demo model: {demo.demo_model_path()}")
    print(f"plan: {', '.join(f'{k} x{v}' for k, v in sorted(result['encodings'].items()))}; "
          f"{result['total_bytes']} bytes, {result['avg_bpw']:.3f} bpw")
    for e in plan.fallbacks:
        print(f"  fallback {e.name}: {e.fallback_from} -> {e.encoding} ({e.reason})")
    print(f"float accuracy:     {result['float_accuracy'] * 100:.2f}% "
          f"({result['n_test']} test images)")
    print(f"quantized accuracy: {result['quantized_accuracy'] * 100:.2f}%")
    return 0
