"""Command-line options of GPTQ, shared by quantize and export (``--method gptq``)."""

from __future__ import annotations

import argparse

import numpy as np

from qtstudio.core.model import Model
from qtstudio.quant.gptq import GPTQOptions


def add_gptq_args(p: argparse.ArgumentParser, *, hf: bool = False) -> None:
    g = p.add_argument_group("GPTQ (--method gptq)")
    g.add_argument("--method", choices=["plain", "gptq"], default="plain",
                   help="plain: round each block on its own (default); gptq: error-compensating "
                        "GPTQ on calibration activations of --data (same types, same size)")
    g.add_argument("--data", metavar="FILE",
                   help="UTF-8 calibration text, cut into windows with the model's tokenizer")
    g.add_argument("--calib-ctx", type=int, default=512, metavar="N",
                   help="tokens per calibration window (default 512, capped by the model)")
    g.add_argument("--calib-windows", type=int, default=64, metavar="N",
                   help="calibration windows at most (default 64)")
    g.add_argument("--gptq-damp", type=float, default=0.01, metavar="F",
                   help="dampening: fraction of the mean Hessian diagonal added to it "
                        "(default 0.01)")
    g.add_argument("--gptq-block-size", type=int, default=128, metavar="N",
                   help="columns per lazy-update batch (default 128)")
    g.add_argument("--desc-act", action="store_true",
                   help="act order: round columns by decreasing activation energy")
    if hf:
        g.add_argument("--bits", type=int, default=4, choices=[2, 4, 8],
                       help="hf-gptq: bits per weight (default 4)")
        g.add_argument("--group-size", type=int, default=128, metavar="N",
                       help="hf-gptq: columns per scale/zero group, -1 for one per row "
                            "(default 128)")
        g.add_argument("--asym", action="store_true",
                       help="hf-gptq: asymmetric grid with a zero point per group "
                            "(default symmetric)")


def gptq_options(args: argparse.Namespace) -> GPTQOptions:
    opt = GPTQOptions(damp_percent=args.gptq_damp, block_size=args.gptq_block_size,
                      desc_act=args.desc_act)
    opt.validate()
    return opt


def tuned_gptq_flags(args: argparse.Namespace) -> list[str]:
    """The GPTQ tuning flags given away from their defaults (an error without --method gptq,
    here and in optimize)."""
    return [flag for flag, used in (
        ("--desc-act", args.desc_act), ("--gptq-damp", args.gptq_damp != 0.01),
        ("--gptq-block-size", args.gptq_block_size != 128)) if used]


def check_gptq_args(args: argparse.Namespace) -> bool:
    """True when GPTQ is asked for; errors for GPTQ options without it or without data."""
    if args.method != "gptq":
        stray = (["--data"] if args.data is not None else []) + tuned_gptq_flags(args)
        if stray:
            raise ValueError(f"{', '.join(stray)}: only with --method gptq")
        return False
    if not args.data:
        raise ValueError("--method gptq needs --data FILE (calibration text)")
    if getattr(args, "imatrix", None):
        raise ValueError("--method gptq measures its own Hessians; drop --imatrix")
    if args.calib_ctx < 2 or args.calib_windows < 1:
        raise ValueError("--calib-ctx must be at least 2 and --calib-windows at least 1")
    gptq_options(args)
    return True


def calibration_tokens(args: argparse.Namespace, model: Model) -> np.ndarray:
    """int64 [windows, ctx]: ``--data`` cut by the model's own tokenizer (Hugging Face files
    or GGUF metadata) into at most ``--calib-windows`` windows of ``--calib-ctx`` tokens."""
    from qtstudio.jobs.gptq import gptq_tokens

    return gptq_tokens(model, args.data, ctx=args.calib_ctx, windows=args.calib_windows)
