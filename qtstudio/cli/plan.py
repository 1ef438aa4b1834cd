"""`qtstudio-cli plan MODEL`: every tensor's encoding, fallbacks and sizes, before any work."""

from __future__ import annotations

import argparse
import json

from qtstudio.core.human_numbers import human_bytes
from qtstudio.core.plan import Plan, resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.formats import open_model

from .outputs import check_output, write_text
from .recipe_args import add_recipe_args, add_target_arg, build_recipe, target_format


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="per-tensor encodings, fallbacks, sizes and memory estimate")
    p.add_argument("model")
    add_recipe_args(p)
    add_target_arg(p, default="gguf",
                   help_text="file format the plan must fit (default gguf)")
    p.add_argument("--out", metavar="FILE",
                   help="save the plan with its recipe as JSON (usable as --recipe FILE)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def plan_document(plan: Plan, recipe: Recipe) -> dict:
    return {"recipe": recipe.to_dict(), **plan.to_dict()}


def print_plan(plan: Plan) -> None:
    w = max([len(e.name) for e in plan.entries] + [4])
    print(f"{'name':<{w}}  {'encoding':<12} {'bytes':>11} {'bpw':>7}  origin")
    for e in plan.entries:
        fb = f"  (wanted {e.fallback_from}: {e.reason})" if e.fallback_from else ""
        print(f"{e.name:<{w}}  {e.encoding:<12} {e.nbytes:>11} {e.bpw:>7.3f}  {e.origin}{fb}")
    t = plan.totals()
    print(f"total: {t['total_bytes']} bytes ({human_bytes(t['total_bytes'])}) from "
          f"{t['original_bytes']} ({human_bytes(t['original_bytes'])}); "
          f"{t['avg_bpw']:.4f} bits per weight")
    print(f"memory estimate (P x Q / 8 x 1.2): {human_bytes(t['memory_estimate_bytes'])} "
          f"beside {human_bytes(t['total_bytes'])} of weights")
    counts = ", ".join(f"{k} x{v}" for k, v in sorted(t["encodings"].items()))
    print(f"encodings: {counts}")
    if plan.fallbacks:
        print(f"fallbacks: {len(plan.fallbacks)} tensors could not take their type "
              f"({t['fallback_bpw_cost']:+.4f} bpw overall)")
        for e in plan.fallbacks:
            cost = f"{e.bpw_cost:+.3f} bpw" if e.bpw_cost is not None else ""
            print(f"  {e.name}: {e.fallback_from} -> {e.encoding} {cost} ({e.reason})")


def run(args: argparse.Namespace) -> int:
    check_output(args.out, args)
    with open_model(args.model) as model:
        recipe = build_recipe(args, model)
        plan = resolve_plan(model, recipe, target_format=target_format(args))
        doc = plan_document(plan, recipe)
        if args.out:
            write_text(args.out, json.dumps(doc, indent=2) + "\n", args)
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            print_plan(plan)
    return 0
