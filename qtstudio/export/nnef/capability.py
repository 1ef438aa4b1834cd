"""What tract can read from an NNEF export, and what to use instead when it cannot.

tract reads f32 and f16 tensors anywhere, ggml Q4_0 blocks where a block-aware kernel consumes
the weight (matrix products, convolutions, gathers) and 8-bit tensors described in graph.quant
(cast back to f32 in the graph). Anything else is stored in a float type instead, and the export
report lists each such change with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from qtstudio.core.encodings import Encoding, get_encoding
from qtstudio.core.nnef_rules import (
    BLOCK_AWARE_ROLES,
    FLOAT_ENCODINGS,
    is_int8,
    nnef_float_fallback,
    q4_0_rows_ok,
    static_nnef_problem,
)

from .builder import BLOCK_AWARE_USES, USE_CONV_SCALED

__all__ = ["BLOCK_AWARE_ROLES", "FLOAT_ENCODINGS", "is_int8", "nnef_fallback", "nnef_problem",
           "q4_0_rows_ok"]


def nnef_problem(encoding: str | Encoding, shape: tuple[int, ...], *,
                 role: str | None = None, uses: Iterable[str] | None = None) -> str | None:
    """Why tract cannot take this tensor in this encoding, or None when it can.

    ``role`` is the model tree's tensor role; ``uses`` are the consumers the exporter saw in the
    graph (more precise when known).
    """
    if uses is None:
        return static_nnef_problem(encoding, shape, role=role)
    # The traced graph says exactly which operations read the weight: that beats the role.
    problem = static_nnef_problem(encoding, shape)
    if problem is not None or get_encoding(encoding).name != "Q4_0":
        return problem
    other = sorted(set(uses) - BLOCK_AWARE_USES)
    if USE_CONV_SCALED in other:
        return "tract 0.23 cannot fold a batch norm into a Q4_0 convolution filter"
    if other:
        return ("tract reads Q4_0 only in matmul, conv and gather; this tensor also "
                "feeds elementwise operations")
    return None


def nnef_fallback(encoding: str | Encoding, shape: tuple[int, ...], *, role: str | None = None,
                  uses: Iterable[str] | None = None) -> tuple[str, str] | None:
    """(encoding to use instead, reason) when NNEF cannot carry ``encoding``; None when it can.

    The fallback is F16 for quantized types (half the bytes of F32, error far below any 4-8 bit
    type's) and F32 for BF16, whose range f16 would clip.
    """
    problem = nnef_problem(encoding, shape, role=role, uses=uses)
    if problem is None:
        return None
    return nnef_float_fallback(encoding), problem
