"""Accumulates graph.nnef text: declarations, operation lines and the variables to write.

Identifiers are generated (``t12``, ``v3``) so that any torch name is safe; the variable's label
(its file name inside the archive) keeps the original dotted tensor name for readability.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

#: how a weight is consumed; Q4_0 needs one of the block-aware kernels
USE_MATMUL = "matmul"
USE_CONV = "conv"
USE_GATHER = "gather"
USE_OTHER = "other"
#: the right-hand [in, out] matrix of addmm (stored transposed)
USE_MATMUL_T = "matmul_t"
#: a convolution whose output goes straight into batch norm
USE_CONV_SCALED = "conv_batch_norm"
BLOCK_AWARE_USES = frozenset({USE_MATMUL, USE_CONV, USE_GATHER})


@dataclass
class Value:
    """A tensor computed by the NNEF graph."""

    ident: str
    shape: tuple[int, ...]
    kind: str = "scalar"  # "scalar" | "integer" | "logical"

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class Variable:
    """A stored tensor. ``tensor`` holds the float values; the encoding decides the bytes."""

    ident: str
    label: str
    tensor: torch.Tensor
    shape: tuple[int, ...]
    encoding: str
    #: the weight's qualified name in the module (None for folded constants)
    source: str | None = None
    kind: str = "scalar"
    #: identifiers of side tensors (per-channel scale / zero point) declared for it
    scale_ident: str | None = None
    zero_ident: str | None = None
    requested: str | None = None
    fallback_reason: str | None = None
    #: for a per-channel scale / zero-point tensor: the identifier of the 8-bit variable
    side_of: str | None = None
    #: stored as the transpose of the module's tensor
    transposed: bool = False
    #: the module tensor's own shape (the stored one may be reshaped or transposed)
    source_shape: tuple[int, ...] | None = None


@dataclass
class NnefBuilder:
    lines: list[str] = field(default_factory=list)
    variables: list[Variable] = field(default_factory=list)
    externals: list[Value] = field(default_factory=list)
    extensions: set[str] = field(default_factory=set)
    _counter: int = 0
    _labels: set[str] = field(default_factory=set)

    def fresh(self, prefix: str = "t") -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def op(self, expr: str, shape: tuple[int, ...], kind: str = "scalar") -> Value:
        ident = self.fresh()
        self.lines.append(f"{ident} = {expr};")
        return Value(ident, tuple(int(s) for s in shape), kind)

    def external(self, shape: tuple[int, ...], kind: str) -> Value:
        ident = self.fresh("input")
        decl_kind = kind if kind in ("scalar", "integer", "logical") else "scalar"
        self.lines.append(f"{ident} = external<{decl_kind}>(shape = {ints(shape)});")
        v = Value(ident, tuple(shape), kind)
        self.externals.append(v)
        return v

    def unique_label(self, name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip(".") or "tensor"
        label, i = base, 1
        while label.lower() in self._labels:
            i += 1
            label = f"{base}_{i}"
        self._labels.add(label.lower())
        return label

    def declare_variable(self, var: Variable) -> None:
        kind = "scalar" if var.kind == "scalar" else var.kind
        self.lines.append(f'{var.ident} = variable<{kind}>(label = "{var.label}", '
                          f"shape = {ints(var.shape)});")
        self.variables.append(var)

    def text(self, outputs: list[Value]) -> str:
        head = ["version 1.0;"]
        head += [f"extension {e};" for e in sorted(self.extensions)]
        ins = ", ".join(v.ident for v in self.externals)
        outs = ", ".join(v.ident for v in outputs)
        body = "\n".join("  " + line for line in self.lines)
        return "\n".join(head) + f"\n\ngraph network({ins}) -> ({outs})\n{{\n{body}\n}}\n"


def ints(values) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def float_literal(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        raise ValueError("NaN constant cannot be written as an NNEF literal")
    if math.isinf(x):
        # NNEF has no infinity literal; the float32 extreme behaves the same after softmax/max.
        x = float(np.finfo(np.float32).max) * (1 if x > 0 else -1)
    text = repr(x)
    return text if any(c in text for c in ".e") else text + ".0"
