"""Command-line pieces shared by plan, quantize and eval: recipe options and number formats."""

from __future__ import annotations

import argparse

from qtstudio.core.model import Model
from qtstudio.core.recipe import Recipe, Rule


def add_recipe_args(p: argparse.ArgumentParser, *, preset_help: str | None = None) -> None:
    p.add_argument("--preset", help=preset_help or "llama-quantize mixture, e.g. Q4_K_M")
    p.add_argument("--recipe", metavar="FILE", help="recipe JSON (or a plan saved with --out)")
    p.add_argument("--rule", action="append", default=[], metavar="REGEX=TYPE",
                   help="per-tensor type by regex, first match wins (repeatable); matched "
                        "against GGUF names when the architecture is known, else tensor names")
    p.add_argument("--float-type", metavar="TYPE",
                   help="storage for tensors that stay float (F32, F16, BF16; default F32)")
    p.add_argument("--output-tensor-type", metavar="TYPE", help="type for output.weight")
    p.add_argument("--token-embedding-type", metavar="TYPE", help="type for token_embd.weight")
    p.add_argument("--pure", action="store_true",
                   help="no mixture: every quantizable tensor gets the preset's type")


def build_recipe(args: argparse.Namespace, model: Model | None) -> Recipe:
    """The recipe file (if any) with the command line's preset, rules and options on top."""
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    if args.preset:
        recipe.preset = args.preset
    if args.rule:
        target = "gguf_name" if model is not None and any(
            t.gguf_name for t in model.tensors) else "name"
        # Command-line rules come first: they are the most specific wish.
        recipe.rules = [Rule.parse(r, target=target) for r in args.rule] + recipe.rules
    if args.float_type:
        recipe.float_encoding = args.float_type
    if args.output_tensor_type:
        recipe.output_tensor_type = args.output_tensor_type
    if args.token_embedding_type:
        recipe.token_embedding_type = args.token_embedding_type
    if args.pure:
        recipe.pure = True
    recipe.validate()
    return recipe


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def human_count(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)
