"""`qtstudio-cli eval demo`: accuracy of the demo model, float and under a plan."""

from __future__ import annotations

import argparse
import json

from qtstudio.core import demo
from qtstudio.core.plan import resolve_plan
from qtstudio.formats import open_model

from .job_runner import run_cli_job
from .recipe_args import add_recipe_args, build_recipe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy of the embedded demo model, float and quantized")
    p.add_argument("model", choices=["demo"], help="which model to evaluate (only 'demo')")
    add_recipe_args(p, preset_help="llama-quantize mixture (default Q4_0 when nothing is given)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.preset or args.recipe or args.rule):
        args.preset = "Q4_0"
    with open_model(demo.demo_model_path()) as model:
        recipe = build_recipe(args, model)
        plan = resolve_plan(model, recipe, target_format=None)
    result = run_cli_job(lambda cancel: demo.evaluate_job(plan, cancel), quiet=args.quiet,
                         on_stop="nothing was evaluated")
    result["preset"] = recipe.preset
    if args.json:
        print(json.dumps(result, indent=2))
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
