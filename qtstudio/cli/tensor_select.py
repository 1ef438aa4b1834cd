"""Command-line pieces shared by bench and whatif: picking tensors by glob (outputs: outputs.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from fnmatch import fnmatchcase

from qtstudio.core.model import Model, TensorInfo


def add_tensors_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--tensors", action="append", default=[], metavar="GLOB",
                   help=f"only tensors whose name or GGUF name matches (repeatable; default "
                        f"{what})")


def select_tensors(model: Model, globs: list[str], keep: Callable[[TensorInfo], bool],
                   what: str) -> list[str]:
    """Names of the tensors ``keep`` accepts that match any of ``globs`` (all when none), in
    file order. A glob that matches no tensor at all, or a selection left empty, is an error."""
    tensors = list(model.tensors)
    for g in globs:
        if not any(fnmatchcase(t.name, g) or (t.gguf_name and fnmatchcase(t.gguf_name, g))
                   for t in tensors):
            raise ValueError(f"--tensors {g}: no tensor of {model.path} matches")
    picked = [t.name for t in tensors if keep(t) and (not globs or any(
        fnmatchcase(t.name, g) or (t.gguf_name and fnmatchcase(t.gguf_name, g)) for g in globs))]
    if not picked:
        where = f" matching {', '.join(globs)}" if globs else ""
        raise ValueError(f"{model.path}: no {what}{where}")
    return picked
