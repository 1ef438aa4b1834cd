"""`qtstudio-cli bench MODEL`: time each layer's qmatmul in its planned encoding against float32."""

from __future__ import annotations

import argparse

from qtstudio.core.plan import resolve_plan
from qtstudio.formats import open_model
from qtstudio.jobs.benchmark import CODEC, BenchResult, benchmark_job

from .job_runner import run_cli_job
from .outputs import check_output, write_json
from .recipe_args import add_recipe_args, add_target_arg, build_recipe, target_format
from .tensor_select import add_tensors_arg, select_tensors

INTEGER_DTYPES = frozenset({"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL"})


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time qmatmul per layer in its planned encoding against a "
                                     "float32 matmul")
    p.add_argument("model")
    add_recipe_args(p)
    add_tensors_arg(p, "every 2-D tensor")
    p.add_argument("--batch", type=int, default=8, metavar="N",
                   help="activation rows per product (default 8; 1 is one-token decoding)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="threads for qmatmul and for numpy's float32 matmul alike (default 1, the "
                        "steadiest on a busy machine)")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="timed runs per layer after a warm-up; the best counts (default 3)")
    add_target_arg(p, default="none",
                   help_text="apply this export format's fallbacks first (default none)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def bench_totals(results: list[BenchResult]) -> dict:
    """Sums over the layers timed through qmatmul (codec round trips are not matmul times)."""
    native = [r for r in results if r.native]
    q = sum(r.seconds for r in native)
    f = sum(r.float_seconds for r in native)
    return {"layers": len(results), "qmatmul_layers": len(native), "qmatmul_seconds": q,
            "float_seconds": f, "speedup": f / q if q > 0 else None,
            "codec_layers": len(results) - len(native)}


def print_results(results: list[BenchResult]) -> None:
    w = max([len(r.name) for r in results] + [4])
    shapes = [" x ".join(map(str, r.shape)) for r in results]
    sw = max([len(s) for s in shapes] + [5])
    print(f"{'name':<{w}}  {'encoding':<12} {'shape':<{sw}} {'qmatmul ms':>11} "
          f"{'float32 ms':>11} {'speedup':>8}")
    for r, shape in zip(results, shapes, strict=True):
        mark = "" if r.native else " *"
        print(f"{r.name:<{w}}  {r.encoding:<12} {shape:<{sw}} {_ms(r.seconds):>11} "
              f"{_ms(r.float_seconds):>11} {r.speedup:>7.2f}x{mark}")
    t = bench_totals(results)
    if t["qmatmul_layers"]:
        print(f"total ({t['qmatmul_layers']} layers): qmatmul {_ms(t['qmatmul_seconds'])} ms, "
              f"float32 {_ms(t['float_seconds'])} ms, speedup {t['speedup']:.2f}x")
        print(f"method: {next(r.method for r in results if r.native)}; best of the repeats")
    if t["codec_layers"]:
        print(f"* {t['codec_layers']} layer(s): {CODEC} (no native qmatmul for their encoding), "
              "not a matmul time; left out of the total")


def run(args: argparse.Namespace) -> int:
    if not args.preset and not args.recipe and not args.rule:
        raise ValueError("bench needs --preset NAME, --recipe FILE or --rule REGEX=TYPE")
    for flag, value in (("--batch", args.batch), ("--threads", args.threads),
                        ("--repeats", args.repeats)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1")
    check_output(args.json, args)
    with open_model(args.model) as model:
        recipe = build_recipe(args, model)
        plan = resolve_plan(model, recipe, target_format=target_format(args))
        # integer tensors (position ids, masks) are data, not weights: nothing to multiply
        names = select_tensors(model, args.tensors,
                               lambda t: len(t.shape) >= 2 and t.dtype not in INTEGER_DTYPES,
                               "2-D float tensor")
        results = run_cli_job(
            lambda cancel: benchmark_job(model, plan, names, batch=args.batch,
                                         repeats=args.repeats, threads=args.threads,
                                         cancel=cancel),
            quiet=args.quiet, on_stop="no results written")
        model_path = str(model.path)
    if not results:
        raise ValueError(f"{args.model}: none of the {len(names)} selected tensors can take its "
                         "planned encoding's blocks; nothing to time")
    print_results(results)
    if args.json:
        write_json(args.json, {
            "model": model_path, "batch": args.batch, "threads": args.threads,
            "repeats": args.repeats, "results": [r.as_dict() for r in results],
            "totals": bench_totals(results)}, args)
        print(f"results -> {args.json}")
    return 0
