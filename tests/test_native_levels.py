"""Every ISA level of the native library against the scalar reference and independent oracles.

test_golden.py pins each level to ggml's vectors for a handful of shapes; here the shapes,
thread counts and inputs are random, the float types are checked against numpy's own
conversions, the legacy block types against the gguf package's numpy codecs, random bytes go
into every decoder, and QTSTUDIO_ISA is exercised end to end through the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtstudio import kernels

from .conftest import levels_under_test

LEVELS = levels_under_test()
SIMD_LEVELS = [lvl for lvl in LEVELS if lvl != "scalar"]
DECODABLE = [t for t in kernels.native_types() if t.can_dequantize]
QUANTIZABLE = [t for t in kernels.native_types() if t.can_quantize]
LEGACY = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")


def _same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical, except that any NaN matches any NaN (payloads of NaN*NaN may differ)."""
    same_bits = a.view(np.uint32) == b.view(np.uint32)
    return bool(np.all(same_bits | (np.isnan(a) & np.isnan(b))))


def _inputs(rng: np.random.Generator, rows: int, n: int, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal((rows, n), dtype=np.float32)
    if kind == "ties":
        # Half-integers with block maxima 8/16/127 put x*id exactly on .5 boundaries.
        x = (rng.integers(-16, 17, (rows, n)) * 0.5).astype(np.float32)
        maxima = np.array([8.0, -16.0, 127.0], np.float32)
        x[:, ::32] = rng.choice(maxima, x[:, ::32].shape)
        return x
    if kind == "zeros":
        x = np.where(rng.random((rows, n)) < 0.5, np.float32(-0.0), np.float32(0.0))
        x[:, 3::7] = rng.standard_normal(x[:, 3::7].shape) * 1e-3
        x[:, : min(n, 64)] = 0.0
        return x.astype(np.float32)
    if kind == "tiny":
        bits = rng.integers(0, 0x01000000, (rows, n), dtype=np.uint32)
        return (bits.view(np.float32) * rng.choice(np.array([-1, 1], np.float32), (rows, n)))
    # huge: ranges overflow to Inf inside the block arithmetic
    return (rng.uniform(-3.4e38, 3.4e38, (rows, n))).astype(np.float32)


# ------------------------------------------------------------------ random bytes never crash


@pytest.mark.parametrize("ntype", DECODABLE, ids=lambda t: t.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_bytes_decode_without_crashing(ntype, data):
    blocks = data.draw(st.integers(1, 12), label="blocks per row")
    rows = data.draw(st.integers(1, 4), label="rows")
    nb = blocks * ntype.block_bytes
    raw = data.draw(st.binary(min_size=rows * nb, max_size=rows * nb), label="bytes")
    buf = np.frombuffer(raw, dtype=np.uint8).reshape(rows, nb)
    n = blocks * ntype.block_elems
    want = kernels.dequantize_rows(ntype.type_id, buf, n, isa="scalar", threads=1)
    assert want.shape == (rows, n) and want.dtype == np.float32
    for isa in SIMD_LEVELS:
        got = kernels.dequantize_rows(ntype.type_id, buf, n, isa=isa, threads=2)
        assert _same_floats(got, want), f"{ntype.name} [{isa}] decodes random bytes differently"


# ------------------------------------------------------------------ SIMD == scalar


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["normal", "ties", "zeros", "tiny", "huge"])
@pytest.mark.parametrize("ntype", QUANTIZABLE, ids=lambda t: t.name)
def test_levels_match_scalar_on_random_shapes(ntype, kind, seed):
    rng = np.random.default_rng([seed, ntype.type_id, len(kind)])
    rows = int(rng.integers(1, 9))
    if ntype.block_elems == 1:
        n = int(rng.integers(1, 200))  # any length: vector tails must be exact
    else:
        n = ntype.block_elems * int(rng.integers(1, 5 if ntype.block_elems > 32 else 24))
    x = _inputs(rng, rows, n, kind)
    imatrix = None
    if ntype.uses_imatrix and seed == 1:
        imatrix = (rng.random(n) * 3 + 0.05).astype(np.float32)
    want = kernels.quantize_rows(ntype.type_id, x, imatrix=imatrix, isa="scalar", threads=1)
    back = kernels.dequantize_rows(ntype.type_id, want, n, isa="scalar", threads=1)
    for isa in SIMD_LEVELS:
        threads = int(rng.integers(1, 4))
        got = kernels.quantize_rows(ntype.type_id, x, imatrix=imatrix, isa=isa, threads=threads)
        assert np.array_equal(got, want), f"{ntype.name} {kind} n={n} [{isa}, {threads}t]"
        dec = kernels.dequantize_rows(ntype.type_id, want, n, isa=isa, threads=threads)
        assert np.array_equal(dec.view(np.uint32), back.view(np.uint32)), (
            f"{ntype.name} {kind} n={n} decode [{isa}]"
        )


# ------------------------------------------------------------------ independent oracles


@pytest.mark.parametrize("isa", LEVELS)
def test_f16_and_bf16_match_numpy_and_torch(isa):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 203), dtype=np.float32) * np.float32(300.0)
    x[0, :40] = _inputs(rng, 1, 40, "tiny")  # subnormal halves and flushes to zero
    x[1, :8] = [65504.0, 65520.0, 65519.99, -1e6, 6e-8, 3e-8, 2.9802322e-08, -0.0]
    f16 = kernels.quantize_rows(1, x, isa=isa, threads=2)
    with np.errstate(over="ignore"):  # values past 65504 become Inf on purpose
        want16 = x.astype(np.float16)
    assert np.array_equal(f16.view(np.float16), want16)
    back = kernels.dequantize_rows(1, f16, x.shape[1], isa=isa, threads=2)
    assert np.array_equal(back, f16.view(np.float16).astype(np.float32))

    torch = pytest.importorskip("torch")
    bf16 = kernels.quantize_rows(30, x, isa=isa, threads=2)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8)
    assert np.array_equal(bf16, want.reshape(bf16.shape))
    back = kernels.dequantize_rows(30, bf16, x.shape[1], isa=isa, threads=2)
    assert np.array_equal(back, (bf16.view(np.uint16).astype(np.uint32) << 16).view(np.float32))


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("name", LEGACY)
def test_legacy_blocks_match_gguf_numpy_codecs(name, isa):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    qtype = GGMLQuantizationType[name]
    rng = np.random.default_rng(int(qtype))
    x = np.concatenate([_inputs(rng, 3, 256, "normal"), _inputs(rng, 2, 256, "ties")])
    got = kernels.quantize_rows(int(qtype), x, isa=isa, threads=2)
    assert np.array_equal(got, quantize(x, qtype))
    back = kernels.dequantize_rows(int(qtype), got, x.shape[1], isa=isa, threads=2)
    np.testing.assert_array_equal(back, dequantize(got, qtype))


# ------------------------------------------------------------------ QTSTUDIO_ISA end to end


def _cli_info(level: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QTSTUDIO_ISA=level)
    return subprocess.run(
        [sys.executable, "-m", "qtstudio.cli", "info", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("level", ["scalar", "avx2", "avx512", "neon"])
def test_forced_level_is_used_or_refused_cleanly(level):
    proc = _cli_info(level)
    have = [i.name.lower() for i in kernels.available_isas()]  # all, whatever LEVELS keeps
    if level in have:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["active_isa"] == level
    else:
        # A level this CPU cannot run is an error message and exit 2, not a crash.
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        assert f"QTSTUDIO_ISA='{level}'" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert "available here: " + ", ".join(have) in proc.stderr


def test_unknown_level_name_is_refused_cleanly():
    proc = _cli_info("avx1024")
    assert proc.returncode == 2
    assert "QTSTUDIO_ISA='avx1024'" in proc.stderr and "Traceback" not in proc.stderr
