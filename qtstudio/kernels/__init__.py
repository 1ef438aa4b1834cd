"""The native codec library, seen from Python (no Qt, no model knowledge)."""

from .api import (
    Isa,
    NativeError,
    NativeType,
    active_isa,
    aligned_empty,
    available_isas,
    cpu_features,
    dequantize_rows,
    find_nonfinite_row,
    native_type,
    native_types,
    quantize_rows,
    row_bytes,
    version,
)

__all__ = [
    "Isa",
    "NativeError",
    "NativeType",
    "active_isa",
    "aligned_empty",
    "available_isas",
    "cpu_features",
    "dequantize_rows",
    "find_nonfinite_row",
    "native_type",
    "native_types",
    "quantize_rows",
    "row_bytes",
    "version",
]
