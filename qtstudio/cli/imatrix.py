"""`qtstudio-cli imatrix MODEL --data FILE -o OUT`: llama-imatrix's importance matrix.

Per matrix multiplication, the sum over calibration tokens of each input column's square, with
the token count; written as llama.cpp's GGUF imatrix, or the legacy .dat when OUT ends in .dat.
"""

from __future__ import annotations

import argparse

from qtstudio.formats import open_model

from .job_runner import run_cli_job
from .recipe_args import add_calibration_args, check_calibration_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("imatrix", help="importance matrix from calibration text (llama-imatrix "
                                       "semantics; GGUF or legacy .dat)")
    p.add_argument("model")
    add_calibration_args(p, data_help="UTF-8 calibration text; default: the Python documentation "
                                      "shipped with the standard library (weaker than text like "
                                      "your real inputs)",
                         ctx_help="tokens per chunk", chunks_help="use at most N chunks")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file: GGUF imatrix (.gguf), or legacy format for .dat")
    p.add_argument("--threads", type=int, help="torch threads (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qtstudio.calib import CalibrationError, engine_kind
    from qtstudio.formats.atomic import ExportError, check_target
    from qtstudio.jobs.imatrix import imatrix_job

    from . import CliError

    check_calibration_args(args, "chunk")
    try:
        check_target(args.output, [args.model] + ([args.data] if args.data else []))
        with open_model(args.model) as model:
            engine_kind(model)
            result = run_cli_job(
                lambda cancel: imatrix_job(model, args.data, ctx=args.ctx, chunks=args.chunks,
                                           threads=args.threads, cancel=cancel),
                quiet=args.quiet, on_stop="no output file was written")
        result.save(args.output)
    except (CalibrationError, ExportError) as exc:
        raise CliError(str(exc)) from None
    d = result.to_dict()
    kind = "legacy .dat" if str(args.output).lower().endswith(".dat") else "GGUF imatrix"
    print(f"wrote {args.output} ({kind}): {d['entries']} matrices, {d['chunk_count']} chunks "
          f"of {d['chunk_size']} tokens, {d['tokens']} tokens, {result.elapsed:.2f} s")
    return 0
