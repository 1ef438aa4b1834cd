"""Translate a traced ATen graph into NNEF operations that tract understands.

Nodes that do not depend on the inputs' data were already evaluated by the trace; they enter the
graph as stored constants (or literals when they hold one number). Everything else maps onto
NNEF primitives plus a few tract_core extensions (gather, erf, cast). NNEF broadcasting aligns
shapes from the left, so every operand is first brought to the output's rank.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
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
from .trace import TracedGraph

#: decides the stored encoding of a weight: (name, tensor, uses) -> (encoding, requested, reason)
WeightPolicy = Callable[[str, torch.Tensor, frozenset[str]], tuple[str, str | None, str | None]]

_IDENTITY_OPS = frozenset({
    "alias", "clone", "contiguous", "detach", "dropout", "lift_fresh_copy", "feature_dropout",
    "alpha_dropout", "_assert_tensor_metadata_passthrough",
})
_NO_OUTPUT_OPS = frozenset({
    "_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size",
    "_assert_async", "sym_constrain_range",
})
_UNARY = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log",
    "sqrt": "sqrt", "rsqrt": "rsqrt", "neg": "neg", "abs": "abs", "sin": "sin", "cos": "cos",
    "sign": "sign", "floor": "floor", "ceil": "ceil", "reciprocal": "rcp",
    "erf": "tract_core_erf", "logical_not": "not", "bitwise_not": "not",
}
_BINARY = {
    "add": "add", "sub": "sub", "mul": "mul", "div": "div", "maximum": "max", "minimum": "min",
    "pow": "pow", "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge",
    "logical_and": "and", "logical_or": "or", "__and__": "and", "__or__": "or",
    "bitwise_and": "and", "bitwise_or": "or",
}
_SHAPE_OPS = frozenset({
    "view", "reshape", "_unsafe_view", "unsqueeze", "squeeze", "flatten", "unflatten", "view_as",
    "reshape_as",
})
_BATCH_NORM_OPS = frozenset({"batch_norm", "_native_batch_norm_legit_no_training"})
_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
_LOGICAL = frozenset({"and", "or"})


class UnsupportedOpError(ValueError):
    """The graph uses an operation this exporter cannot express in NNEF."""


def _kind_of(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bool:
            return "logical"
        return "scalar" if t.dtype.is_floating_point else "integer"
    if isinstance(t, bool):
        return "logical"
    if isinstance(t, int):
        return "integer"
    return "scalar"


def _op_name(node: fx.Node) -> str:
    if node.target is operator.getitem:
        return "getitem"
    text = str(node.target)
    parts = text.split(".")
    return parts[1] if parts[0] == "aten" and len(parts) > 1 else text


class Converter:
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
            name = _op_name(node)
            for i, a in enumerate(node.args):
                items = a if isinstance(a, list | tuple) else [a]
                for item in items:
                    if isinstance(item, fx.Node) and item.name in self.t.weight_names:
                        use = USE_OTHER
                        if name == "linear" and i == 1:
                            use = USE_MATMUL
                        elif name == "addmm" and i == 2 and _plain_addmm(node):
                            use = USE_MATMUL_T
                        elif name in ("conv1d", "conv2d", "convolution") and i == 1:
                            use = USE_CONV
                            # tract folds a following per-channel scale into the kernel,
                            # which it cannot do for block-quantized filters
                            if any(_op_name(u) in _BATCH_NORM_OPS for u in node.users):
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
                    self.env[node.name] = self.b.external(tuple(val.shape), _kind_of(val))
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
                           kind=_kind_of(tensor), requested=requested, fallback_reason=reason,
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
        kind = _kind_of(t)
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
        kind = _kind_of(t)
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
            return Value(self._weight(a, USE_OTHER), tuple(tensor.shape), _kind_of(tensor))
        return self._const_var(v, None, _const_label(a))

    # ----------------------------------------------------------------------------- dispatch
    def _convert(self, node: fx.Node) -> Any:
        name = _op_name(node)
        if name in _NO_OUTPUT_OPS:
            return None
        if name == "getitem":
            seq = self._val(node.args[0])
            return seq[node.args[1]]
        handler = getattr(self, f"_op_{name}", None)
        if name in _IDENTITY_OPS:
            return self._val(node.args[0])
        if handler is not None:
            return handler(node)
        if name in _UNARY:
            x = self._tensor(node.args[0])
            if _UNARY[name].startswith("tract_core"):
                self.b.extensions.add("tract_registry tract_core")
            return self.b.op(f"{_UNARY[name]}({x.ident})", self._shape(node),
                             "logical" if _UNARY[name] == "not" else x.kind)
        if name in _BINARY or name == "rsub":
            return self._binary(node, name)
        if name in _SHAPE_OPS:
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
        op = _BINARY.get(name, "sub")
        out_kind = _kind_of(self.t.values[node.name])
        values = [self._val(a), self._val(b)]
        kinds = [v.kind for v in values if isinstance(v, Value)]
        if op in _COMPARISONS or op in _LOGICAL:
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
        alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else None)
        if alpha is not None and alpha != 1 and name in ("add", "sub", "rsub"):
            eb = self.b.op(f"mul({eb}, {float_literal(alpha)})", out).ident
        vb = values[1]
        if op == "pow" and not isinstance(vb, Value) and isinstance(vb, int | float):
            if float(vb) == 2.0:
                return self.b.op(f"sqr({ea})", out)
            if float(vb) == 0.5:
                return self.b.op(f"sqrt({ea})", out)
        kind = "logical" if op in _COMPARISONS or op in _LOGICAL else in_kind
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
        kind = _kind_of(self.t.values[node.name])
        return x if kind == x.kind else self._convert_kind(x, kind)

    def _op_to(self, node: fx.Node) -> Value:
        return self._cast(node, self._tensor(node.args[0]))

    _op__to_copy = _op_to
    _op_type_as = _op_to

    # ----------------------------------------------------------------------------- activations
    def _op_gelu(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        approx = node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none")
        s = x.shape
        if approx == "tanh":
            cube = self.b.op(f"mul({x.ident}, mul({x.ident}, {x.ident}))", s)
            inner = self.b.op(f"mul(add({x.ident}, mul({cube.ident}, 0.044715)), "
                              f"{float_literal(math.sqrt(2.0 / math.pi))})", s)
            return self.b.op(f"mul(mul({x.ident}, 0.5), add(tanh({inner.ident}), 1.0))", s)
        self.b.extensions.add("tract_registry tract_core")
        e = self.b.op(f"tract_core_erf(mul({x.ident}, {float_literal(1 / math.sqrt(2.0))}))", s)
        return self.b.op(f"mul(mul({x.ident}, 0.5), add({e.ident}, 1.0))", s)

    def _op_silu(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        return self.b.op(f"mul({x.ident}, sigmoid({x.ident}))", x.shape)

    def _op_leaky_relu(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        slope = node.args[1] if len(node.args) > 1 else 0.01
        return self.b.op(f"leaky_relu({x.ident}, alpha = {float_literal(slope)})", x.shape)

    def _op_hardtanh(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        lo = node.args[1] if len(node.args) > 1 else -1.0
        hi = node.args[2] if len(node.args) > 2 else 1.0
        return self.b.op(f"clamp({x.ident}, {float_literal(lo)}, {float_literal(hi)})", x.shape)

    def _op_clamp(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
        hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
        expr = x.ident
        if lo is not None:
            expr = f"max({expr}, {self._operand(lo, x.rank)})"
        if hi is not None:
            expr = f"min({expr}, {self._operand(hi, x.rank)})"
        return self.b.op(expr, self._shape(node))

    def _op_clamp_min(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        return self.b.op(f"max({x.ident}, {self._operand(node.args[1], x.rank)})", x.shape)

    def _op_clamp_max(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        return self.b.op(f"min({x.ident}, {self._operand(node.args[1], x.rank)})", x.shape)

    def _op_softplus(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        beta = node.args[1] if len(node.args) > 1 else 1.0
        if beta != 1:
            raise UnsupportedOpError(f"{node.name}: softplus with beta != 1 is not supported")
        return self.b.op(f"softplus({x.ident})", x.shape)

    def _op_where(self, node: fx.Node) -> Value:
        out = self._shape(node)
        rank = len(out)
        c = self._mask(node.args[0], rank)
        a = self._operand(node.args[1], rank)
        b = self._operand(node.args[2], rank)
        return self.b.op(f"select({c}, {a}, {b})", out)

    def _mask(self, arg: Any, rank: int) -> str:
        """A logical tensor of the given rank (stored masks are 0/1 floats)."""
        v = self._tensor(arg)
        if v.kind != "logical":
            zero = "0.0" if v.kind == "scalar" else "0"
            v = self.b.op(f"ne({v.ident}, {zero})", v.shape, "logical")
        return self._align(v, rank).ident

    def _op_masked_fill(self, node: fx.Node) -> Value:
        out = self._shape(node)
        rank = len(out)
        x = self._operand(node.args[0], rank)
        m = self._mask(node.args[1], rank)
        fill = self._operand(node.args[2], rank)
        return self.b.op(f"select({m}, {fill}, {x})", out)

    # ----------------------------------------------------------------------------- reductions
    @staticmethod
    def _axes(dims: Any, rank: int) -> list[int]:
        if dims is None or (isinstance(dims, list | tuple) and len(dims) == 0):
            return list(range(rank))
        if isinstance(dims, int):
            dims = [dims]
        return sorted({d % rank for d in dims}) if rank else []

    def _reduce(self, node: fx.Node, op: str) -> Value:
        x = self._tensor(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        axes = self._axes(dims, x.rank)
        kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        r = self.b.op(f"{op}({x.ident}, axes = {ints(axes)})", kept)
        out = self._shape(node)
        if keep or out == kept:
            return r
        return self.b.op(f"reshape({r.ident}, shape = {ints(out)})", out)

    def _op_mean(self, node: fx.Node) -> Value:
        return self._reduce(node, "mean_reduce")

    def _op_sum(self, node: fx.Node) -> Value:
        return self._reduce(node, "sum_reduce")

    def _op_amax(self, node: fx.Node) -> Value:
        return self._reduce(node, "max_reduce")

    def _op_amin(self, node: fx.Node) -> Value:
        return self._reduce(node, "min_reduce")

    def _op__softmax(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        axis = node.args[1] % x.rank
        return self.b.op(f"softmax({x.ident}, axes = [{axis}])", x.shape)

    _op_softmax = _op__softmax

    def _op__log_softmax(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        axis = node.args[1] % x.rank
        m = self.b.op(f"max_reduce({x.ident}, axes = [{axis}])", x.shape)
        d = self.b.op(f"sub({x.ident}, {m.ident})", x.shape)
        lse = self.b.op(f"log(sum_reduce(exp({d.ident}), axes = [{axis}]))", x.shape)
        return self.b.op(f"sub({d.ident}, {lse.ident})", x.shape)

    _op_log_softmax = _op__log_softmax

    # ----------------------------------------------------------------------------- norms
    def _normalize(self, x: Value, axes: list[int], eps: float, center: bool) -> Value:
        s = x.shape
        kept = tuple(1 if i in axes else d for i, d in enumerate(s))
        if center:
            mean = self.b.op(f"mean_reduce({x.ident}, axes = {ints(axes)})", kept)
            x = self.b.op(f"sub({x.ident}, {mean.ident})", s)
        var = self.b.op(f"mean_reduce(sqr({x.ident}), axes = {ints(axes)})", kept)
        inv = self.b.op(f"rsqrt(add({var.ident}, {float_literal(eps)}))", kept)
        return self.b.op(f"mul({x.ident}, {inv.ident})", s)

    def _affine(self, y: Value, weight: Any, bias: Any) -> Value:
        if weight is not None:
            y = self.b.op(f"mul({y.ident}, {self._operand(weight, y.rank)})", y.shape)
        if bias is not None:
            y = self.b.op(f"add({y.ident}, {self._operand(bias, y.rank)})", y.shape)
        return y

    def _op_layer_norm(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        normalized = list(node.args[1])
        weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
        bias = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
        eps = node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5)
        axes = list(range(x.rank - len(normalized), x.rank))
        return self._affine(self._normalize(x, axes, eps, True), weight, bias)

    def _op_native_layer_norm(self, node: fx.Node) -> list[Value | None]:
        return [self._op_layer_norm(node), None, None]

    def _op_rms_norm(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        normalized = list(node.args[1])
        weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
        eps = node.args[3] if len(node.args) > 3 else node.kwargs.get("eps")
        if eps is None:
            eps = float(torch.finfo(torch.float32).eps)
        axes = list(range(x.rank - len(normalized), x.rank))
        return self._affine(self._normalize(x, axes, eps, False), weight, None)

    def _batch_norm(self, node: fx.Node, weight, bias, mean, var, eps) -> Value:
        x = self._tensor(node.args[0])
        mean_t = torch.as_tensor(self._val(mean) if mean is not None else 0.0)
        var_t = torch.as_tensor(self._val(var) if var is not None else 1.0)
        w_t = torch.as_tensor(self.t.values[weight.name] if weight is not None else 1.0)
        b_t = torch.as_tensor(self.t.values[bias.name] if bias is not None else 0.0)
        # eval-mode batch norm is one per-channel affine map; fold it into scale and shift
        scale = w_t * torch.rsqrt(var_t + eps)
        shift = b_t - mean_t * scale
        shape = (1, x.shape[1]) + (1,) * (x.rank - 2)
        sv = self._const_var(scale.reshape(shape), x.rank, "batch_norm.scale")
        hv = self._const_var(shift.reshape(shape), x.rank, "batch_norm.shift")
        y = self.b.op(f"mul({x.ident}, {sv.ident})", x.shape)
        return self.b.op(f"add({y.ident}, {hv.ident})", x.shape)

    def _op__native_batch_norm_legit_no_training(self, node: fx.Node) -> list:
        a = node.args
        return [self._batch_norm(node, a[1], a[2], a[3], a[4], a[6]), None, None]

    def _op_batch_norm(self, node: fx.Node) -> Value:
        a = node.args
        if a[5]:
            raise UnsupportedOpError(f"{node.name}: batch_norm in training mode")
        return self._batch_norm(node, a[1], a[2], a[3], a[4], a[7])

    # ----------------------------------------------------------------------------- linear algebra
    def _op_linear(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        w_arg = node.args[1]
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        out = self._shape(node)
        n_out, n_in = (int(d) for d in (self.t.values[w_arg.name].shape
                                        if isinstance(w_arg, fx.Node) else w_arg.shape))
        x2 = x
        if x.rank != 2:
            rows = int(np.prod(x.shape[:-1], dtype=np.int64))
            x2 = self.b.op(f"reshape({x.ident}, shape = {ints((rows, n_in))})", (rows, n_in))
        if self._is_weight(w_arg) or not isinstance(self._val(w_arg), Value):
            w = self._weight(w_arg, USE_MATMUL) if self._is_weight(w_arg) \
                else self._const_var(self._val(w_arg), 2, "linear.weight").ident
        else:
            w = self._val(w_arg).ident
        y2_shape = (x2.shape[0], n_out)
        if bias is None:
            y = self.b.op(f"matmul({x2.ident}, {w}, transposeA = false, transposeB = true)",
                          y2_shape)
        else:
            if self._is_weight(bias):
                bid = self._weight(bias, USE_OTHER, (1, n_out))
            else:
                bv = self._val(bias)
                bid = bv.ident if isinstance(bv, Value) else \
                    self._const_var(torch.as_tensor(bv).reshape(1, n_out), 2, "linear.bias").ident
            y = self.b.op(f"linear({x2.ident}, {w}, {bid})", y2_shape)
        if y.shape != out:
            y = self.b.op(f"reshape({y.ident}, shape = {ints(out)})", out)
        return y

    def _matmul(self, node: fx.Node, a_arg: Any, b_arg: Any) -> Value:
        out = self._shape(node)
        rank = max(len(out), 2)
        a = self._align(self._tensor(a_arg), rank)
        b = self._align(self._tensor(b_arg), rank)
        y = self.b.op(f"matmul({a.ident}, {b.ident}, transposeA = false, transposeB = false)",
                      out if len(out) == rank else (1,) * (rank - len(out)) + out)
        if y.shape != out:
            y = self.b.op(f"reshape({y.ident}, shape = {ints(out)})", out)
        return y

    def _op_matmul(self, node: fx.Node) -> Value:
        a_shape = tuple(self.t.values[node.args[0].name].shape) \
            if isinstance(node.args[0], fx.Node) else ()
        b_shape = tuple(self.t.values[node.args[1].name].shape) \
            if isinstance(node.args[1], fx.Node) else ()
        if len(a_shape) < 1 or len(b_shape) < 2:
            raise UnsupportedOpError(f"{node.name}: matmul with a vector operand")
        # batch dimensions broadcast in torch but must match in tract: tile them explicitly
        a = self._tensor(node.args[0])
        b = self._tensor(node.args[1])
        out = self._shape(node)
        rank = max(a.rank, b.rank)
        a, b = self._align(a, rank), self._align(b, rank)
        batch = out[:-2]
        a = self._tile_to(a, batch + a.shape[-2:])
        b = self._tile_to(b, batch + b.shape[-2:])
        return self.b.op(f"matmul({a.ident}, {b.ident}, transposeA = false, transposeB = false)",
                         out)

    _op_mm = _op_matmul
    _op_bmm = _op_matmul

    def _tile_to(self, v: Value, shape: tuple[int, ...]) -> Value:
        if v.shape == shape:
            return v
        reps = [t // s if s else 1 for s, t in zip(v.shape, shape, strict=True)]
        return self.b.op(f"tile({v.ident}, repeats = {ints(reps)})", shape, v.kind)

    def _op_addmm(self, node: fx.Node) -> Value:
        w_arg = node.args[2]
        if self._is_weight(w_arg) and self._uses.get(w_arg.name) == {USE_MATMUL_T}:
            x = self._tensor(node.args[1])
            n_out = int(self.t.values[w_arg.name].shape[1])
            w = self._weight(w_arg, USE_MATMUL_T)
            bias = node.args[0]
            if self._is_weight(bias) and tuple(self.t.values[bias.name].shape) == (n_out,):
                b = self._weight(bias, USE_OTHER, (1, n_out))
            else:
                b = self._const_var(torch.as_tensor(self._val(bias)).reshape(1, -1)
                                    .expand(1, n_out), 2, "addmm.bias").ident
            return self.b.op(f"linear({x.ident}, {w}, {b})", self._shape(node))
        y = self._matmul(node, node.args[1], node.args[2])
        beta = node.kwargs.get("beta", 1)
        alpha = node.kwargs.get("alpha", 1)
        if alpha != 1:
            y = self.b.op(f"mul({y.ident}, {float_literal(alpha)})", y.shape)
        bias = self._operand(node.args[0], y.rank)
        if beta != 1:
            bias = self.b.op(f"mul({bias}, {float_literal(beta)})", y.shape).ident
        return self.b.op(f"add({y.ident}, {bias})", y.shape)

    def _op_embedding(self, node: fx.Node) -> Value:
        w_arg, idx_arg = node.args[0], node.args[1]
        ids = self._tensor(idx_arg)
        out = self._shape(node)
        self.b.extensions.add("tract_registry tract_core")
        if self._is_weight(w_arg):
            w = self._weight(w_arg, USE_GATHER)
            var = self._weight_vars[w_arg.name]
            dt = ', datum_type = "f32"' if w == var.ident and var.encoding == "Q4_0" else ""
        else:
            w, dt = self._tensor(w_arg).ident, ""
        return self.b.op(f"tract_core_gather({w}, {ids.ident}, axis = 0{dt})", out)

    def _conv(self, node: fx.Node, x_arg, w_arg, b_arg, stride, padding, dilation,
              groups) -> Value:
        x = self._tensor(x_arg)
        w_shape = tuple(int(d) for d in self.t.values[w_arg.name].shape) \
            if isinstance(w_arg, fx.Node) else tuple(w_arg.shape)
        spatial = len(w_shape) - 2
        out = self._shape(node)

        def per_dim(v: Any, default: int) -> list[int]:
            if v is None:
                return [default] * spatial
            v = list(v) if isinstance(v, list | tuple) else [v]
            return v * spatial if len(v) == 1 else v

        stride_l = per_dim(stride, 1)
        dil = per_dim(dilation, 1)
        if isinstance(padding, str):
            if padding == "valid":
                pads = [(0, 0)] * spatial
            else:  # "same": torch puts the odd extra element at the end
                pads = []
                for k, d in zip(w_shape[2:], dil, strict=True):
                    total = d * (k - 1)
                    pads.append((total // 2, total - total // 2))
        else:
            pads = [(p, p) for p in per_dim(padding, 0)]
        w = self._weight(w_arg, USE_CONV) if self._is_weight(w_arg) else self._tensor(w_arg).ident
        if b_arg is None:
            bias = "0.0"
        elif self._is_weight(b_arg):
            bias = self._weight(b_arg, USE_OTHER, (1, w_shape[0]))
        else:
            bias = self._const_var(torch.as_tensor(self._val(b_arg)).reshape(1, -1), 2,
                                   "conv.bias").ident
        pad_text = "[" + ", ".join(f"({a}, {b})" for a, b in pads) + "]"
        return self.b.op(f"conv({x.ident}, {w}, {bias}, border = 'constant', padding = {pad_text}, "
                         f"stride = {ints(stride_l)}, dilation = {ints(dil)}, groups = {groups})",
                         out)

    def _op_conv1d(self, node: fx.Node) -> Value:
        a = list(node.args) + [None] * (7 - len(node.args))
        return self._conv(node, a[0], a[1], a[2], a[3] or 1, a[4] if a[4] is not None else 0,
                          a[5] or 1, a[6] or 1)

    _op_conv2d = _op_conv1d

    def _op_convolution(self, node: fx.Node) -> Value:
        a = node.args
        if a[6]:
            raise UnsupportedOpError(f"{node.name}: transposed convolution is not supported")
        return self._conv(node, a[0], a[1], a[2], a[3], a[4], a[5], a[8])

    # ----------------------------------------------------------------------------- layout
    def _op_transpose(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        d0, d1 = node.args[1] % x.rank, node.args[2] % x.rank
        perm = list(range(x.rank))
        perm[d0], perm[d1] = perm[d1], perm[d0]
        return self.b.op(f"transpose({x.ident}, axes = {ints(perm)})", self._shape(node), x.kind)

    def _op_permute(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        perm = [d % x.rank for d in node.args[1]]
        return self.b.op(f"transpose({x.ident}, axes = {ints(perm)})", self._shape(node), x.kind)

    def _op_t(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        if x.rank < 2:
            return x
        return self.b.op(f"transpose({x.ident}, axes = [1, 0])", self._shape(node), x.kind)

    def _op_expand(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        out = self._shape(node)
        return self._tile_to(self._align(x, len(out)), out)

    def _op_repeat(self, node: fx.Node) -> Value:
        return self._op_expand(node)

    def _op_slice(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        dim = (node.args[1] if len(node.args) > 1 else 0) % x.rank
        size = x.shape[dim]
        start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
        end = node.args[3] if len(node.args) > 3 and node.args[3] is not None else size
        step = node.args[4] if len(node.args) > 4 else 1
        start, end, _ = slice(start, end, step).indices(size)
        out = self._shape(node)
        if out == x.shape:
            return x
        return self.b.op(f"slice({x.ident}, axes = [{dim}], begin = [{start}], end = [{end}], "
                         f"stride = [{step}])", out, x.kind)

    def _op_narrow(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        dim, start, length = node.args[1] % x.rank, node.args[2], node.args[3]
        return self.b.op(f"slice({x.ident}, axes = [{dim}], begin = [{start}], "
                         f"end = [{start + length}])", self._shape(node), x.kind)

    def _op_select(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        dim = node.args[1] % x.rank
        idx = node.args[2] % x.shape[dim]
        kept = tuple(1 if i == dim else s for i, s in enumerate(x.shape))
        s = self.b.op(f"slice({x.ident}, axes = [{dim}], begin = [{idx}], end = [{idx + 1}])",
                      kept, x.kind)
        out = self._shape(node)
        return self.b.op(f"reshape({s.ident}, shape = {ints(out)})", out, x.kind)

    def _op_cat(self, node: fx.Node) -> Value:
        out = self._shape(node)
        dim = (node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % len(out)
        parts = []
        kind = "scalar"
        for a in node.args[0]:
            v = self._val(a)
            if isinstance(v, torch.Tensor) and v.numel() == 0:
                continue
            tv = self._tensor(a)
            kind = tv.kind
            parts.append(tv.ident)
        return self.b.op(f"concat([{', '.join(parts)}], axis = {dim})", out, kind)

    _op_concat = _op_cat

    def _op_stack(self, node: fx.Node) -> Value:
        out = self._shape(node)
        dim = (node.args[1] if len(node.args) > 1 else 0) % len(out)
        parts = []
        for a in node.args[0]:
            v = self._tensor(a)
            shape = (*v.shape[:dim], 1, *v.shape[dim:])
            parts.append(self.b.op(f"reshape({v.ident}, shape = {ints(shape)})", shape).ident)
        return self.b.op(f"concat([{', '.join(parts)}], axis = {dim})", out)

    def _split(self, node: fx.Node, sizes: list[int], dim: int) -> list[Value]:
        x = self._tensor(node.args[0])
        dim %= x.rank
        outs, start = [], 0
        for s in sizes:
            shape = (*x.shape[:dim], s, *x.shape[dim + 1:])
            outs.append(self.b.op(f"slice({x.ident}, axes = [{dim}], begin = [{start}], "
                                  f"end = [{start + s}])", shape, x.kind))
            start += s
        return outs

    def _op_split(self, node: fx.Node) -> list[Value]:
        results = self.t.values[node.name]
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        rank = results[0].dim()
        return self._split(node, [int(r.shape[dim % rank]) for r in results], dim)

    _op_split_with_sizes = _op_split
    _op_chunk = _op_split

    def _op_unbind(self, node: fx.Node) -> list[Value]:
        x = self._tensor(node.args[0])
        dim = (node.args[1] if len(node.args) > 1 else 0) % x.rank
        outs = []
        for part in self._split(node, [1] * x.shape[dim], dim):
            shape = part.shape[:dim] + part.shape[dim + 1:]
            outs.append(self.b.op(f"reshape({part.ident}, shape = {ints(shape)})", shape,
                                  part.kind))
        return outs

    def _op_gather(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        dim = node.args[1] % x.rank
        idx = self._tensor(node.args[2])
        self.b.extensions.add("tract_registry tract_core")
        return self.b.op(f"tract_core_gather_elements({x.ident}, {idx.ident}, axis = {dim})",
                         self._shape(node), x.kind)

    def _op_cumsum(self, node: fx.Node) -> Value:
        # a running sum is a product with a triangular matrix of ones; integers go through
        # f32, exact for the counts (position ids) this appears in
        x = self._tensor(node.args[0])
        dim = node.args[1] % x.rank
        out_kind = _kind_of(self.t.values[node.name])
        self.b.extensions.add("tract_registry tract_core")
        xf = x if x.kind == "scalar" else \
            self.b.op(f'tract_core_cast({x.ident}, to = "f32")', x.shape)
        perm = list(range(x.rank))
        perm[dim], perm[-1] = perm[-1], perm[dim]
        moved = xf if dim == x.rank - 1 else self.b.op(
            f"transpose({xf.ident}, axes = {ints(perm)})", tuple(x.shape[p] for p in perm))
        n = x.shape[dim]
        tri = self._const_var(torch.ones(n, n).triu(), moved.rank, "cumsum.triangle")
        rows = int(np.prod(moved.shape[:-1], dtype=np.int64))
        flat = self.b.op(f"reshape({moved.ident}, shape = {ints((rows, n))})", (rows, n))
        tri2 = self.b.op(f"reshape({tri.ident}, shape = [{n}, {n}])", (n, n))
        y = self.b.op(f"matmul({flat.ident}, {tri2.ident}, transposeA = false, "
                      "transposeB = false)", (rows, n))
        y = self.b.op(f"reshape({y.ident}, shape = {ints(moved.shape)})", moved.shape)
        if dim != x.rank - 1:
            y = self.b.op(f"transpose({y.ident}, axes = {ints(perm)})", x.shape)
        if out_kind == "integer":
            y = self.b.op(f'tract_core_cast(round({y.ident}), to = "i64")', x.shape, "integer")
        return y

    # ----------------------------------------------------------------------------- attention
    def _op_scaled_dot_product_attention(self, node: fx.Node) -> Value:
        args = list(node.args) + [None] * (4 - min(len(node.args), 4))
        kw = node.kwargs
        q, k, v = (self._tensor(a) for a in args[:3])
        mask_arg = args[3] if len(node.args) > 3 else kw.get("attn_mask")
        dropout = node.args[4] if len(node.args) > 4 else kw.get("dropout_p", 0.0)
        causal = node.args[5] if len(node.args) > 5 else kw.get("is_causal", False)
        scale = kw.get("scale", node.args[6] if len(node.args) > 6 else None)
        gqa = kw.get("enable_gqa", node.args[7] if len(node.args) > 7 else False)
        if dropout:
            raise UnsupportedOpError(f"{node.name}: attention dropout must be 0 for export")
        if scale is None:
            scale = 1.0 / math.sqrt(q.shape[-1])
        if gqa and q.rank >= 3 and k.shape[-3] != q.shape[-3]:
            k, v = self._repeat_heads(k, q.shape[-3]), self._repeat_heads(v, q.shape[-3])
        s_shape = (*q.shape[:-1], k.shape[-2])
        s = self.b.op(f"matmul({q.ident}, {k.ident}, transposeA = false, transposeB = true)",
                      s_shape)
        s = self.b.op(f"mul({s.ident}, {float_literal(scale)})", s_shape)
        if mask_arg is not None:
            mv = self._val(mask_arg)
            if isinstance(mv, Value):
                m = self._align(mv, len(s_shape))
                if m.kind == "logical":
                    s = self.b.op(f"select({m.ident}, {s.ident}, "
                                  f"{float_literal(-math.inf)})", s_shape)
                else:
                    s = self.b.op(f"add({s.ident}, {m.ident})", s_shape)
            else:
                mt = torch.as_tensor(mv)
                if mt.dtype == torch.bool:
                    mt = torch.zeros(mt.shape).masked_fill(~mt, -math.inf)
                s = self.b.op(f"add({s.ident}, "
                              f"{self._const_var(mt, len(s_shape), 'attention_mask').ident})",
                              s_shape)
        if causal:
            t_q, t_k = s_shape[-2], s_shape[-1]
            tri = torch.ones(t_q, t_k, dtype=torch.bool).tril()
            mt = torch.zeros(t_q, t_k).masked_fill(~tri, -math.inf)
            s = self.b.op(f"add({s.ident}, "
                          f"{self._const_var(mt, len(s_shape), 'causal_mask').ident})", s_shape)
        p = self.b.op(f"softmax({s.ident}, axes = [{len(s_shape) - 1}])", s_shape)
        return self.b.op(f"matmul({p.ident}, {v.ident}, transposeA = false, transposeB = false)",
                         self._shape(node))

    def _repeat_heads(self, x: Value, heads: int) -> Value:
        h = x.shape[-3]
        rep = heads // h
        five = (*x.shape[:-3], h, 1, *x.shape[-2:])
        y = self.b.op(f"reshape({x.ident}, shape = {ints(five)})", five)
        tiled = (*x.shape[:-3], h, rep, *x.shape[-2:])
        reps = [1] * len(five)
        reps[-3] = rep
        y = self.b.op(f"tile({y.ident}, repeats = {ints(reps)})", tiled)
        out = (*x.shape[:-3], heads, *x.shape[-2:])
        return self.b.op(f"reshape({y.ident}, shape = {ints(out)})", out)

    # ----------------------------------------------------------------------------- pooling
    def _op_adaptive_avg_pool2d(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        out = self._shape(node)
        if tuple(out[-2:]) != (1, 1):
            raise UnsupportedOpError(f"{node.name}: adaptive pooling only to 1x1 is supported")
        return self.b.op(f"mean_reduce({x.ident}, axes = [{x.rank - 2}, {x.rank - 1}])", out)

    def _pool(self, node: fx.Node, op: str) -> Value:
        x = self._tensor(node.args[0])
        k = list(node.args[1])
        spatial = len(k)
        stride = list(node.args[2]) if len(node.args) > 2 and node.args[2] else k
        pad = list(node.args[3]) if len(node.args) > 3 else [0] * spatial
        if len(stride) == 1:
            stride = stride * spatial
        if len(pad) == 1:
            pad = pad * spatial
        lead = x.rank - spatial
        size = [1] * lead + k
        strides = [1] * lead + stride
        pads = "[" + ", ".join(["(0, 0)"] * lead + [f"({p}, {p})" for p in pad]) + "]"
        border = "'ignore'" if op == "max_pool" else "'constant'"
        return self.b.op(f"{op}({x.ident}, size = {ints(size)}, border = {border}, "
                         f"padding = {pads}, stride = {ints(strides)})", self._shape(node))

    def _op_max_pool2d(self, node: fx.Node) -> Value:
        return self._pool(node, "max_pool")

    _op_max_pool1d = _op_max_pool2d

    def _op_avg_pool2d(self, node: fx.Node) -> Value:
        return self._pool(node, "avg_pool")

    _op_avg_pool1d = _op_avg_pool2d


def _const_label(a: Any) -> str:
    return f"const.{a.name}" if isinstance(a, fx.Node) else "const"


def _plain_addmm(node: fx.Node) -> bool:
    """addmm(bias, x, W) with unit alpha/beta and a bias that is a row (GPT-2's Conv1D)."""
    return node.kwargs.get("alpha", 1) == 1 and node.kwargs.get("beta", 1) == 1


def convert(traced: TracedGraph, policy: WeightPolicy) -> tuple[NnefBuilder, list[Value]]:
    return Converter(traced, policy).run()
