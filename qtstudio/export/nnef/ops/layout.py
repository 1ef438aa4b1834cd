"""Layout and indexing: transpose, permute, slice, cat, split, gather, cumsum ...

A mixin of :class:`~qtstudio.export.nnef.convert.Converter`: its methods use the
converter's operand helpers (``_tensor``, ``_operand``, ``_weight``, ``self.b``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx

from ..builder import Value, ints
from .common import kind_of, node_arg


class LayoutOps:
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
        dim = node_arg(node, 1, "dim", 0) % x.rank
        size = x.shape[dim]
        start = node_arg(node, 2, "start", 0)
        end = node_arg(node, 3, "end", size)
        step = node_arg(node, 4, "step", 1)
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
        dim = node_arg(node, 1, "dim", 0) % len(out)
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
        dim = node_arg(node, 1, "dim", 0) % len(out)
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
        dim = node_arg(node, 2, "dim", 0)
        rank = results[0].dim()
        return self._split(node, [int(r.shape[dim % rank]) for r in results], dim)

    _op_split_with_sizes = _op_split
    _op_chunk = _op_split

    def _op_unbind(self, node: fx.Node) -> list[Value]:
        x = self._tensor(node.args[0])
        dim = node_arg(node, 1, "dim", 0) % x.rank
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
        out_kind = kind_of(self.t.values[node.name])
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
