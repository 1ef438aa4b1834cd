"""scaled_dot_product_attention with causal or given masks and grouped key/value heads.

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

import math

import torch
from torch import fx

from ..builder import Value, float_literal, ints
from .common import UnsupportedOpError, node_arg


class AttentionOps:
    # ----------------------------------------------------------------------------- attention
    def _op_scaled_dot_product_attention(self, node: fx.Node) -> Value:
        q, k, v = (self._tensor(a) for a in node.args[:3])
        mask_arg = node_arg(node, 3, "attn_mask")
        dropout = node_arg(node, 4, "dropout_p", 0.0)
        causal = node_arg(node, 5, "is_causal", False)
        scale = node_arg(node, 6, "scale")
        gqa = node_arg(node, 7, "enable_gqa", False)
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
