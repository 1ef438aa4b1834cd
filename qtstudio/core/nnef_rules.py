"""What an NNEF file for tract can carry, judged from a tensor's shape and role alone.

The plan resolver uses these rules so that a plan made for NNEF shows every change up front; the
NNEF exporter adds the checks that need the traced graph (which operations consume a weight).
"""

from __future__ import annotations

from .encodings import Encoding, get_encoding

#: tensor roles (qtstudio.core.roles) whose weights feed a block-aware tract kernel
BLOCK_AWARE_ROLES = frozenset({"linear", "embedding", "conv"})
FLOAT_ENCODINGS = frozenset({"F32", "F16"})


def is_int8(enc: Encoding) -> bool:
    return enc.name.startswith("INT8_")


def q4_0_rows_ok(shape: tuple[int, ...]) -> bool:
    """tract blocks run along the flattened row: every dim after the first."""
    if len(shape) < 2 or shape[0] <= 0:
        return False
    row = 1
    for d in shape[1:]:
        row *= int(d)
    return row > 0 and row % 32 == 0


def static_nnef_problem(encoding: str | Encoding, shape: tuple[int, ...], *,
                        role: str | None = None) -> str | None:
    """Why tract cannot take this tensor in this encoding, or None when it can."""
    enc = get_encoding(encoding)
    if enc.name in FLOAT_ENCODINGS or is_int8(enc):
        return None
    if enc.name == "Q4_0":
        if not q4_0_rows_ok(tuple(shape)):
            return (f"tract Q4_0 needs rank >= 2 and rows (dims after the first) holding a "
                    f"multiple of 32 values; shape {tuple(shape)}")
        if role is not None and role not in BLOCK_AWARE_ROLES:
            return f"tract reads Q4_0 only for linear, conv and embedding weights, not {role}"
        return None
    return f"tract NNEF cannot store {enc.name}"


def nnef_float_fallback(encoding: str | Encoding) -> str:
    """F16 for quantized types (half of F32's bytes, error far below any 4-8 bit type's);
    F32 for BF16, whose range F16 would clip."""
    return "F32" if get_encoding(encoding).name == "BF16" else "F16"
