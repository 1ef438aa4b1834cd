"""Numpy-facing wrappers over the native library.

Every size, dtype and layout is checked here before a pointer reaches C, and C status codes
become Python exceptions with a sentence a user can act on.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import DTypeLike

from . import _raw
from ._raw import TypeTraits, lib


class Isa(IntEnum):
    SCALAR = 0
    AVX2 = 1
    AVX512 = 2
    NEON = 3


class NativeError(RuntimeError):
    """The native library reported a failure that argument checks could not foresee."""


_STATUS_TEXT = {
    1: "invalid argument",
    2: "unsupported encoding",
    3: "row length is not a multiple of the block size",
    4: "the requested instruction set is not available on this CPU",
    5: "non-finite value",
    6: "out of memory",
    7: "could not start a worker thread",
}

_CPU_FLAGS = (
    "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512vnni", "avx512bf16", "avxvnni", "neon", "neon-dotprod",
)  # fmt: skip


def _check(status: int, what: str) -> None:
    if status != 0:
        raise NativeError(f"{what}: {_STATUS_TEXT.get(status, f'status {status}')}")


@dataclass(frozen=True)
class NativeType:
    """What the native library knows about one ggml type id."""

    type_id: int
    name: str
    block_elems: int
    block_bytes: int
    uses_imatrix: bool
    can_quantize: bool
    can_dequantize: bool


def version() -> str:
    return _raw.lib.qt_version().decode()


def cpu_features() -> list[str]:
    bits = lib.qt_cpu_features()
    return [name for i, name in enumerate(_CPU_FLAGS) if bits & (1 << i)]


def _env_error() -> None:
    bad = lib.qt_isa_env_error()
    if bad is not None:
        levels = ", ".join(i.name.lower() for i in available_isas())
        raise NativeError(
            f"QTSTUDIO_ISA={bad.decode(errors='replace')!r} cannot run on this CPU or is not a "
            f"known level; available here: {levels}"
        )


def active_isa() -> Isa:
    _env_error()
    return Isa(lib.qt_active_isa())


def available_isas() -> list[Isa]:
    return [lvl for lvl in Isa if lib.qt_isa_supported(int(lvl)) == 0]


def _resolve_isa(isa: Isa | str | None) -> int:
    if isa is None:
        _env_error()
        return -1
    if isinstance(isa, str):
        try:
            isa = Isa[isa.upper()]
        except KeyError:
            raise ValueError(
                f"unknown ISA level {isa!r}; expected one of scalar, avx2, avx512, neon"
            ) from None
    if lib.qt_isa_supported(int(isa)) != 0:
        raise ValueError(f"ISA level {isa.name.lower()} is not available on this CPU")
    return int(isa)


@functools.cache  # constant for the process; qmatmul looks it up on every call
def native_type(type_id: int) -> NativeType | None:
    t = TypeTraits()
    if lib.qt_type_get_traits(int(type_id), ctypes.byref(t)) != 0:
        return None
    return NativeType(
        type_id=t.type_id,
        name=t.name.decode(),
        block_elems=t.block_elems,
        block_bytes=t.block_bytes,
        uses_imatrix=bool(t.uses_imatrix),
        can_quantize=bool(t.can_quantize),
        can_dequantize=bool(t.can_dequantize),
    )


def native_types() -> list[NativeType]:
    found = (native_type(i) for i in range(64))
    return [t for t in found if t is not None]


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def _require_type(type_id: int, *, quantize: bool) -> NativeType:
    t = native_type(type_id)
    if t is None or not (t.can_quantize if quantize else t.can_dequantize):
        raise ValueError(f"the native library cannot {'quantize' if quantize else 'decode'} "
                         f"ggml type {type_id}")
    return t


def row_bytes(type_id: int, n_per_row: int) -> int:
    t = native_type(type_id)
    if t is None:
        raise ValueError(f"unknown ggml type {type_id}")
    if n_per_row % t.block_elems:
        raise ValueError(
            f"{t.name} needs rows whose length is a multiple of {t.block_elems}, got {n_per_row}"
        )
    return n_per_row // t.block_elems * t.block_bytes


def _float_matrix(x: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{what} must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, values), got shape {x.shape}")
    return np.ascontiguousarray(x)


def _fptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


ALIGNMENT = 64  # bytes: one cache line, one AVX-512 register


def aligned_empty(shape: tuple[int, ...], dtype: DTypeLike = np.uint8) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary.

    numpy only promises 16 bytes; kernels that load whole cache lines (qmatmul's BF16 GEMV)
    run 1.2-1.6x slower when every load straddles two lines."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + nbytes].view(dt).reshape(shape)


def find_nonfinite_row(x: np.ndarray) -> int | None:
    """Index of the first row holding NaN or Inf, or None."""
    x = _float_matrix(x, "x")
    bad = ctypes.c_int64(-1)
    _check(lib.qt_find_nonfinite(_fptr(x), x.shape[0], x.shape[1], ctypes.byref(bad)),
           "non-finite scan")
    return None if bad.value < 0 else int(bad.value)


def column_weights(imatrix: np.ndarray, n_per_row: int, dtype: DTypeLike) -> np.ndarray:
    """An importance vector as a contiguous ``dtype`` array, refused unless it holds one finite,
    non-negative weight per column."""
    w = np.ascontiguousarray(imatrix, dtype=dtype)
    if w.shape != (n_per_row,):
        raise ValueError(f"imatrix must hold one weight per column ({n_per_row}), got shape "
                         f"{w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("imatrix weights must be finite and non-negative")
    return w


def quantize_rows(
    type_id: int,
    x: np.ndarray,
    *,
    imatrix: np.ndarray | None = None,
    threads: int | None = None,
    isa: Isa | str | None = None,
) -> np.ndarray:
    """Quantize each row of a float32 matrix; returns uint8 [rows, row_bytes]."""
    t = _require_type(type_id, quantize=True)
    x = _float_matrix(x, "x")
    rows, n = x.shape
    nb = row_bytes(type_id, n)
    qw_ptr = None
    if imatrix is not None:
        qw = column_weights(imatrix, n, np.float32)
        if t.uses_imatrix:
            qw_ptr = _fptr(qw)
    level = _resolve_isa(isa)
    out = aligned_empty((rows, nb), np.uint8)
    _check(
        lib.qt_quantize(type_id, _fptr(x), out.ctypes.data, rows, n, qw_ptr, _threads(threads),
                        level),
        f"quantize to {t.name}",
    )
    return out


def dequantize_rows(
    type_id: int,
    data: np.ndarray,
    n_per_row: int,
    *,
    threads: int | None = None,
    isa: Isa | str | None = None,
) -> np.ndarray:
    """Decode uint8 [rows, row_bytes] back to float32 [rows, n_per_row]."""
    t = _require_type(type_id, quantize=False)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2:
        raise TypeError(f"data must be a 2-D uint8 array, got {data.dtype} {data.shape}")
    nb = row_bytes(type_id, n_per_row)
    if data.shape[1] != nb:
        raise ValueError(
            f"{t.name} rows of {n_per_row} values take {nb} bytes, got rows of {data.shape[1]}"
        )
    data = np.ascontiguousarray(data)
    rows = data.shape[0]
    level = _resolve_isa(isa)
    out = aligned_empty((rows, n_per_row), np.float32)
    _check(
        lib.qt_dequantize(type_id, data.ctypes.data, _fptr(out), rows, n_per_row,
                          _threads(threads), level),
        f"decode {t.name}",
    )
    return out
