"""The quantization method of a ``--recipe`` on quantize and export: a recipe written by
``optimize --method gptq`` carries GPTQ's parameters and calibration file, and the command
reproduces its bytes without repeating them. Flags given on the command line win.

The GPTQ flags (qtstudio.cli.gptq_args) are parsed with None as their default here, so a flag the
user did not give can be told from one given with the default value; after
:func:`apply_recipe_method` every one of them holds a real value again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qtstudio.core.recipe import QuantMethod, Recipe

#: argparse destination -> (the QuantMethod field it mirrors, the value without a recipe)
GPTQ_FLAGS = {"method": ("name", "plain"), "gptq_damp": ("damp_percent", 0.01),
              "gptq_block_size": ("block_size", 128), "desc_act": ("desc_act", False),
              "calib_ctx": ("ctx", 512), "calib_windows": ("windows", 64)}


def defer_gptq_defaults(p: argparse.ArgumentParser) -> None:
    """Make the GPTQ flags read None when absent (call after ``add_gptq_args``)."""
    p.set_defaults(**dict.fromkeys(GPTQ_FLAGS))


def apply_recipe_method(args: argparse.Namespace) -> QuantMethod:
    """Fill the GPTQ flags left unset from ``--recipe``'s method, else their defaults; returns
    the recipe's method. The recipe's GPTQ parameters and data apply only while the method is
    GPTQ (``--method plain`` drops them)."""
    recipe_file = getattr(args, "recipe", None)
    method = Recipe.load(recipe_file).method if recipe_file else QuantMethod()
    if args.method is None:
        args.method = method.name
    use = args.method == "gptq" and not method.is_plain
    for dest, (fld, default) in GPTQ_FLAGS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, getattr(method, fld) if use else default)
    if use and args.data is None and method.data is not None:
        data = Path(method.data)
        if not data.is_absolute():  # a hand-written recipe: beside the recipe file
            data = Path(recipe_file).parent / data
        if not data.is_file():
            raise ValueError(f"{recipe_file}: its GPTQ calibration file {data} does not exist; "
                             "pass --data FILE (the same text gives the same bytes)")
        args.data = str(data)
    return method
