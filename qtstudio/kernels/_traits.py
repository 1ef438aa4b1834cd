"""qt_type_traits of native/include/qtnative.h as a ctypes structure (no library loaded here,
so tools that load a build of their own can use it too)."""

from __future__ import annotations

import ctypes
from ctypes import c_char_p, c_int32


class TypeTraits(ctypes.Structure):
    _fields_ = [
        ("type_id", c_int32),
        ("block_elems", c_int32),
        ("block_bytes", c_int32),
        ("uses_imatrix", c_int32),
        ("can_quantize", c_int32),
        ("can_dequantize", c_int32),
        ("name", c_char_p),
    ]
