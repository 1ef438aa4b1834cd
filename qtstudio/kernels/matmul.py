"""qmatmul: multiply float32 activations by a weight matrix that stays in its encoding.

``qmatmul_blocks(x, data, shape, ggml_type)`` (and ``qtstudio.qmatmul(x, w)`` on a QTensor)
computes ``x @ W.T`` without decoding the whole matrix: the C library decodes small tiles of
``W`` on the fly, split over threads by output rows.

Accuracy, per output value ``y[i, r]`` against the float64 product of ``x`` and the dequantized
weights ``W = dequantize(w)``:

* ``exact=True`` (and always for F32 / F16 weights): float32 products and sums only,
  ``|err| <= k * 2**-24 * sum_j |x[i, j] * W[r, j]|``.
* BF16 weights, ``exact=False`` (the default), one to three activation rows, on CPUs with
  AVX512_BF16: activations are rounded to bf16 (as ggml does) and bf16 pairs are multiplied
  exactly and summed in float32. Each activation moves by at most ``2**-9 |x|`` (values below
  ``2**-126`` become 0), so ``|err| <= 2**-9 * sum_j |x w| + 2**-126 * (sum_j |w| + k)`` plus the
  float32 rounding term above. Elsewhere (other CPUs, four or more rows) BF16 runs exact.
* ``exact=False`` (default for quantized encodings): activations are rounded to 8 bits with
  one scale per group of G values, G the block of the weight type's ggml vec_dot partner (as
  ggml rounds them): G = 32 for the 32-value block encodings (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
  IQ4_NL, MXFP4), G = 256 for the 256-value super-block ones (Q2_K .. Q6_K, IQ4_XS, TQ1_0,
  TQ2_0); see ``act_group``. Integer dot products then run per group. Each activation moves by
  at most ``max|x_group| / 254``, so ``|err| <= sum_groups max|x[i, group]| / 254 *
  sum_group |W[r, j]|`` plus the float32 rounding term above.

Threads: ``threads=None`` uses one per core. Workers come from a pool that lives as long as the
process; after a call they poll for the next one for up to 1 ms, so the back-to-back calls of an
inference loop do not pay thread start-up, and then sleep. ``QTSTUDIO_SPIN_US`` sets that window
in microseconds (0: sleep at once), read when the pool starts. Calls from several Python threads
at once are safe: the pool serves one of them and the others start threads of their own.
"""

from __future__ import annotations

import numpy as np

from . import _raw
from .api import NativeError, _check, _resolve_isa, _threads, native_type

EXACT_ALWAYS = frozenset({"F32", "F16"})
#: encodings whose fast path uses one activation scale per 256 values (32 for the others)
ACT_GROUP_256 = frozenset({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "TQ1_0", "TQ2_0"})


def act_group(encoding: str) -> int:
    """Values per activation scale of the fast path for weights in this encoding."""
    return 256 if encoding in ACT_GROUP_256 else 32


_FAST, _EXACT = 0, 1


def _check_x(x: object, k: int) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"qmatmul: x must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"qmatmul: x must be float32, got {x.dtype} "
                        "(convert with x.astype(np.float32))")
    if x.ndim != 2:
        raise ValueError(f"qmatmul: x must be 2-D [n, k], got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError("qmatmul: x must be C-contiguous (use np.ascontiguousarray(x))")
    if x.shape[1] != k:
        raise ValueError(f"qmatmul: x has {x.shape[1]} columns but the weight rows hold {k} "
                         f"values (x {x.shape}, w [m, k] needs x [n, {k}])")
    return x


def qmatmul_blocks(x: np.ndarray, data: np.ndarray, shape: tuple[int, int], ggml_type: int, *,
                   threads: int | None = None, exact: bool = False,
                   isa: str | None = None) -> np.ndarray:
    """``y[n, m] = x[n, k] @ W[m, k].T`` in float32, ``W`` given as its encoded rows.

    ``data`` holds the ``m`` rows of ``W`` in the ggml type ``ggml_type`` (uint8, one row of
    blocks per output). ``threads=None`` uses one thread per core; ``isa`` forces a dispatch
    level (tests). :func:`qtstudio.core.qtensor.qmatmul` is the QTensor-facing form.
    """
    if not isinstance(exact, bool):
        raise TypeError(f"qmatmul: exact must be True or False, got {exact!r}")
    if len(shape) != 2:
        raise ValueError(f"qmatmul: w must be 2-D [m, k], got shape {tuple(shape)}")
    nt = native_type(ggml_type)
    if nt is None or not nt.can_dequantize:
        raise ValueError(f"qmatmul: ggml type {ggml_type} is not one the native library decodes")
    m, k = (int(v) for v in shape)
    x = _check_x(x, k)
    mode = _EXACT if (exact or nt.name in EXACT_ALWAYS) else _FAST
    nthreads = _threads(threads)
    level = _resolve_isa(isa)
    data = np.ascontiguousarray(data)
    if data.dtype != np.uint8 or data.shape != (m, nt.block_bytes * (k // nt.block_elems)):
        raise NativeError(f"qmatmul: w's data does not match its shape {tuple(shape)} and "
                          f"{nt.name}")
    n = x.shape[0]
    y = np.empty((n, m), dtype=np.float32)
    _check(
        _raw.lib.qt_qmatmul(nt.type_id, x.ctypes.data, data.ctypes.data, y.ctypes.data, n, m, k,
                            mode, nthreads, level),
        f"qmatmul with {nt.name} weights",
    )
    return y
