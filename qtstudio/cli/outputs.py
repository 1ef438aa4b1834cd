"""Output paths of the writing commands: checked against every input before any work starts.

``plan --out``, ``quantize --report``, ``optimize --out``, ``bench/whatif --json`` and ``export
-o`` all refuse a path that is one of the files the command reads (the model, its shards,
config and tokenizer files, the recipe, the importance matrix; through a symlink or a hard link
too) and a path that is not a regular file (a device such as /dev/full, a FIFO, a folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qtstudio.formats.atomic import ExportError, check_target, model_files, write_bytes_atomic


class OutputError(ValueError):
    """An output path that must not be written; reported as one line, exit status 2."""


def command_inputs(args: argparse.Namespace) -> list[Path]:
    """The files a command reads, from its parsed arguments."""
    files: list[Path] = []
    model = getattr(args, "model", None)
    if model is not None:
        files += model_files(model)
    for attr in ("recipe", "imatrix"):
        value = getattr(args, attr, None)
        if value:
            files.append(Path(value).expanduser())
    return files


def check_output(path: str | Path | None, args: argparse.Namespace, *,
                 allow_dir: bool = False) -> None:
    """Fail before any work when ``path`` may not be written (see the module docstring)."""
    if path is None:
        return
    try:
        check_target(path, command_inputs(args), allow_dir=allow_dir)
    except ExportError as exc:
        raise OutputError(str(exc)) from None


def write_text(path: str | Path, text: str, args: argparse.Namespace) -> None:
    """Replace ``path`` whole with ``text``; never onto an input, never half-written."""
    try:
        write_bytes_atomic(path, text.encode("utf-8"), inputs=command_inputs(args))
    except ExportError as exc:
        raise OutputError(str(exc)) from None


def write_json(path: str | Path, doc: dict[str, Any], args: argparse.Namespace) -> None:
    write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n", args)
