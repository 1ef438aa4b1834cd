"""Capture a torch module as an ATen graph and evaluate it once on the example inputs.

``torch.export`` gives a flat graph whose placeholders are the parameters, buffers and user
inputs. Running it once records a concrete value for every node; a node that does not depend on
the user inputs' *data* is a constant the NNEF writer can store instead of recomputing (rotary
tables, causal masks, position ids). Shapes are fixed to the example inputs' shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

# Ops whose result depends only on an input's shape or dtype, never on its values.
SHAPE_ONLY_OPS = frozenset({
    "aten.new_ones.default", "aten.new_zeros.default", "aten.new_full.default",
    "aten.new_empty.default", "aten.ones_like.default", "aten.zeros_like.default",
    "aten.full_like.default", "aten.empty_like.default", "aten.sym_size.int",
    "aten.sym_numel.default",
})


class TraceError(ValueError):
    """The module could not be captured as a graph."""


@dataclass
class TracedGraph:
    graph: fx.Graph
    #: placeholder name -> qualified parameter/buffer name in the module's state dict
    weight_names: dict[str, str]
    #: placeholder names of the user inputs, in call order
    input_names: list[str]
    #: concrete value of every node on the example inputs
    values: dict[str, Any]
    #: nodes whose value depends on the user inputs' data
    dynamic: set[str] = field(default_factory=set)
    output_nodes: list[fx.Node] = field(default_factory=list)

    def is_dynamic(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and arg.name in self.dynamic


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, values: dict[str, Any]) -> None:
        super().__init__(gm)
        self._values = values

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self._values[n.name] = out
        return out


def trace_module(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> TracedGraph:
    """Export ``module`` at the example inputs' shapes and record every intermediate value."""
    if not isinstance(module, torch.nn.Module):
        raise TraceError(f"expected a torch.nn.Module, got {type(module).__name__}")
    args = tuple(example_inputs)
    for i, a in enumerate(args):
        if not isinstance(a, torch.Tensor):
            raise TraceError(f"example input {i} is a {type(a).__name__}; NNEF inputs are tensors")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ep = torch.export.export(module, args, strict=False)
    except Exception as exc:  # torch raises many kinds; the user needs the gist
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(f"torch.export could not capture {type(module).__name__}: {first}") \
            from exc
    finally:
        module.train(was_training)

    sig = ep.graph_signature
    state = ep.state_dict
    constants = ep.constants
    weight_names: dict[str, str] = {}
    input_names: list[str] = []
    feed: list[Any] = []
    user_args = iter(args)
    for spec in sig.input_specs:
        kind = spec.kind.name
        name = spec.arg.name
        if kind == "USER_INPUT":
            input_names.append(name)
            feed.append(next(user_args))
        elif kind in ("PARAMETER", "BUFFER"):
            weight_names[name] = spec.target
            value = state[spec.target] if spec.target in state else constants[spec.target]
            feed.append(value.detach())
        elif kind == "CONSTANT_TENSOR":
            weight_names[name] = spec.target
            feed.append(constants[spec.target])
        else:
            raise TraceError(f"{type(module).__name__}: unsupported graph input kind {kind}")

    values: dict[str, Any] = {}
    with torch.no_grad():
        _Recorder(ep.graph_module, values).run(*feed)

    dynamic: set[str] = set(input_names)
    outputs: list[fx.Node] = []
    for node in ep.graph.nodes:
        if node.op == "call_function" and str(node.target) not in SHAPE_ONLY_OPS:
            if any(a.name in dynamic for a in node.all_input_nodes):
                dynamic.add(node.name)
        elif node.op == "output":
            outputs = [a for a in torch.utils._pytree.tree_leaves(node.args[0])
                       if isinstance(a, fx.Node)]
    return TracedGraph(ep.graph, weight_names, input_names, values, dynamic, outputs)
