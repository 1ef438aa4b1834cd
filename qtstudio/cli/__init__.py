"""qtstudio-cli: everything the window does, headless.

Each subcommand lives in its own module and registers itself through ``COMMANDS``: a module
exposes ``add_parser(subparsers)`` which sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from qtstudio.core.demo import resolve_model_arg
from qtstudio.jobs.executor import ClusterError
from qtstudio.kernels import NativeError

from . import bench, compare, export, imatrix, info, inspect, optimize, plan, quantize, whatif
from . import eval as eval_cmd
from .errors import CliError
from .job_runner import (
    JobStoppedError,
    StopSignal,
    exit_status,
    report_stopped,
    stop_signals_raise,
)

__all__ = ["COMMANDS", "CliError", "build_parser", "main"]

COMMANDS = [info, inspect, plan, quantize, eval_cmd, imatrix, export, optimize, compare, bench,
            whatif]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qtstudio-cli",
        description="Mixed-precision quantization studio, headless.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in COMMANDS:
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Ctrl-C, SIGTERM and SIGHUP unwind through the same cleanups (no .part left behind);
        # inside a job the first one asks it to stop at its next safe point.
        with stop_signals_raise():
            args = build_parser().parse_args(argv)
            # One resolver for every command that takes a model: `demo` is the embedded model.
            if isinstance(getattr(args, "model", None), str):
                args.model = str(resolve_model_arg(args.model))
            return int(args.func(args) or 0)
    except JobStoppedError as exc:
        return report_stopped(exc)
    except StopSignal as exc:
        print(f"qtstudio-cli: stopped by {exc}", file=sys.stderr)
        return exit_status(exc.signum)
    except KeyboardInterrupt:
        print("qtstudio-cli: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say. Point stdout at devnull so the
        # interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CliError, ClusterError, NativeError, ValueError, TypeError, OSError) as exc:
        if os.environ.get("QTSTUDIO_DEBUG"):
            raise
        print(f"qtstudio-cli: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
