"""``qtstudio-cli export MODEL --format hf-gptq``: the command-line side of the Hugging Face
GPTQ checkpoint export.

The ``export`` subcommand (qtstudio/cli/export.py) parses the shared options and hands hf-gptq
requests here; the export itself is qtstudio.export.hf_gptq.
"""

from __future__ import annotations

import argparse

from qtstudio.core.human_numbers import human_bytes
from qtstudio.export.hf_gptq import export_hf_gptq_job
from qtstudio.formats import open_model
from qtstudio.formats.atomic import ExportError
from qtstudio.quant.int_grid import IntGridConfig

from .errors import CliError
from .gptq_args import calibration_tokens, check_gptq_args, gptq_options
from .job_runner import run_cli_job


def run_hf_gptq_cli(args: argparse.Namespace) -> int:
    """``qtstudio-cli export MODEL --format hf-gptq --method gptq --data FILE -o DIR``."""
    if args.method != "gptq":
        raise ValueError("--format hf-gptq writes a GPTQ checkpoint: add --method gptq "
                         "--data FILE")
    if args.preset or args.recipe or args.rule:
        raise ValueError("--format hf-gptq takes --bits/--group-size/--asym, not a preset, "
                         "recipe or rule")
    check_gptq_args(args)
    grid = IntGridConfig(bits=args.bits, group_size=args.group_size, sym=not args.asym)
    with open_model(args.model) as model:
        tokens = calibration_tokens(args, model)
        try:
            report = run_cli_job(
                lambda cancel: export_hf_gptq_job(model, tokens, args.output, grid=grid,
                                                  options=gptq_options(args), cancel=cancel),
                quiet=args.quiet, on_stop="no output folder was written")
        except ExportError as exc:
            raise CliError(str(exc)) from None
    print(f"wrote {report.path}: {len(report.tensors)} GPTQ linears ({grid.bits}-bit, group "
          f"{grid.group_size}, {'sym' if grid.sym else 'asym'}), "
          f"{human_bytes(report.bytes_written)}, {report.elapsed:.2f} s")
    return 0
