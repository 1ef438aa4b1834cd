"""Raw ctypes signatures of qtnative.h. Nothing here checks arguments: see api.py."""

from __future__ import annotations

from ctypes import POINTER, c_char_p, c_float, c_int32, c_int64, c_size_t, c_uint32, c_void_p

from ._loader import load_library
from ._traits import TypeTraits

lib = load_library()

_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "qt_version": (c_char_p, []),
    "qt_cpu_features": (c_uint32, []),
    "qt_active_isa": (c_int32, []),
    "qt_isa_supported": (c_int32, [c_int32]),
    "qt_isa_env_error": (c_char_p, []),
    "qt_isa_name": (c_char_p, [c_int32]),
    "qt_type_get_traits": (c_int32, [c_int32, POINTER(TypeTraits)]),
    "qt_row_size": (c_size_t, [c_int32, c_int64]),
    "qt_quantize": (
        c_int32,
        [c_int32, POINTER(c_float), c_void_p, c_int64, c_int64, POINTER(c_float), c_int32, c_int32],
    ),
    "qt_dequantize": (
        c_int32,
        [c_int32, c_void_p, POINTER(c_float), c_int64, c_int64, c_int32, c_int32],
    ),
    "qt_find_nonfinite": (c_int32, [POINTER(c_float), c_int64, c_int64, POINTER(c_int64)]),
    # qmatmul
    # x and y as addresses: a GEMV call is short enough that building two ctypes pointers
    # showed in its time (qtstudio/kernels/matmul.py checks both arrays first)
    "qt_qmatmul": (
        c_int32,
        [c_int32, c_void_p, c_void_p, c_void_p, c_int64, c_int64, c_int64, c_int32, c_int32,
         c_int32],
    ),
}

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
