"""Integer tensors kept as they are: I8, I16, I32, I64 (position ids, index buffers).

They are never quantized; a plan gives an integer tensor the encoding named after its own dtype,
so its size counts at its real width and GGUF stores it with ggml's integer type of that width
(the bytes are copied, not converted). The codec methods exist for the jobs that decode every
planned tensor: values round to the nearest integer in range and decode to float32.
"""

from __future__ import annotations

import numpy as np

from .encoding_base import GGUF, SAFETENSORS, BlockParameters, Encoding

# ggml's type ids for plain integer tensors
_GGML_IDS = {"I8": 24, "I16": 25, "I32": 26, "I64": 27}
_DTYPES = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}


class IntegerStorage(Encoding):
    uses_imatrix = False
    export_formats = frozenset({GGUF, SAFETENSORS})

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_DTYPES[name])
        self.ggml_type = _GGML_IDS[name]
        self.block = BlockParameters(1, self.dtype.itemsize)
        self.description = f"{8 * self.dtype.itemsize}-bit integers, stored as they are"

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        return len(shape) >= 1 and all(d > 0 for d in shape)

    def quantize_rows(self, x: np.ndarray, *, imatrix: np.ndarray | None = None,
                      threads: int | None = None) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{self.name}: rows must be 2-D, got shape {x.shape}")
        info = np.iinfo(self.dtype)
        # float64 holds every value an I32 can take; I64 beyond 2**53 is not exact in floats
        q = np.clip(np.rint(x.astype(np.float64)), info.min, info.max).astype(self.dtype)
        return np.ascontiguousarray(q).view(np.uint8).reshape(x.shape[0], -1)

    def dequantize_rows(self, data: np.ndarray, n_per_row: int, *,
                        threads: int | None = None) -> np.ndarray:
        data = np.ascontiguousarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != n_per_row * self.dtype.itemsize:
            raise ValueError(f"{self.name}: rows of {n_per_row} values need "
                             f"{n_per_row * self.dtype.itemsize} bytes, got shape {data.shape}")
        return data.view(self.dtype).astype(np.float32).reshape(data.shape[0], n_per_row)


INTEGER_ENCODINGS = [IntegerStorage(n) for n in _GGML_IDS]
#: dtype names (as readers report them) that keep their own encoding in a plan
INTEGER_DTYPES = frozenset(_GGML_IDS)
