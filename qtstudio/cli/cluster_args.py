"""`--ray ADDRESS`: the commands whose per-tensor work can run as tasks on a Ray cluster."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from qtstudio.jobs.executor import Executor, check_ray_available


def add_ray_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the per-tensor work as tasks on a Ray cluster: 'auto' (the "
                        "cluster started on this machine), HOST:PORT of its head, or "
                        "ray://HOST:10001; every worker must read MODEL at the same path "
                        "(docs/ray.md). Needs pip install 'qtstudio[ray]'")


def check_ray_arg(args: argparse.Namespace) -> None:
    """Fail at once, before any work, when --ray is given but Ray is not installed."""
    if getattr(args, "ray", None):
        check_ray_available()


@contextlib.contextmanager
def cluster_executor(args: argparse.Namespace) -> Iterator[Executor | None]:
    """The Ray executor for ``--ray`` (None without it), connected for the block."""
    if not getattr(args, "ray", None):
        yield None
        return
    check_ray_available()
    from qtstudio.jobs.executor_ray import RayExecutor

    ex = RayExecutor(args.ray, threads=getattr(args, "threads", None))
    if not getattr(args, "quiet", False):
        print(f"note: running on the {ex.describe()}", file=sys.stderr)
    try:
        yield ex
    finally:
        ex.close()
