"""``qtstudio-cli compare MODEL``: size against error for llama.cpp presets and optimized mixes,
from one measuring pass, before anything is quantized (the window's Run ▸ Compare)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from qtstudio.formats import open_model
from qtstudio.jobs.compare import DEFAULT_PRESETS, DEFAULT_TARGETS, compare_job, model_files

from .job_runner import run_cli_job
from .recipe_args import check_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="size against error of presets and optimized mixes")
    p.add_argument("model")
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), metavar="A,B,...")
    p.add_argument("--targets-bpw", default=",".join(f"{t:g}" for t in DEFAULT_TARGETS),
                   metavar="X,Y,...", help="optimized mixes at these bits per weight ('' none)")
    p.add_argument("--threads", type=int, help="worker threads for the codecs (default: all)")
    p.add_argument("--report", metavar="FILE",
                   help="write the comparison: JSON for .json, a Markdown table otherwise")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    try:
        targets = [float(t) for t in args.targets_bpw.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--targets-bpw {args.targets_bpw}: expected numbers") from None
    check_threads(args)
    with open_model(args.model) as model:
        if args.report:  # refuse a report onto the model before the measuring, not after
            from qtstudio.formats.atomic import ExportError, check_target

            try:
                check_target(args.report, [args.model, *model_files(model.path)])
            except ExportError as exc:
                raise ValueError(f"--report: {exc}") from None
        result = run_cli_job(lambda cancel: compare_job(
            model, presets=presets, targets_bpw=targets, threads=args.threads, cancel=cancel),
            quiet=args.quiet, on_stop="no report written")
    if args.report:
        result.save(Path(args.report), inputs=[args.model])
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{'plan':<20} {'kind':<10} {'size MiB':>10} {'bpw':>7} {'rel error':>10}")
        for p in result.plans:
            err = "n/a" if math.isnan(p.rel_error) else f"{p.rel_error:.4g}"
            print(f"{p.label:<20} {p.kind:<10} {p.nbytes / 2**20:>10.2f} {p.bpw:>7.3f} "
                  f"{err:>10}")
        if args.report:
            print(f"report -> {args.report}")
    return 0
