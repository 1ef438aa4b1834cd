"""Normalisations: layer_norm, rms_norm, batch_norm (inference form).

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from ..builder import Value, float_literal, ints
from .common import UnsupportedOpError, node_arg


class NormsOps:
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
        weight = node_arg(node, 2, "weight")
        bias = node_arg(node, 3, "bias")
        eps = node_arg(node, 4, "eps", 1e-5)
        axes = list(range(x.rank - len(normalized), x.rank))
        return self._affine(self._normalize(x, axes, eps, True), weight, bias)

    def _op_native_layer_norm(self, node: fx.Node) -> list[Value | None]:
        return [self._op_layer_norm(node), None, None]

    def _op_rms_norm(self, node: fx.Node) -> Value:
        x = self._tensor(node.args[0])
        normalized = list(node.args[1])
        weight = node_arg(node, 2, "weight")
        eps = node_arg(node, 3, "eps")
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
