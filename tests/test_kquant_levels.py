"""K-quant, IQ4, ternary and MXFP4 codecs beyond the golden vectors.

The golden file holds 8 rows of 512 values; the SIMD quantizers batch 8 or 16 groups per
vector and rows are processed in chunks of 16 super-blocks, so these tests use row lengths that
leave partial batches and cross chunk boundaries. Every level must write the scalar reference's
bytes (the reference is pinned to ggml by test_golden.py), and, where llama-cpp-python is
installed, ggml's own quantizer is asked directly.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from qtstudio import kernels

from .conftest import levels_under_test

TYPES = {
    "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ4_NL": 20, "IQ4_XS": 23,
    "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7,
}  # fmt: skip
LEVELS = levels_under_test()
# 1 super-block (partial lane batch), 3, 17 (crosses the 16-super-block chunk), 21.
ROW_LENGTHS = (256, 768, 256 * 17, 256 * 21)


def _inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, n)).astype(np.float32)
    x[0] *= 0.01
    x[1, : n // 3] = 0.0  # all-zero groups next to live ones in the same batch
    x[2] = rng.laplace(size=n) * np.where(rng.random(n) < 0.02, 40.0, 1.0)
    x[3] = np.round(x[3] * 3) / 4  # many exact ties in the level searches
    x[4] *= np.float32(1e-38)  # subnormal spans: scale reciprocals overflow
    x[5] *= np.float32(1e20)  # squared weights overflow to inf
    imatrix = (rng.random(n) ** 2 * 4 + 0.01).astype(np.float32)
    return x, imatrix


@pytest.mark.parametrize("n", ROW_LENGTHS)
@pytest.mark.parametrize("name", list(TYPES))
def test_every_level_writes_the_reference_bytes(name, n):
    tid = TYPES[name]
    x, imatrix = _inputs(n, seed=n + tid)
    for qw in (None, imatrix):
        want = kernels.quantize_rows(tid, x, imatrix=qw, isa="scalar", threads=1)
        for isa in LEVELS:
            got = kernels.quantize_rows(tid, x, imatrix=qw, isa=isa, threads=1)
            assert np.array_equal(got, want), f"{name} n={n} imatrix={qw is not None} [{isa}]"
            back = kernels.dequantize_rows(tid, got, n, isa=isa, threads=1)
            ref = kernels.dequantize_rows(tid, want, n, isa="scalar", threads=1)
            np.testing.assert_array_equal(back.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("name", list(TYPES))
def test_nonfinite_rows_agree_across_levels(name):
    """qtstudio.quantize refuses NaN/Inf unless asked; when allowed, every level still writes the
    reference's bytes (the SIMD searches fall back to ggml's rounding trick for such batches)."""
    tid = TYPES[name]
    x, imatrix = _inputs(768, seed=5 + tid)
    x[0, 5] = np.nan
    x[1, 300] = np.inf
    x[2, 17] = -np.inf
    x[3, ::50] = np.nan
    x[4, :2] = (np.nan, np.inf)
    for qw in (None, imatrix):
        want = kernels.quantize_rows(tid, x, imatrix=qw, isa="scalar", threads=1)
        for isa in LEVELS:
            got = kernels.quantize_rows(tid, x, imatrix=qw, isa=isa, threads=1)
            assert np.array_equal(got, want), f"{name} imatrix={qw is not None} [{isa}]"


@pytest.mark.parametrize("name", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"])
def test_threads_do_not_change_bytes(name):
    x, imatrix = _inputs(256 * 5, seed=3)
    x = np.tile(x, (6, 1))
    one = kernels.quantize_rows(TYPES[name], x, imatrix=imatrix, threads=1)
    two = kernels.quantize_rows(TYPES[name], x, imatrix=imatrix, threads=2)
    assert np.array_equal(one, two)


def _ggml_quantizer():
    llama_cpp = pytest.importorskip("llama_cpp")
    path = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so")
    if not os.path.exists(path):
        pytest.skip("llama-cpp-python ships no libggml-base.so here")
    lib = ctypes.CDLL(path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_void_p,
    ]  # fmt: skip

    def quantize(tid: int, x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
        rows, n = x.shape
        out = np.zeros((rows, kernels.row_bytes(tid, n)), np.uint8)
        lib.ggml_quantize_chunk(
            tid, x.ctypes.data, out.ctypes.data, 0, rows, n,
            None if qw is None else qw.ctypes.data,
        )  # fmt: skip
        return out

    return quantize


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TYPES))
def test_matches_ggml_on_random_rows(name):
    ggml = _ggml_quantizer()
    tid = TYPES[name]
    x, imatrix = _inputs(256 * 17, seed=11 + tid)
    x[1, 7] = np.nan  # ggml 0.25.3's handling of non-finite values is matched too
    x[3, 1000] = -np.inf
    for qw in (None, imatrix):
        want = ggml(tid, x, qw)
        got = kernels.quantize_rows(tid, x, imatrix=qw, threads=1)
        assert np.array_equal(got, want), f"{name} imatrix={qw is not None}"
