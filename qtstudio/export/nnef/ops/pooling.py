"""Pooling: adaptive and fixed-window average and max pooling.

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

from torch import fx

from ..builder import Value, ints
from .common import UnsupportedOpError, node_arg


class PoolingOps:
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
        stride = list(node_arg(node, 2, "stride", ())) or k
        pad = list(node_arg(node, 3, "padding", [0] * spatial))
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
