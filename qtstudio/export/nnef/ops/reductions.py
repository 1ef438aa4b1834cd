"""Reductions and softmax: mean, sum, amax, amin, softmax, log_softmax.

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

from typing import Any

from torch import fx

from ..builder import Value, ints
from .common import node_arg


class ReductionsOps:
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
        dims = node_arg(node, 1, "dim")
        keep = node_arg(node, 2, "keepdim", False)
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
