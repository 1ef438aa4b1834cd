"""Bit-exactness against vectors written by libggml itself, on every ISA level this CPU has."""

import json

import numpy as np
import pytest

from qtstudio import kernels

from .conftest import DATA, levels_under_test

MANIFEST = json.loads((DATA / "ggml_quants.json").read_text())
TYPES = MANIFEST["types"]
CASES = MANIFEST["cases"]
LEVELS = levels_under_test()


def _params():
    # Only the vectors ggml wrote: types that ignore an importance matrix have no imatrix set.
    with np.load(DATA / "ggml_quants.npz") as z:
        keys = set(z.files)
    for name in TYPES:
        for case in CASES:
            for mode in ("plain", "imatrix"):
                if f"q/{name}/{case}/{mode}" in keys:
                    yield pytest.param(name, case, mode, id=f"{name}-{case}-{mode}")


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize(("name", "case", "mode"), list(_params()))
def test_quantize_matches_ggml(golden, name, case, mode, isa):
    key = f"q/{name}/{case}/{mode}"
    x = golden[f"input/{case}"].astype(np.float32)
    qw = golden["imatrix"].astype(np.float32) if mode == "imatrix" else None
    got = kernels.quantize_rows(TYPES[name]["id"], x, imatrix=qw, isa=isa, threads=1)
    want = golden[key].reshape(got.shape)
    if not np.array_equal(got, want):
        bad_row = int(np.flatnonzero((got != want).any(axis=1))[0])
        block = TYPES[name]["block_bytes"]
        col = int(np.flatnonzero(got[bad_row] != want[bad_row])[0])
        pytest.fail(f"{name} {case} {mode} [{isa}]: first difference row {bad_row} byte {col} "
                    f"(block {col // block}): got {got[bad_row, col]} want {want[bad_row, col]}")


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize(("name", "case", "mode"), list(_params()))
def test_dequantize_matches_ggml(golden, name, case, mode, isa):
    key = f"q/{name}/{case}/{mode}"
    rows, n = golden[f"input/{case}"].shape
    data = golden[key].reshape(rows, -1)
    got = kernels.dequantize_rows(TYPES[name]["id"], data, n, isa=isa, threads=1)
    want = golden[f"deq/{name}/{case}/{mode}"].reshape(rows, n).astype(np.float32)
    # Compare bit patterns so that -0.0 vs 0.0 and NaN payloads count too.
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_threads_do_not_change_bytes(golden):
    x = np.tile(golden["input/laplace"].astype(np.float32), (64, 1))
    for name in ("Q4_0", "Q8_0", "F16"):
        tid = TYPES[name]["id"]
        one = kernels.quantize_rows(tid, x, threads=1)
        two = kernels.quantize_rows(tid, x, threads=2)
        assert np.array_equal(one, two)
