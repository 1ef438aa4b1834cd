"""Translate a traced ATen graph into NNEF operations that tract understands.

Nodes that do not depend on the inputs' data were already evaluated by the trace; they enter the
graph as stored constants (or literals when they hold one number). Everything else maps onto
NNEF primitives plus a few tract_core extensions (gather, erf, cast). NNEF broadcasting aligns
shapes from the left, so every operand is first brought to the output's rank.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import fx

from .builder import (
    USE_CONV,
    USE_CONV_SCALED,
    USE_GATHER,
    USE_MATMUL,
    USE_MATMUL_T,
    USE_OTHER,
    NnefBuilder,
    Value,
    Variable,
    float_literal,
    ints,
)
from .ops.activations import ActivationsOps
from .ops.attention import AttentionOps
from .ops.common import (
    BATCH_NORM_OPS,
    BINARY,
    COMPARISONS,
    IDENTITY_OPS,
    LOGICAL,
    NO_OUTPUT_OPS,
    SHAPE_OPS,
    UNARY,
    UnsupportedOpError,
    WeightPolicy,
    kind_of,
    node_arg,
    op_name,
)
from .ops.layout import LayoutOps
from .ops.linalg import LinalgOps, plain_addmm
from .ops.norms import NormsOps
from .ops.pooling import PoolingOps
from .ops.reductions import ReductionsOps
from .trace import TracedGraph

__all__ = ["Converter", "UnsupportedOpError", "WeightPolicy", "convert"]


class Converter(ActivationsOps, ReductionsOps, NormsOps, LinalgOps, LayoutOps, AttentionOps,
                PoolingOps):
    """Walks the traced graph in order; each ``_op_<name>`` lives in its family's mixin."""

    def __init__(self, traced: TracedGraph, policy: WeightPolicy) -> None:
        self.t = traced
        self.policy = policy
        self.b = NnefBuilder()
        self.env: dict[str, Any] = {}
        self._weight_vars: dict[str, Variable] = {}
        self._float_ident: dict[str, str] = {}
        #: stored constants by content, so a table every layer uses is written once
        self._consts: dict[tuple[str, tuple[int, ...], str], tuple[torch.Tensor, Value]] = {}
        self._uses = self._collect_weight_uses()

    # ----------------------------------------------------------------------------- set-up
    def _collect_weight_uses(self) -> dict[str, set[str]]:
        uses: dict[str, set[str]] = {}
        for node in self.t.graph.nodes:
            if node.op != "call_function" or node.name not in self.t.dynamic:
                continue
            name = op_name(node)
            for i, a in enumerate(node.args):
                items = a if isinstance(a, list | tuple) else [a]
                for item in items:
                    if isinstance(item, fx.Node) and item.name in self.t.weight_names:
                        use = USE_OTHER
                        if name == "linear" and i == 1:
                            use = USE_MATMUL
                        elif name == "addmm" and i == 2 and plain_addmm(node):
                            use = USE_MATMUL_T
                        elif name in ("conv1d", "conv2d", "convolution") and i == 1:
                            use = USE_CONV
                            # tract folds a following per-channel scale into the kernel,
                            # which it cannot do for block-quantized filters
                            if any(op_name(u) in BATCH_NORM_OPS for u in node.users):
                                use = USE_CONV_SCALED
                        elif name == "embedding" and i == 0:
                            use = USE_GATHER
                        uses.setdefault(item.name, set()).add(use)
        return uses

    def run(self) -> tuple[NnefBuilder, list[Value]]:
        for node in self.t.graph.nodes:
            if node.op == "placeholder":
                if node.name in self.t.input_names:
                    val = self.t.values[node.name]
                    self.env[node.name] = self.b.external(tuple(val.shape), kind_of(val))
                else:
                    self.env[node.name] = self.t.values[node.name]
            elif node.op == "get_attr":
                self.env[node.name] = self.t.values.get(node.name)
            elif node.op == "call_function":
                if node.name in self.t.dynamic:
                    self.env[node.name] = self._convert(node)
                else:
                    self.env[node.name] = self.t.values[node.name]
            elif node.op == "output":
                break
            else:
                raise UnsupportedOpError(f"graph node kind {node.op!r} ({node.name}) is not "
                                         "supported")
        outputs = []
        for out in self.t.output_nodes:
            v = self.env[out.name]
            if not isinstance(v, Value):
                v = self._const_var(v, None)
            outputs.append(v)
        if not outputs:
            raise UnsupportedOpError("the module has no tensor outputs")
        return self.b, outputs

    # ----------------------------------------------------------------------------- operands
    def _val(self, a: Any) -> Any:
        if isinstance(a, fx.Node):
            return self.env[a.name]
        if isinstance(a, list | tuple):
            return type(a)(self._val(x) for x in a)
        return a

    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        v = self.t.values[node.name]
        if isinstance(v, torch.Tensor):
            return tuple(int(s) for s in v.shape)
        raise UnsupportedOpError(f"{node.name}: expected a tensor result, got {type(v).__name__}")

    def _is_weight(self, a: Any) -> bool:
        return isinstance(a, fx.Node) and a.name in self.t.weight_names

    def _weight(self, a: fx.Node, use: str, store_shape: tuple[int, ...] | None = None) -> str:
        """Identifier of a parameter's variable as the given consumer needs it."""
        var = self._weight_vars.get(a.name)
        if var is None and self.t.values[a.name].dtype == torch.bool:
            # boolean buffers (masks) are stored as 0/1 floats and compared back
            if a.name not in self._float_ident:
                c = self._const_var(self.t.values[a.name], None, self.t.weight_names[a.name])
                self._float_ident[a.name] = self.b.op(f"ne({c.ident}, 0.0)", c.shape,
                                                      "logical").ident
            return self._float_ident[a.name]
        if var is None:
            tensor = self.t.values[a.name].detach()
            qualified = self.t.weight_names[a.name]
            uses = frozenset(self._uses.get(a.name, {USE_OTHER}))
            transposed = uses == {USE_MATMUL_T}
            if transposed:
                # [in, out] weights of addmm are stored [out, in] so that Q4_0 blocks run
                # along the reduction axis, as tract's block matmul needs
                tensor, uses = tensor.t(), frozenset({USE_MATMUL})
            shape = store_shape or tuple(int(s) for s in tensor.shape)
            enc, requested, reason = self.policy(qualified, tensor, uses)
            var = Variable(self.b.fresh("v"), self.b.unique_label(qualified),
                           tensor.contiguous().reshape(shape), shape, enc, source=qualified,
                           kind=kind_of(tensor), requested=requested, fallback_reason=reason,
                           transposed=transposed,
                           source_shape=tuple(int(d) for d in self.t.values[a.name].shape))
            self._declare(var)
            self._weight_vars[a.name] = var
        if use == USE_CONV_SCALED:
            use = USE_CONV
        if var.transposed and use != USE_MATMUL_T:
            raise UnsupportedOpError(f"{var.source}: stored transposed but used elsewhere")
        if use == USE_MATMUL_T:
            use = USE_MATMUL
        if use in (USE_MATMUL, USE_CONV, USE_GATHER) and var.encoding in ("Q4_0", "F32"):
            return var.ident
        if use == USE_MATMUL and var.encoding == "F16":
            return var.ident
        return self._float(var)

    def _declare(self, var: Variable) -> None:
        self.b.declare_variable(var)
        if not var.encoding.startswith("INT8_"):
            return
        self.b.extensions.add("tract_registry tract_core")
        if var.encoding.startswith("INT8_PC"):
            side_shape = (*tuple(var.shape[:-1]), 1)
            sides = [("scale", "scale_ident")]
            if var.encoding.endswith("ASYM"):
                sides.append(("zero_point", "zero_ident"))
            for suffix, attr in sides:
                side = Variable(self.b.fresh("v"), self.b.unique_label(f"{var.label}.{suffix}"),
                                torch.empty(0), side_shape, "F32", side_of=var.ident)
                setattr(var, attr, side.ident)
                self.b.declare_variable(side)

    def _float(self, var: Variable) -> str:
        """An f32 view of a stored variable (dequantizing 8-bit and widening f16)."""
        if var.encoding in ("F32", "Q4_0") or var.kind != "scalar":
            return var.ident
        if var.ident in self._float_ident:
            return self._float_ident[var.ident]
        self.b.extensions.add("tract_registry tract_core")
        ident = self.b.op(f'tract_core_cast({var.ident}, to = "f32")', var.shape).ident
        if var.zero_ident:
            ident = self.b.op(f"sub({ident}, {var.zero_ident})", var.shape).ident
        if var.scale_ident:
            ident = self.b.op(f"mul({ident}, {var.scale_ident})", var.shape).ident
        self._float_ident[var.ident] = ident
        return ident

    def _const_var(self, value: Any, rank: int | None, label: str = "const") -> Value:
        # the same folded tensor (a rotary table, a mask) feeds every layer: store it once
        t = self._const_tensor(value, rank)
        key = (str(t.dtype), tuple(t.shape), hashlib.sha1(t.numpy().tobytes()).hexdigest())
        hit = self._consts.get(key)
        if hit is not None and torch.equal(hit[0], t):
            return hit[1]
        shape = tuple(int(s) for s in t.shape)
        kind = kind_of(t)
        var = Variable(self.b.fresh("c"), self.b.unique_label(label), t, shape,
                       "F32" if kind == "scalar" else "I64", kind=kind)
        self.b.declare_variable(var)
        v = Value(var.ident, shape, kind)
        self._consts[key] = (t, v)
        return v

    @staticmethod
    def _const_tensor(value: Any, rank: int | None) -> torch.Tensor:
        t = torch.as_tensor(value).detach()
        if rank is not None and t.dim() < rank:
            t = t.reshape((1,) * (rank - t.dim()) + tuple(t.shape))
        kind = kind_of(t)
        if kind == "logical":
            # stored as float; comparisons turn it back into a mask where needed
            t = t.to(torch.float32)
            kind = "scalar"
        if kind == "scalar":
            t = t.to(torch.float32).clamp(min=float(np.finfo(np.float32).min),
                                          max=float(np.finfo(np.float32).max))
        else:
            t = t.to(torch.int64)
        return t.contiguous()

    def _operand(self, a: Any, rank: int, kind: str = "scalar") -> str:
        """An expression for ``a`` usable in an elementwise op of the given output rank."""
        v = self._val(a)
        if isinstance(v, Value):
            return self._align(v, rank).ident
        if self._is_weight(a):
            ident = self._weight(a, USE_OTHER)
            tensor = self.t.values[a.name]
            if tensor.dim() < rank:
                target = (1,) * (rank - tensor.dim()) + tuple(tensor.shape)
                return self.b.op(f"reshape({ident}, shape = {ints(target)})", target).ident
            return ident
        if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dim() <= rank:
            v = v.reshape(()).item()
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            if kind == "integer":
                return str(int(v))
            return float_literal(v)
        if isinstance(v, torch.Tensor):
            return self._const_var(v, rank, _const_label(a)).ident
        raise UnsupportedOpError(f"cannot use a {type(v).__name__} as a tensor operand")

    def _align(self, v: Value, rank: int) -> Value:
        if v.rank >= rank:
            return v
        shape = (1,) * (rank - v.rank) + v.shape
        return self.b.op(f"reshape({v.ident}, shape = {ints(shape)})", shape, v.kind)

    def _tensor(self, a: Any) -> Value:
        """A graph value for ``a`` (constants are stored)."""
        v = self._val(a)
        if isinstance(v, Value):
            return v
        if self._is_weight(a):
            tensor = self.t.values[a.name]
            return Value(self._weight(a, USE_OTHER), tuple(tensor.shape), kind_of(tensor))
        return self._const_var(v, None, _const_label(a))

    # ----------------------------------------------------------------------------- dispatch
    def _convert(self, node: fx.Node) -> Any:
        name = op_name(node)
        if name in NO_OUTPUT_OPS:
            return None
        if name == "getitem":
            seq = self._val(node.args[0])
            return seq[node.args[1]]
        handler = getattr(self, f"_op_{name}", None)
        if name in IDENTITY_OPS:
            return self._val(node.args[0])
        if handler is not None:
            return handler(node)
        if name in UNARY:
            x = self._tensor(node.args[0])
            if UNARY[name].startswith("tract_core"):
                self.b.extensions.add("tract_registry tract_core")
            return self.b.op(f"{UNARY[name]}({x.ident})", self._shape(node),
                             "logical" if UNARY[name] == "not" else x.kind)
        if name in BINARY or name == "rsub":
            return self._binary(node, name)
        if name in SHAPE_OPS:
            x = self._tensor(node.args[0])
            out = self._shape(node)
            return self.b.op(f"reshape({x.ident}, shape = {ints(out)})", out, x.kind)
        raise UnsupportedOpError(f"operation {node.target} ({node.name}) has no NNEF mapping")

    def _binary(self, node: fx.Node, name: str) -> Value:
        out = self._shape(node)
        rank = len(out)
        a, b = node.args[0], node.args[1]
        if name == "rsub":
            a, b = b, a
        op = BINARY.get(name, "sub")
        out_kind = kind_of(self.t.values[node.name])
        values = [self._val(a), self._val(b)]
        kinds = [v.kind for v in values if isinstance(v, Value)]
        if op in COMPARISONS or op in LOGICAL:
            # compare in the wider of the operands' kinds (int vs float compares as float)
            in_kind = "scalar" if "scalar" in kinds else (kinds[0] if kinds else "scalar")
        else:
            in_kind = out_kind
        if name == "div" and node.kwargs.get("rounding_mode") is not None:
            raise UnsupportedOpError(f"{node.name}: div with rounding_mode is not supported")
        exprs = []
        for arg, v in zip((a, b), values, strict=True):
            if isinstance(v, Value) and v.kind != in_kind and in_kind != "logical":
                v = self._convert_kind(v, in_kind)
                exprs.append(self._align(v, rank).ident)
            else:
                exprs.append(self._operand(arg, rank, in_kind))
        ea, eb = exprs
        alpha = node_arg(node, 2, "alpha")
        if alpha is not None and alpha != 1 and name in ("add", "sub", "rsub"):
            eb = self.b.op(f"mul({eb}, {float_literal(alpha)})", out).ident
        vb = values[1]
        if op == "pow" and not isinstance(vb, Value) and isinstance(vb, int | float):
            if float(vb) == 2.0:
                return self.b.op(f"sqr({ea})", out)
            if float(vb) == 0.5:
                return self.b.op(f"sqrt({ea})", out)
        kind = "logical" if op in COMPARISONS or op in LOGICAL else in_kind
        return self.b.op(f"{op}({ea}, {eb})", out, kind)

    def _convert_kind(self, x: Value, kind: str) -> Value:
        if kind == "scalar" and x.kind == "logical":
            return self.b.op(f"select({x.ident}, 1.0, 0.0)", x.shape)
        if kind == "logical":
            zero = "0.0" if x.kind == "scalar" else "0"
            return self.b.op(f"ne({x.ident}, {zero})", x.shape, "logical")
        self.b.extensions.add("tract_registry tract_core")
        to = "f32" if kind == "scalar" else "i64"
        return self.b.op(f'tract_core_cast({x.ident}, to = "{to}")', x.shape, kind)

    # ----------------------------------------------------------------------------- casts
    def _cast(self, node: fx.Node, x: Value) -> Value:
        kind = kind_of(self.t.values[node.name])
        return x if kind == x.kind else self._convert_kind(x, kind)

    def _op_to(self, node: fx.Node) -> Value:
        return self._cast(node, self._tensor(node.args[0]))

    _op__to_copy = _op_to
    _op_type_as = _op_to



def _const_label(a: Any) -> str:
    return f"const.{a.name}" if isinstance(a, fx.Node) else "const"


def convert(traced: TracedGraph, policy: WeightPolicy) -> tuple[NnefBuilder, list[Value]]:
    return Converter(traced, policy).run()
