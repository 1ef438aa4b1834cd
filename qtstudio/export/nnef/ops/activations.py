"""Activations, clamps and masked selection (gelu, silu, clamp, where, masked_fill ...).

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

import math
from typing import Any

from torch import fx

from ..builder import Value, float_literal
from .common import UnsupportedOpError, node_arg


class ActivationsOps:
    # ----------------------------------------------------------------------------- activations
    def _op_gelu(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        approx = node_arg(node, 1, "approximate", "none")
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
        slope = node_arg(node, 1, "negative_slope", 0.01)
        return self.b.op(f"leaky_relu({x.ident}, alpha = {float_literal(slope)})", x.shape)

    def _op_hardtanh(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        lo = node_arg(node, 1, "min_val", -1.0)
        hi = node_arg(node, 2, "max_val", 1.0)
        return self.b.op(f"clamp({x.ident}, {float_literal(lo)}, {float_literal(hi)})", x.shape)

    def _op_clamp(self, node: fx.Node) -> Value:
        lo = node_arg(node, 1, "min")
        hi = node_arg(node, 2, "max")
        return self._clamped(node, lo, hi)

    def _op_clamp_min(self, node: fx.Node) -> Value:
        return self._clamped(node, node.args[1], None)

    def _op_clamp_max(self, node: fx.Node) -> Value:
        return self._clamped(node, None, node.args[1])

    def _clamped(self, node: fx.Node, lo: Any, hi: Any) -> Value:
        """``node``'s input between ``lo`` and ``hi`` (numbers or tensors; None: unbounded)."""
        x = self._tensor(node.args[0])
        expr = x.ident
        if lo is not None:
            expr = f"max({expr}, {self._operand(lo, x.rank)})"
        if hi is not None:
            expr = f"min({expr}, {self._operand(hi, x.rank)})"
        return self.b.op(expr, self._shape(node))

    def _op_softplus(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        beta = node_arg(node, 1, "beta", 1.0)
        if beta != 1:
            raise UnsupportedOpError(f"{node.name}: softplus with beta != 1 is not supported")
        return self.b.op(f"softplus({x.ident})", x.shape)

    def _select(self, node: fx.Node, cond: Any, when_true: Any, when_false: Any) -> Value:
        """select(cond, when_true, when_false) at the node's output shape."""
        out = self._shape(node)
        rank = len(out)
        c = self._mask(cond, rank)
        a = self._operand(when_true, rank)
        b = self._operand(when_false, rank)
        return self.b.op(f"select({c}, {a}, {b})", out)

    def _op_where(self, node: fx.Node) -> Value:
        return self._select(node, node.args[0], node.args[1], node.args[2])

    def _mask(self, arg: Any, rank: int) -> str:
        """A logical tensor of the given rank (stored masks are 0/1 floats)."""
        v = self._tensor(arg)
        if v.kind != "logical":
            zero = "0.0" if v.kind == "scalar" else "0"
            v = self.b.op(f"ne({v.ident}, {zero})", v.shape, "logical")
        return self._align(v, rank).ident

    def _op_masked_fill(self, node: fx.Node) -> Value:
        x, mask, fill = node.args[:3]
        return self._select(node, mask, fill, x)
