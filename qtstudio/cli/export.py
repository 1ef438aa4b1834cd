"""`qtstudio-cli export MODEL -o OUT`: write the quantized model as GGUF (or NNEF)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from qtstudio.core.human_numbers import human_bytes
from qtstudio.formats import open_model

from .cluster_args import add_ray_arg, check_ray_arg, cluster_executor
from .errors import CliError
from .gptq_args import add_gptq_args, calibration_tokens, check_gptq_args, gptq_options
from .job_runner import run_cli_job
from .outputs import check_output
from .recipe_args import add_recipe_args, check_threads, resolve_gguf_plan
from .recipe_method import apply_recipe_method, defer_gptq_defaults


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the quantized model to a file llama.cpp (GGUF) "
                                      "or tract (NNEF) runs")
    p.add_argument("model")
    add_recipe_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (.gguf) or, for NNEF, directory / .tgz")
    p.add_argument("--format", choices=["gguf", "nnef", "hf-gptq"], default="gguf",
                   help="output format (default gguf; hf-gptq: a Hugging Face GPTQ checkpoint "
                        "folder, needs --method gptq)")
    p.add_argument("--imatrix", metavar="FILE",
                   help="llama.cpp importance matrix (GGUF imatrix or legacy .dat)")
    p.add_argument("--threads", type=int, help="worker threads for the codecs (default: all)")
    p.add_argument("--allow-requantize", action="store_true",
                   help="re-encode tensors of a quantized GGUF from their decoded values "
                        "(loses quality, as llama-quantize --allow-requantize)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="GGUF string metadata to write, e.g. general.name=my-model-q4 "
                        "general.author=... general.license=mit (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_arg(p)
    # NNEF only (qtstudio/cli/export_nnef.py reads them)
    p.add_argument("--calibration", choices=["minmax", "mse"], default="minmax",
                   help="NNEF Q4_0 block scales: ggml min-max, or MSE grid search")
    p.add_argument("--verify", action="store_true",
                   help="NNEF: run the export with tract and compare it with torch")
    p.add_argument("--seq-len", type=int, default=8, metavar="N",
                   help="NNEF: tokens per sequence the graph is fixed to (default 8)")
    add_gptq_args(p, hf=True)
    defer_gptq_defaults(p)
    p.set_defaults(func=run)


def _cli_error(message: str) -> Exception:
    return CliError(message)


def run(args: argparse.Namespace) -> int:
    # NNEF may write a folder; GGUF only a file. Either way never onto an input.
    check_output(args.output, args, allow_dir=args.format == "nnef")
    apply_recipe_method(args)
    if args.format == "nnef":
        if args.ray:
            raise ValueError("--ray: only for --format gguf")
        return _run_nnef(args)
    if args.format == "hf-gptq":
        from .export_hf_gptq import run_hf_gptq_cli

        return run_hf_gptq_cli(args)
    return _run_gguf(args)


def _run_nnef(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("qtstudio.export.nnef") is None:
        raise _cli_error("NNEF export is not available in this build")
    mod = importlib.import_module("qtstudio.cli.export_nnef")
    fn = getattr(mod, "export_nnef_cli", None)
    if fn is None:
        raise _cli_error("NNEF export is not available in this build "
                         "(qtstudio.cli.export_nnef has no export_nnef_cli)")
    return int(fn(args) or 0)


def _run_gguf(args: argparse.Namespace) -> int:
    from qtstudio.export.gguf import export_gguf_job
    from qtstudio.formats.atomic import ExportError
    from qtstudio.formats.imatrix import load_imatrix

    if not args.preset and not args.recipe and not args.rule:
        raise ValueError("export needs --preset NAME, --recipe FILE or --rule REGEX=TYPE")
    check_threads(args)
    nnef_only = [flag for flag, used in (
        ("--calibration", getattr(args, "calibration", "minmax") != "minmax"),
        ("--verify", getattr(args, "verify", False)),
        ("--seq-len", getattr(args, "seq_len", 8) != 8)) if used]
    if nnef_only:
        raise ValueError(f"{', '.join(nnef_only)}: only for --format nnef")
    check_ray_arg(args)
    use_gptq = check_gptq_args(args)
    if use_gptq and args.ray:
        raise ValueError("--ray: --method gptq runs in this process (its blocks are not cluster "
                         "tasks yet); leave out one of them")
    metadata = {}
    for item in getattr(args, "meta", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--meta {item}: expected KEY=VALUE")
        metadata[key.strip()] = value
    imatrix = load_imatrix(args.imatrix) if args.imatrix else None
    with open_model(args.model) as model:
        _, plan = resolve_gguf_plan(args, model, has_imatrix=imatrix is not None)
        tokens = calibration_tokens(args, model) if use_gptq else None

        def make_job(cancel, ex):
            if tokens is not None:
                from qtstudio.export.gguf_gptq import gptq_export_job

                return gptq_export_job(model, plan, args.output, tokens,
                                       options=gptq_options(args), threads=args.threads,
                                       cancel=cancel, allow_requantize=args.allow_requantize,
                                       metadata=metadata)
            return export_gguf_job(model, plan, args.output, imatrix=imatrix,
                                   threads=args.threads, cancel=cancel,
                                   allow_requantize=args.allow_requantize, executor=ex,
                                   metadata=metadata)
        try:
            with cluster_executor(args) as ex:
                report = run_cli_job(lambda cancel: make_job(cancel, ex), quiet=args.quiet,
                                     on_stop="no output file was written")
        except ExportError as exc:
            raise _cli_error(str(exc)) from None
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if report.skipped:
        print(f"note: {len(report.skipped)} tensors llama.cpp does not use were left out: "
              f"{', '.join(report.skipped[:5])}{' ...' if len(report.skipped) > 5 else ''}",
              file=sys.stderr)
    print(f"wrote {report.path}: {len(report.tensors)} tensors, "
          f"{human_bytes(report.bytes_written)}, file type {report.file_type}, "
          f"{report.elapsed:.2f} s ({report.throughput_mb_s:.1f} MB/s)")
    if not report.runnable:
        print("llama.cpp cannot run this file: it is a plain GGUF tensor container "
              f"(architecture {report.architecture or 'unknown'}); qtstudio and the gguf "
              "package can read it")
    return 0
