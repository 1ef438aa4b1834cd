"""What every op family shares: the weight policy type, op naming and value kinds."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

#: decides the stored encoding of a weight: (name, tensor, uses) -> (encoding, requested, reason)
WeightPolicy = Callable[[str, torch.Tensor, frozenset[str]], tuple[str, str | None, str | None]]

IDENTITY_OPS = frozenset({
    "alias", "clone", "contiguous", "detach", "dropout", "lift_fresh_copy", "feature_dropout",
    "alpha_dropout", "_assert_tensor_metadata_passthrough",
})
NO_OUTPUT_OPS = frozenset({
    "_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size",
    "_assert_async", "sym_constrain_range",
})
UNARY = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log",
    "sqrt": "sqrt", "rsqrt": "rsqrt", "neg": "neg", "abs": "abs", "sin": "sin", "cos": "cos",
    "sign": "sign", "floor": "floor", "ceil": "ceil", "reciprocal": "rcp",
    "erf": "tract_core_erf", "logical_not": "not", "bitwise_not": "not",
}
BINARY = {
    "add": "add", "sub": "sub", "mul": "mul", "div": "div", "maximum": "max", "minimum": "min",
    "pow": "pow", "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge",
    "logical_and": "and", "logical_or": "or", "__and__": "and", "__or__": "or",
    "bitwise_and": "and", "bitwise_or": "or",
}
SHAPE_OPS = frozenset({
    "view", "reshape", "_unsafe_view", "unsqueeze", "squeeze", "flatten", "unflatten", "view_as",
    "reshape_as",
})
BATCH_NORM_OPS = frozenset({"batch_norm", "_native_batch_norm_legit_no_training"})
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
LOGICAL = frozenset({"and", "or"})


class UnsupportedOpError(ValueError):
    """The graph uses an operation this exporter cannot express in NNEF."""


def kind_of(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bool:
            return "logical"
        return "scalar" if t.dtype.is_floating_point else "integer"
    if isinstance(t, bool):
        return "logical"
    if isinstance(t, int):
        return "integer"
    return "scalar"


def node_arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument `index` of an aten call, given by position or by its schema name `name`; absent
    or None gives `default` (torch.export passes optional arguments either way)."""
    value = node.args[index] if len(node.args) > index else node.kwargs.get(name)
    return default if value is None else value


def op_name(node: fx.Node) -> str:
    if node.target is operator.getitem:
        return "getitem"
    text = str(node.target)
    parts = text.split(".")
    return parts[1] if parts[0] == "aten" and len(parts) > 1 else text


