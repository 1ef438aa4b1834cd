"""`qtstudio-cli whatif MODEL --encodings A,B`: the error each encoding would give, before choosing.

One line per encoding (bits per weight against parameter-weighted relative error over the chosen
tensors), the same points the window's What-if plot draws. With a recipe, the plan's own mixture
is measured on the same tensors and shown beside them. With ``--data FILE`` (language models)
each tensor is also measured on calibration text, alone at each encoding with every other tensor
float: the relative output error of its block and the model's output KL (cached like
``optimize --objective kl``); the window's Sensitivity dock shows the same numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from qtstudio.core.encodings import get_encoding
from qtstudio.core.plan import Plan, resolve_plan
from qtstudio.formats import open_model
from qtstudio.jobs.whatif import (
    WHATIF_MAX_ELEMENTS,
    OutputErrors,
    WhatIfErrors,
    output_curve,
    output_error_job,
    output_errors,
    whatif_curve,
    whatif_job,
)

from .cluster_args import add_ray_arg, check_ray_arg, cluster_executor
from .job_runner import run_cli_job
from .outputs import check_output, write_json
from .recipe_args import (
    add_calibration_args,
    add_recipe_args,
    add_target_arg,
    build_recipe,
    target_format,
)
from .tensor_select import add_tensors_arg, select_tensors


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("whatif", help="error and size of candidate encodings per tensor and "
                                      "overall, before choosing")
    p.add_argument("model")
    p.add_argument("--encodings", required=True, metavar="A,B,...",
                   help="encodings to try, e.g. Q8_0,Q6_K,Q4_K,Q4_0,Q2_K")
    add_recipe_args(p, preset_help="also measure this llama-quantize mixture (e.g. Q4_K_M) on "
                                   "the same tensors")
    add_tensors_arg(p, "every quantizable tensor")
    p.add_argument("--max-elements", type=int, default=WHATIF_MAX_ELEMENTS, metavar="N",
                   help="values measured per tensor at most; larger tensors are measured on "
                        f"evenly spaced rows (default {WHATIF_MAX_ELEMENTS})")
    add_target_arg(p, default="none",
                   help_text="with a recipe: apply this export format's fallbacks (default none)")
    g = p.add_argument_group("output error (--data)")
    add_calibration_args(g, prefix="with --data: ",
                         data_help="UTF-8 calibration text: also measure each tensor alone at "
                                   "each encoding on it (relative block output error and output "
                                   "KL)")
    g.add_argument("--no-cache", action="store_true",
                   help="with --data: measure again instead of using the sensitivity cache")
    g.add_argument("--allow-requantize", action="store_true",
                   help="with --data: measure tensors of a quantized GGUF from their decoded "
                        "values")
    p.add_argument("--verbose", "-v", action="store_true", help="also print every tensor")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_arg(p)
    p.set_defaults(func=run)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _num(x: float | None) -> str:
    """A 10-wide cell: output errors and KLs span decades, so they print in e-notation."""
    return f"{'-':>10}" if x is None else f"{x:>10.3e}"


def plan_point(plan: Plan, names: list[str], errors: WhatIfErrors,
               output: OutputErrors | None = None) -> dict:
    """The plan's mixture over ``names``: its bpw and parameter-weighted relative error; with
    ``output`` also its weighted block output error and summed (additive) KL."""
    params = bits = err = 0.0
    picks: dict[str, str] = {}
    for name in names:
        e = plan.entry(name)
        enc = get_encoding(e.encoding).name
        m = errors.get((name, enc))
        if m is None:
            continue
        picks[name] = enc
        p = math.prod(e.shape)
        params += p
        bits += 8.0 * e.nbytes
        err += m["rel_error"] * p
    point = {"bpw": bits / params if params else None,
             "rel_error": err / params if params else None}
    if output is not None:
        oparams = oerr = kl = 0.0
        for name, enc in picks.items():
            o = output.get((name, enc))
            if o is None:
                continue
            kl += float(o["kl"] or 0.0)
            if o["out_err"] is not None:
                oparams += math.prod(plan.entry(name).shape)
                oerr += float(o["out_err"]) * math.prod(plan.entry(name).shape)
        point.update(out_err=oerr / oparams if oparams else None, kl=kl)
    return point


def cannot_take(encodings: list[str], names: list[str], shapes: dict[str, tuple[int, ...]],
                errors: WhatIfErrors, show: int = 4) -> list[str]:
    """One note per encoding some tensors could not take, naming them and why."""
    lines = []
    for enc_name in encodings:
        enc = get_encoding(enc_name)
        left = [n for n in names if (n, enc.name) not in errors]
        if not left:
            continue
        why = [f"{n} ({_why(enc, shapes[n])})" for n in left[:show]]
        more = f" and {len(left) - show} more" if len(left) > show else ""
        who = ("no selected tensor can" if len(left) == len(names)
               else f"{len(left)} of the {len(names)} selected tensors cannot")
        lines.append(f"note: {enc.name}: {who} take it: {', '.join(why)}{more}")
    return lines


def _why(enc, shape: tuple[int, ...]) -> str:
    n = shape[-1] if shape else 0
    if n % enc.elements_per_block:
        return (f"row length {n} is not a multiple of {enc.name}'s block of "
                f"{enc.elements_per_block}")
    return enc.shape_problem(shape) or "not measured"


def run(args: argparse.Namespace) -> int:
    try:
        encodings = [get_encoding(e.strip()).name for e in args.encodings.split(",") if e.strip()]
    except ValueError as exc:
        raise ValueError(f"--encodings: {exc}") from None
    if not encodings:
        raise ValueError("--encodings needs at least one encoding, e.g. Q4_0,Q4_K")
    if args.max_elements < 1:
        raise ValueError("--max-elements must be at least 1")
    if args.data is None:
        stray = [f for f, used in (("--chunks", args.chunks is not None),
                                   ("--no-cache", args.no_cache),
                                   ("--allow-requantize", args.allow_requantize),
                                   ("--ctx", args.ctx != 512)) if used]
        if stray:
            raise ValueError(f"{', '.join(stray)}: only with --data FILE")
    elif not Path(args.data).is_file():  # before any work, not after the weight what-if
        raise ValueError(f"--data {args.data}: no such calibration file")
    elif args.ctx < 2:
        raise ValueError(f"--ctx {args.ctx}: a window needs at least 2 tokens")
    elif args.chunks is not None and args.chunks < 1:
        raise ValueError(f"--chunks {args.chunks}: must be at least 1")
    check_output(args.json, args)
    check_ray_arg(args)
    with open_model(args.model) as model:
        plan = None
        if args.preset or args.recipe or args.rule:
            plan = resolve_plan(model, build_recipe(args, model),
                                target_format=target_format(args))
        names = select_tensors(model, args.tensors, lambda t: t.quantizable,
                               "quantizable tensor")
        candidates = {n: list(dict.fromkeys(
            encodings + ([plan.entry(n).encoding] if plan is not None else []))) for n in names}
        with cluster_executor(args) as ex:
            errors = run_cli_job(
                lambda cancel: whatif_job(model, candidates, max_elements=args.max_elements,
                                          cancel=cancel, executor=ex),
                quiet=args.quiet, on_stop="no results written")
        output, sens, ocurve = None, None, {}
        if args.data is not None:
            sens = run_cli_job(
                lambda cancel: output_error_job(model, candidates, args.data, ctx=args.ctx,
                                                chunks=args.chunks, cache=not args.no_cache,
                                                allow_requantize=args.allow_requantize,
                                                cancel=cancel),
                quiet=args.quiet, on_stop="no results written")
            output = output_errors(sens)
            ocurve = output_curve(output, names, model, encodings)
        curve = whatif_curve(errors, names, model, encodings)
        point = plan_point(plan, names, errors, output) if plan is not None else None
        shapes = {n: model.tensor(n).shape for n in names}
        model_path = str(model.path)
    if not curve:
        raise ValueError(f"{args.model}: no selected tensor can take "
                         f"{' or '.join(encodings)}; "
                         + "; ".join(line.removeprefix("note: ") for line in
                                     cannot_take(encodings, names, shapes, errors, show=2)))
    per_tensor = [{"name": n, "encoding": e, "shape": list(shapes[n]),
                   "bpw": 8.0 * get_encoding(e).nbytes(tuple(shapes[n])) / max(
                       1, math.prod(shapes[n])),
                   **{k: _finite(v) for k, v in errors[(n, e)].items()},
                   **(output.get((n, e), {"out_err": None, "kl": None}) if output is not None
                      else {})}
                  for n in names for e in encodings if (n, e) in errors]
    for line in cannot_take(encodings, names, shapes, errors):
        print(line, file=sys.stderr)
    print(f"{len(names)} tensors; error measured on at most {args.max_elements} values each"
          + (f"; output error on {sens.data} ({len(sens.measured)} tensors measured, "
             f"{len(sens.reused)} from the cache)" if sens is not None else ""))
    extra = f" {'out err':>10} {'KL':>10}" if output is not None else ""
    print(f"{'encoding':<12} {'bpw':>7} {'rel err':>10}{extra}  tensors")
    for enc, bpw, rel, n in curve:
        more = ""
        if output is not None:
            o = ocurve.get(enc, {})
            more = f" {_num(o.get('out_err'))} {_num(o.get('kl'))}"
        print(f"{enc:<12} {bpw:>7.3f} {rel:>10.5f}{more}  {n}/{len(names)}")
    if point is not None and point["bpw"] is not None:
        label = f"plan ({plan.preset or 'recipe'})"
        more = (f", out err {_num(point['out_err']).strip()}, KL {_num(point['kl']).strip()}"
                if output is not None else "")
        print(f"{label}: {point['bpw']:.3f} bpw, rel err {point['rel_error']:.5f}{more}")
    if args.verbose:
        w = max(len(r["name"]) for r in per_tensor)
        print(f"\n{'name':<{w}}  {'encoding':<12} {'bpw':>7} {'rel err':>10} {'SNR dB':>8}"
              f"{extra}")
        for r in per_tensor:
            snr = "exact" if r["snr_db"] is None else f"{r['snr_db']:.2f}"
            more = f" {_num(r['out_err'])} {_num(r['kl'])}" if output is not None else ""
            print(f"{r['name']:<{w}}  {r['encoding']:<12} {r['bpw']:>7.3f} "
                  f"{r['rel_error']:>10.5f} {snr:>8}{more}")
    if args.json:
        write_json(args.json, {
            "model": model_path, "max_elements": args.max_elements, "tensors_selected": names,
            "data": sens.data if sens is not None else None,
            "encodings": [{"encoding": e, "bpw": b, "rel_error": r, "tensors": n,
                           **({k: ocurve.get(e, {}).get(k) for k in ("out_err", "kl")}
                              if output is not None else {})}
                          for e, b, r, n in curve],
            "plan": point, "tensors": per_tensor}, args)
        print(f"results -> {args.json}")
    return 0
