"""qtstudio-cli: everything the window does, headless.

Each subcommand lives in its own module and registers itself through ``COMMANDS``: a module
exposes ``add_parser(subparsers)`` which sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from qtstudio.kernels import NativeError

from . import bench, export, imatrix, info, inspect, optimize, plan, quantize, whatif
from . import eval as eval_cmd
from .job_runner import JobStoppedError, report_stopped

COMMANDS = [info, inspect, plan, quantize, eval_cmd, imatrix, export, optimize, bench, whatif]


class CliError(Exception):
    """A problem to report to the user as one line, with exit status 2."""


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
    parser = build_parser()
    args = parser.parse_args(argv)
    # A second Ctrl-C while cleanup runs should still stop at once.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.func(args) or 0)
    except JobStoppedError as exc:
        return report_stopped(exc)
    except KeyboardInterrupt:
        print("qtstudio-cli: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say. Point stdout at devnull so the
        # interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CliError, NativeError, ValueError, TypeError, OSError) as exc:
        if os.environ.get("QTSTUDIO_DEBUG"):
            raise
        print(f"qtstudio-cli: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
