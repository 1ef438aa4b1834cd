"""qmatmul against a float64 product of x and the weights as the gguf package decodes them.

Bounds (stated in qtstudio/kernels/matmul.py):
- exact path: float32 summation only, |err| <= (k + 2) * 2^-24 * sum|x w|;
- fast path: 8-bit activations per group of 32 values (256 for the K-quants, IQ4_XS, TQ*),
  |err| <= sum_g max|x_g| / 254 * sum_g |w| plus the float32 term.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qtstudio as qs
from qtstudio import kernels
from qtstudio.kernels import _raw
from qtstudio.kernels.matmul import act_group

from .conftest import levels_under_test

QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4", "Q2_K", "Q3_K", "Q4_K",
             "Q5_K", "Q6_K", "IQ4_XS", "TQ1_0", "TQ2_0"]
FLOATS = ["F32", "F16", "BF16"]
ISAS = levels_under_test()
U = 2.0**-24


def _oracle_weights(w: qs.QTensor) -> np.ndarray:
    """The weights as the gguf package (an independent decoder) reads them, in float64."""
    qtype = gguf.GGMLQuantizationType(w.encoding.ggml_type)
    if w.encoding.name == "F32":
        dec = w.data.view(np.float32)
    elif w.encoding.name == "F16":
        dec = w.data.view(np.float16)
    else:
        dec = gguf.quants.dequantize(w.data, qtype)
    return np.asarray(dec, dtype=np.float64).reshape(w.shape)


def _exact_bound(x: np.ndarray, wd: np.ndarray) -> np.ndarray:
    k = x.shape[1]
    return (k + 2) * U * (np.abs(x.astype(np.float64)) @ np.abs(wd).T) + 1e-35


def _fast_bound(x: np.ndarray, wd: np.ndarray, enc: str) -> np.ndarray:
    n, k = x.shape
    g = act_group(enc)
    amax = np.abs(x.astype(np.float64)).reshape(n, k // g, g).max(axis=2)
    wsum = np.abs(wd).reshape(wd.shape[0], k // g, g).sum(axis=2)
    return 1.0001 * (amax / 254.0) @ wsum.T + 4 * _exact_bound(x, wd)


def _bf16_bound(x: np.ndarray, wd: np.ndarray) -> np.ndarray:
    """BF16 weights, fast GEMV: activations rounded to bf16 (see qtstudio/kernels/matmul.py)."""
    k = x.shape[1]
    ax = np.abs(x.astype(np.float64))
    return (1.0001 * 2.0**-9 * (ax @ np.abs(wd).T) + 2.0**-126 * (np.abs(wd).sum(axis=1) + k)
            + 4 * _exact_bound(x, wd))


def _round_bf16(x: np.ndarray) -> np.ndarray:
    """x rounded to bf16 (nearest, ties to even; below 2^-126 to zero), in float64."""
    x = np.where(np.abs(x) < 2.0**-126, np.float32(0), x).astype(np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def _bf16_acts(isa: str, n: int) -> bool:
    """Whether qmatmul(exact=False) on BF16 weights rounds activations at this level."""
    return isa == "avx512" and "avx512bf16" in kernels.cpu_features() and n < 4


def _weights(enc: str, m: int, k: int, seed: int) -> qs.QTensor:
    rng = np.random.default_rng(seed)
    return qs.quantize(rng.standard_normal((m, k)).astype(np.float32), enc)


@pytest.mark.parametrize("enc", QUANTIZED + FLOATS)
@pytest.mark.parametrize("n", [1, 3, 13])
def test_matches_float64_reference(enc: str, n: int) -> None:
    # m not a multiple of the 16-row tile, k spanning several decode chunks with a ragged tail
    m, k = 37, 2304
    w = _weights(enc, m, k, seed=n)
    wd = _oracle_weights(w)
    x = np.random.default_rng(100 + n).standard_normal((n, k)).astype(np.float32)
    ref = x.astype(np.float64) @ wd.T
    for isa in ISAS:
        y = qs.qmatmul(x, w, exact=True, isa=isa)
        assert y.shape == (n, m) and y.dtype == np.float32
        assert np.all(np.abs(y - ref) <= _exact_bound(x, wd)), (enc, isa, "exact")
        y = qs.qmatmul(x, w, isa=isa)
        rounded = enc == "BF16" and _bf16_acts(isa, n)
        if rounded:
            bound = _bf16_bound(x, wd)
        else:
            bound = _exact_bound(x, wd) if enc in FLOATS else _fast_bound(x, wd, enc)
        err = np.abs(y - ref)
        assert np.all(err <= bound), (enc, isa, "fast", float((err / bound).max()))
        if enc not in FLOATS:
            # the 8-bit activation error is real, not hidden by a loose bound
            assert err.max() > _exact_bound(x, wd).max()
        if rounded:
            # what ran is the product of the bf16-rounded activations, to float32 rounding
            xb = _round_bf16(x)
            assert np.all(np.abs(y - xb @ wd.T) <= _exact_bound(xb.astype(np.float32), wd))
            assert np.abs(y - ref).max() > 10 * np.abs(y - xb @ wd.T).max()


@pytest.mark.parametrize("enc", FLOATS)
@pytest.mark.parametrize("k", [8224, 8208])
def test_float_gemv_beyond_l1(enc: str, k: int) -> None:
    # x larger than L1 takes the four-rows-at-a-time GEMV (k % 32 == 0), else one row at a time;
    # m = 7 leaves a ragged tail of rows after the four-row blocks
    m = 7
    w = _weights(enc, m, k, seed=k)
    wd = _oracle_weights(w)
    x = np.random.default_rng(k).standard_normal((2, k)).astype(np.float32)
    ref = x.astype(np.float64) @ wd.T
    for isa in ISAS:
        for n in (1, 2):
            y = qs.qmatmul(x[:n], w, isa=isa, exact=True)
            assert np.all(np.abs(y - ref[:n]) <= _exact_bound(x[:n], wd)), (enc, isa, n)


@pytest.mark.parametrize("enc", FLOATS)
@pytest.mark.parametrize("k", [4096, 8224, 8256])
def test_float_gemv_on_weights_off_the_cache_line(enc: str, k: int) -> None:
    # quantize() hands out 64-byte aligned rows, which F16/BF16 GEMV reads with kernels of its
    # own once x outgrows L1 (k > 8192); the same weights 16 bytes off (numpy's own alignment,
    # as a user's buffer may be) take the plain kernels: both within the bound, for one row and
    # a ragged tail of rows
    w = _weights(enc, 7, k, seed=k + 1)
    assert w.data.ctypes.data % 64 == 0
    buf = np.zeros(w.data.nbytes + 64 + 16, dtype=np.uint8)
    start = (-buf.ctypes.data) % 64 + 16
    off = buf[start:start + w.data.nbytes].reshape(w.data.shape)
    off[...] = w.data
    w_off = qs.QTensor(off, w.shape, enc)
    wd = _oracle_weights(w)
    x = np.random.default_rng(k).standard_normal((3, k)).astype(np.float32)
    ref = x.astype(np.float64) @ wd.T
    for isa in ISAS:
        for n in (1, 3):
            for ww in (w, w_off):
                y = qs.qmatmul(x[:n], ww, isa=isa, exact=True)
                assert np.all(np.abs(y - ref[:n]) <= _exact_bound(x[:n], wd)), (enc, isa, n)


@pytest.mark.parametrize("k", [16, 48, 4096, 4112, 8224, 14336])
def test_bf16_gemv_with_bf16_activations(k: int) -> None:
    # BF16 weights in fast mode: activations rounded to bf16 where the CPU multiplies bf16 pairs
    # (whole 64-value steps, then a masked tail), within the stated bound; exact elsewhere.
    # Small and huge activations too: rounding is relative, tiny ones flush to zero
    w = _weights("BF16", 9, k, seed=k + 2)
    wd = _oracle_weights(w)
    rng = np.random.default_rng(k)
    x = rng.standard_normal((3, k)).astype(np.float32)
    x[1] *= np.float32(1e30)
    x[2, ::3] = np.float32(1e-39)
    ref = x.astype(np.float64) @ wd.T
    for isa in ISAS:
        for n in (1, 2, 3):
            y = qs.qmatmul(x[:n], w, isa=isa)
            bound = _bf16_bound(x[:n], wd) if _bf16_acts(isa, n) else _exact_bound(x[:n], wd)
            assert np.all(np.abs(y - ref[:n]) <= bound), (isa, n)
            # threads split rows only: bit-identical
            np.testing.assert_array_equal(y, qs.qmatmul(x[:n], w, isa=isa, threads=1))
    # four rows or more run exact
    x4 = np.concatenate([x, x[:1]])
    assert np.all(np.abs(qs.qmatmul(x4, w) - x4.astype(np.float64) @ wd.T)
                  <= _exact_bound(x4, wd))


LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4"]


@pytest.mark.parametrize("enc", LEGACY)
@pytest.mark.parametrize("nblocks", [8, 21, 75])
def test_legacy_gemv_on_random_blocks(enc: str, nblocks: int) -> None:
    # The fused GEMV of the 32-value block encodings takes eight blocks at a time (their scales
    # and minimums converted together, the value shifts and minimums summed apart from the
    # products) and the blocks past the last whole eight one by one: random value bytes and
    # random scales (negative, subnormal; for MXFP4 exponents up to 100, with 0 and 1, whose
    # scales are float32 subnormals, met by activations near 1e30) through both parts, at every
    # level
    e = qs.get_encoding(enc)
    k, m = 32 * nblocks, 23
    bs = e.row_bytes(32)
    rng = np.random.default_rng(nblocks)
    data = rng.integers(0, 256, size=(m, nblocks, bs), dtype=np.uint8)
    if enc == "MXFP4":
        e8 = rng.integers(0, 101, size=(m, nblocks), dtype=np.uint8)
        e8[:, :4] = [0, 1, 2, 100]
        e8[:3] = rng.integers(0, 2, size=(3, nblocks))  # rows of subnormal scales only
        data[:, :, 0] = e8
    else:
        nhalf = 2 if enc in ("Q4_1", "Q5_1") else 1  # the scale, then the minimum
        h = rng.standard_normal((m, nblocks, nhalf)) * 2.0 ** rng.integers(-20, 3, (m, nblocks, 1))
        data[:, :, :2 * nhalf] = h.astype(np.float16).view(np.uint8).reshape(m, nblocks, 2 * nhalf)
    w = qs.QTensor(np.ascontiguousarray(data.reshape(m, nblocks * bs)), (m, k), enc)
    wd = _oracle_weights(w)
    assert np.all(np.isfinite(wd))
    x = (rng.standard_normal((2, k)) * (1e30 if enc == "MXFP4" else 1.0)).astype(np.float32)
    ref = x.astype(np.float64) @ wd.T
    bound = _fast_bound(x, wd, enc)
    for isa in ISAS:
        for n in (1, 2):
            err = np.abs(qs.qmatmul(x[:n], w, isa=isa) - ref[:n])
            assert np.all(err <= bound[:n]), (isa, n, float((err / bound[:n]).max()))
    # value bytes that decode to zero under those same scales: the product is exactly zero (a
    # kernel that feeds shifted values to its integer dot takes the shift off exactly)
    zero_values = {"Q4_0": (2, 0x88), "Q5_0": (2, 0xFF, 6, 0x00), "MXFP4": (1, 0x00),
                   "Q8_0": (2, 0x00)}
    if enc in zero_values:
        spec = zero_values[enc]
        for start, end, byte in zip(spec[::2], (*spec[2::2], bs), spec[1::2], strict=True):
            data[:, :, start:end] = byte
        wz = qs.QTensor(np.ascontiguousarray(data.reshape(m, nblocks * bs)), (m, k), enc)
        assert not _oracle_weights(wz).any()
        for isa in ISAS:
            assert not qs.qmatmul(x[:1], wz, isa=isa).any(), isa


@pytest.mark.parametrize("enc", ["Q4_0", "Q4_K", "Q6_K", "TQ1_0", "TQ2_0", "F16"])
def test_threads_and_levels_agree(enc: str) -> None:
    w = _weights(enc, 70, 512, seed=3)
    x = np.random.default_rng(4).standard_normal((9, 512)).astype(np.float32)
    for isa in ISAS:
        one = qs.qmatmul(x, w, threads=1, isa=isa)
        # rows are independent, so the thread split cannot change a single bit
        np.testing.assert_array_equal(one, qs.qmatmul(x, w, threads=2, isa=isa))
        np.testing.assert_array_equal(one, qs.qmatmul(x, w, threads=7, isa=isa))
    # the GEMV and GEMM kernels compute the same rows
    y_rows = np.concatenate([qs.qmatmul(x[i:i + 1], w) for i in range(9)])
    # (same 8-bit activations; only the float summation order differs)
    assert np.all(np.abs(y_rows - qs.qmatmul(x, w)) <= 4 * _exact_bound(x, _oracle_weights(w)))


@pytest.mark.parametrize("n", [1, 2, 8])
def test_worker_threads_agree_with_one_thread(n: int) -> None:
    # large enough (>= 1M multiply-adds per thread) that the worker pool really runs
    w = _weights("Q4_K", 256, 4096, seed=7)
    x = np.random.default_rng(8).standard_normal((n, 4096)).astype(np.float32)
    one = qs.qmatmul(x, w, threads=1)
    for threads in (2, 3, 2):
        np.testing.assert_array_equal(one, qs.qmatmul(x, w, threads=threads))
    np.testing.assert_array_equal(qs.qmatmul(x, w, threads=1, exact=True),
                                  qs.qmatmul(x, w, threads=2, exact=True))


@pytest.mark.parametrize(("enc", "k"), [("Q4_0", 4096), ("BF16", 4096), ("BF16", 8224),
                                        ("F16", 8224)])
def test_gemv_row_shares_and_claims_cover_every_row(enc: str, k: int) -> None:
    # n = 1 with 4M multiply-adds: up to 4 workers, each streaming its own share of 1001 rows in
    # claims (1001 is no multiple of the claim or tile size) and taking the others' leftovers
    # from the back; repeated so that different interleavings of the claims are seen. At
    # k > 8192 float rows go four at a time through a kernel that sums in another order than
    # the one-row kernel: the groups must not move with the split
    w = _weights(enc, 1001, k, seed=11)
    x = np.random.default_rng(12).standard_normal((1, k)).astype(np.float32)
    one = qs.qmatmul(x, w, threads=1)
    for _ in range(10):
        for threads in (2, 3, 4):
            np.testing.assert_array_equal(one, qs.qmatmul(x, w, threads=threads))


def test_callers_on_several_threads_share_the_pool() -> None:
    # one caller's job holds the worker pool; the others run on threads of their own: every
    # result must still be the one-thread answer
    w = _weights("Q4_K", 1001, 4096, seed=21)
    xs = [np.random.default_rng(30 + i).standard_normal((n, 4096)).astype(np.float32)
          for i, n in enumerate((1, 1, 6, 2))]
    want = [qs.qmatmul(x, w, threads=1) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda x: qs.qmatmul(x, w, threads=3), xs))
            for g, ref in zip(got, want, strict=True):
                np.testing.assert_array_equal(ref, g)


@pytest.mark.parametrize("spin_us", ["0", "50"])
def test_pool_workers_that_sleep_between_calls_wake_for_the_next(spin_us: str) -> None:
    # QTSTUDIO_SPIN_US=0: every call finds the workers asleep on the condition variable; 50 us:
    # some calls catch them spinning, some asleep. A lost wake-up would hang (the timeout
    # fails it), a lost row would change the answer.
    code = """
import numpy as np, qtstudio as qs, time
w = qs.quantize(np.random.default_rng(1).standard_normal((700, 4096)).astype(np.float32), "Q4_0")
x = np.random.default_rng(2).standard_normal((2, 4096)).astype(np.float32)
want = [qs.qmatmul(x[:1], w, threads=1), qs.qmatmul(x, w, threads=1)]
for i in range(200):
    if i % 3 == 0:
        time.sleep(0.0002)
    rows = 1 + i % 2
    assert np.array_equal(want[rows - 1], qs.qmatmul(x[:rows], w, threads=2 + i % 3)), i
"""
    env = {**os.environ, "QTSTUDIO_SPIN_US": spin_us}
    proc = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_working_pool() -> None:
    # the parent's pool workers do not exist in a forked child: the child must neither wait for
    # them nor lose rows they would have done
    w = _weights("Q8_0", 512, 4096, seed=22)
    x = np.random.default_rng(23).standard_normal((1, 4096)).astype(np.float32)
    want = qs.qmatmul(x, w, threads=2)  # the parent's pool is up now
    code = """
import os, sys, numpy as np
import qtstudio as qs
w = qs.QTensor(np.load(sys.argv[1]), (512, 4096), "Q8_0")
x = np.load(sys.argv[2])
y = qs.qmatmul(x, w, threads=2)
pid = os.fork()
if pid == 0:
    ok = all(np.array_equal(y, qs.qmatmul(x, w, threads=2)) for _ in range(3))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
np.save(sys.argv[3], y)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f for f in ("w.npy", "x.npy", "y.npy")]
        np.save(paths[0], w.data)
        np.save(paths[1], x)
        # a fresh interpreter: forking pytest's own process (threads of its own) is not safe
        proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], timeout=60,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(want, np.load(paths[2]))


def test_agrees_with_torch_linear() -> None:
    torch = pytest.importorskip("torch")
    w = _weights("Q8_0", 64, 1024, seed=5)
    x = np.random.default_rng(6).standard_normal((32, 1024)).astype(np.float32)
    want = torch.nn.functional.linear(torch.from_numpy(x),
                                      torch.from_numpy(qs.dequantize(w))).numpy()
    np.testing.assert_allclose(qs.qmatmul(x, w, exact=True), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("enc", ["Q4_K", "Q8_0", "BF16"])
def test_gemm_over_more_activation_rows_than_one_pass(enc: str) -> None:
    # activations are quantized 1024 rows per pass over the weights: 1030 rows take two passes,
    # the second with 6 rows; every row within the bound of its own reference, both paths
    k = 256
    w = _weights(enc, 20, k, seed=41)
    wd = _oracle_weights(w)
    x = np.random.default_rng(42).standard_normal((1030, k)).astype(np.float32)
    ref = x.astype(np.float64) @ wd.T
    y = qs.qmatmul(x, w, threads=2)
    fast = _exact_bound(x, wd) if enc == "BF16" else _fast_bound(x, wd, enc)
    assert np.all(np.abs(y - ref) <= fast)
    assert np.all(np.abs(qs.qmatmul(x, w, exact=True) - ref) <= _exact_bound(x, wd))
    # rows do not see each other: the last pass equals those rows on their own
    np.testing.assert_array_equal(y[1024:], qs.qmatmul(x[1024:], w, threads=2))


def test_zero_sized() -> None:
    w = _weights("Q4_0", 16, 64, seed=1)
    assert qs.qmatmul(np.zeros((0, 64), np.float32), w).shape == (0, 16)


@pytest.fixture
def no_c_call(monkeypatch):
    def boom(*args):
        raise AssertionError("the C library was called with bad arguments")
    monkeypatch.setattr(_raw.lib, "qt_qmatmul", boom)


def test_bad_input_is_rejected_before_c(no_c_call) -> None:
    w = _weights("Q4_0", 16, 64, seed=1)
    x = np.ones((2, 64), np.float32)
    with pytest.raises(TypeError, match="float32"):
        qs.qmatmul(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="C-contiguous"):
        qs.qmatmul(np.ones((64, 2), np.float32).T, w)
    with pytest.raises(ValueError, match="columns"):
        qs.qmatmul(np.ones((2, 32), np.float32), w)
    with pytest.raises(ValueError, match="2-D"):
        qs.qmatmul(np.ones(64, np.float32), w)
    with pytest.raises(TypeError, match="QTensor"):
        qs.qmatmul(x, np.ones((16, 64), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        qs.qmatmul(x, qs.quantize(np.ones((2, 8, 64), np.float32), "Q4_0"))
    with pytest.raises(ValueError, match="threads"):
        qs.qmatmul(x, w, threads=0)
    with pytest.raises(TypeError, match="exact"):
        qs.qmatmul(x, w, exact="yes")
    with pytest.raises(ValueError, match="ISA"):
        qs.qmatmul(x, w, isa="bogus")


@settings(max_examples=60, deadline=None)
@given(enc=st.sampled_from(QUANTIZED), m=st.integers(1, 20), nblocks=st.integers(1, 3),
       n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_random_weight_bytes_never_crash(enc: str, m: int, nblocks: int, n: int,
                                         seed: int) -> None:
    e = qs.get_encoding(enc)
    k = e.elements_per_block * nblocks
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(m, e.row_bytes(k)), dtype=np.uint8)
    w = qs.QTensor(data, (m, k), enc)
    x = rng.standard_normal((n, k)).astype(np.float32)
    with np.errstate(all="ignore"):
        wd = _oracle_weights(w)
        ref = x.astype(np.float64) @ wd.T
        bound = _fast_bound(x, wd, enc)
    for exact in (False, True):
        with np.errstate(all="ignore"):
            y = qs.qmatmul(x, w, exact=exact)
        assert y.shape == (n, m)
        # where the weights are tame the answer is still right
        tame = np.isfinite(bound) & (bound < 1e30)
        assert np.all(np.abs(y - ref)[tame] <= bound[tame])


@pytest.mark.parametrize("enc", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "TQ1_0",
                                 "TQ2_0"])
def test_super_block_types_round_activations_as_ggml(enc: str) -> None:
    # The fast path of the 256-value types rounds activations as llama.cpp's Q8_K does (one
    # scale per 256 values), modelled independently by qtstudio.calib.weights: what remains is
    # float32 summation, plus a value that lands on the other side of a .5 now and then (the
    # two compute 1/d in different ways), each moving y by one step d * |w|.
    import torch

    from qtstudio.calib.weights import activation_rounding, round_activations

    assert activation_rounding(enc) == "q8_256" and act_group(enc) == 256
    m, k, n = 37, 2304, 3
    w = _weights(enc, m, k, seed=7)
    wd = _oracle_weights(w)
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((n, k)) * np.exp(rng.standard_normal((n, k)))).astype(np.float32)
    xr = round_activations(torch.from_numpy(x), "q8_256").numpy().astype(np.float64)
    ref = xr @ wd.T
    d = np.abs(x.astype(np.float64)).reshape(n, k // 256, 256).max(axis=2) / 127.0
    step = 2 * d.max(axis=1, keepdims=True) * np.abs(wd).max(axis=1)
    ggml_bound = 8 * _exact_bound(x, wd) + step
    coarse = np.abs(x.astype(np.float64) @ wd.T - ref).max()
    for isa in ISAS:
        err = np.abs(qs.qmatmul(x, w, isa=isa) - ref)
        assert np.all(err <= ggml_bound), (enc, isa, float((err / ggml_bound).max()))
        # far tighter than the activation rounding itself: the grouping really is ggml's
        assert err.max() < coarse / 20, (enc, isa)
