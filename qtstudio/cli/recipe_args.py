"""Command-line pieces shared by plan, quantize, export, eval and imatrix: recipe options, the
GGUF plan they resolve, checks of the shared numeric flags, and number formats."""

from __future__ import annotations

import argparse
import sys

from qtstudio.core.model import Model
from qtstudio.core.plan import TARGET_FORMATS, Plan, resolve_plan
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
    if model is not None:
        warn_unmatched_rules(recipe, model)
    return recipe


def resolve_gguf_plan(args: argparse.Namespace, model: Model, *, has_imatrix: bool,
                      ) -> tuple[Recipe, Plan]:
    """The command line's recipe and its GGUF plan for ``model``; each fallback (a type the
    tensor cannot take) is noted on stderr."""
    recipe = build_recipe(args, model)
    plan = resolve_plan(model, recipe, target_format="gguf", has_imatrix=has_imatrix)
    for e in plan.fallbacks:
        print(f"note: {e.name}: {e.fallback_from} -> {e.encoding} ({e.reason})",
              file=sys.stderr)
    return recipe, plan


def check_threads(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be at least 1")


def add_target_arg(p: argparse.ArgumentParser, *, default: str, help_text: str) -> None:
    """--target: the export format whose fallbacks the plan follows, or ``none``."""
    p.add_argument("--target", default=default, choices=[*TARGET_FORMATS, "none"],
                   help=help_text)


def target_format(args: argparse.Namespace) -> str | None:
    """--target as resolve_plan's ``target_format`` (None for ``none``)."""
    return None if args.target == "none" else args.target


def add_calibration_args(p: argparse.ArgumentParser | argparse._ArgumentGroup, *, data_help: str,
                         prefix: str = "", ctx_help: str = "tokens per calibration window",
                         chunks_help: str = "use at most N calibration windows") -> None:
    """--data / --ctx / --chunks, spelled alike by every command that reads calibration text;
    ``prefix`` says when --ctx and --chunks apply ("with --data: ")."""
    p.add_argument("--data", metavar="FILE", help=data_help)
    p.add_argument("--ctx", type=int, default=512, metavar="N",
                   help=f"{prefix}{ctx_help} (default 512)")
    p.add_argument("--chunks", type=int, metavar="N", help=prefix + chunks_help)


def check_calibration_args(args: argparse.Namespace, unit: str) -> None:
    """--ctx, --chunks and --threads of a command that reads calibration text in ``unit``s
    (windows, chunks) of --ctx tokens."""
    if args.ctx < 2:
        raise ValueError(f"--ctx {args.ctx}: a {unit} needs at least 2 tokens")
    if args.chunks is not None and args.chunks < 1:
        raise ValueError(f"--chunks {args.chunks}: must be at least 1")
    check_threads(args)


def warn_unmatched_rules(recipe: Recipe, model: Model) -> list[str]:
    """A warning on stderr for every rule that matches no tensor (a typo, or a GGUF-name rule
    on a model that has no GGUF names): such a rule silently changes nothing."""
    lines = []
    tensors = list(model.tensors)
    for rule in recipe.rules:
        if any(rule.matches(t) for t in tensors):
            continue
        what = "GGUF names" if rule.target == "gguf_name" else "tensor names"
        sample = next((t.gguf_name if rule.target == "gguf_name" else t.name
                       for t in tensors if t.quantizable), None) or (
            tensors[0].name if tensors else None)
        example = f", e.g. {sample}" if sample else ""
        lines.append(f"warning: rule {rule.pattern}={rule.encoding} matches no tensor of "
                     f"{model.path} (rules match its {what}{example})")
    for line in lines:
        print(line, file=sys.stderr)
    return lines
