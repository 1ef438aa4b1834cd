"""Linear algebra on weights and activations: linear, matmul/mm/bmm, addmm, embedding, convolutions.

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import fx

from ..builder import (
    USE_CONV,
    USE_GATHER,
    USE_MATMUL,
    USE_MATMUL_T,
    USE_OTHER,
    Value,
    float_literal,
    ints,
)
from .common import UnsupportedOpError, node_arg


class LinalgOps:
    # ----------------------------------------------------------------------------- linear algebra
    def _op_linear(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        w_arg = node.args[1]
        bias = node_arg(node, 2, "bias")
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


def plain_addmm(node: fx.Node) -> bool:
    """addmm(bias, x, W) with unit alpha/beta and a bias that is a row (GPT-2's Conv1D)."""
    return node.kwargs.get("alpha", 1) == 1 and node.kwargs.get("beta", 1) == 1
