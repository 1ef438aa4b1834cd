"""`qtstudio-cli inspect MODEL`: the tensors of a checkpoint, as a table, a tree or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from qtstudio.core.human_numbers import human_bytes, human_count
from qtstudio.core.model import Model
from qtstudio.core.tree import TreeNode
from qtstudio.formats import open_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="list a model's tensors with sizes and roles")
    p.add_argument("model", help="safetensors file / index, Hugging Face folder, .bin/.pt, .gguf")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tree", action="store_true", help="show the layer tree instead of a table")
    p.add_argument("--depth", type=int, default=3, help="tree depth to show (default 3)")
    p.set_defaults(func=run)


def collect(model: Model) -> dict[str, Any]:
    return {
        "path": str(model.path),
        "format": model.format,
        "architecture": model.architecture,
        "n_blocks": model.n_blocks,
        "tensors": [
            {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "params": t.params,
             "nbytes": t.nbytes, "quantizable": t.quantizable, "gguf_name": t.gguf_name,
             "role": t.role, "block_index": t.block_index, "unreadable": t.unreadable}
            for t in model.tensors
        ],
        "total_params": model.total_params,
        "total_bytes": model.total_bytes,
    }


def _print_tree(node: TreeNode, depth: int, indent: int = 0) -> None:
    for c in node.children:
        label = c.name if c.tensor is None else (
            f"{c.name}  {c.tensor.dtype} {list(c.tensor.shape)}")
        print(f"{'  ' * indent}{label:<{max(1, 56 - 2 * indent)}} {human_count(c.params):>9} "
              f"{human_bytes(c.nbytes):>11}")
        if indent + 1 < depth:
            _print_tree(c, depth, indent + 1)


def run(args: argparse.Namespace) -> int:
    with open_model(args.model) as model:
        if args.json:
            print(json.dumps(collect(model), indent=2))
            return 0
        print(f"{model.path}  format={model.format}  architecture={model.architecture or '?'}"
              f"  blocks={model.n_blocks if model.n_blocks is not None else '?'}")
        if args.tree:
            _print_tree(model.tree, max(1, args.depth))
        else:
            w = max([len(t.name) for t in model.tensors] + [4])
            print(f"{'name':<{w}}  {'shape':<18} {'dtype':<6} {'params':>9} {'bytes':>11} "
                  f"{'role':<9} q  gguf")
            for t in model.tensors:
                print(f"{t.name:<{w}}  {list(t.shape)!s:<18} {t.dtype:<6} "
                      f"{human_count(t.params):>9} {human_bytes(t.nbytes):>11} {t.role:<9} "
                      f"{'y' if t.quantizable else '-'}  {t.gguf_name or ''}")
        print(f"total: {len(model.tensors)} tensors, {model.total_params} parameters "
              f"({human_count(model.total_params)}), {model.total_bytes} bytes "
              f"({human_bytes(model.total_bytes)})")
        for t in model.unreadable:
            print(f"unreadable: {t.name}: {t.unreadable}")
    return 0
