import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DATA = Path(__file__).parent / "data"
# Comma list of ISA levels the level tests run (default: every level the loaded library has).
# scripts/test.sh sets it to "avx512" with QTSTUDIO_NATIVE_LIB on the emulated AVX-512 build.
TEST_LEVELS_ENV = "QTSTUDIO_TEST_LEVELS"


def levels_under_test() -> list[str]:
    """ISA level names for the per-level tests; a requested level the library lacks is an error,
    so a CI step meant for one level can never pass by testing none."""
    from qtstudio import kernels

    have = [i.name.lower() for i in kernels.available_isas()]
    want = [w.strip() for w in os.environ.get(TEST_LEVELS_ENV, "").split(",") if w.strip()]
    if not want:
        return have
    missing = [w for w in want if w not in have]
    if missing:
        raise pytest.UsageError(
            f"{TEST_LEVELS_ENV} asks for {', '.join(missing)}, which the loaded native library "
            f"({os.environ.get('QTSTUDIO_NATIVE_LIB', 'the installed one')}) lacks; it has "
            + ", ".join(have)
        )
    return want


@pytest.fixture(scope="session")
def golden():
    """libggml's own quantization vectors (copied from shared/golden)."""
    with np.load(DATA / "ggml_quants.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def lm():
    """The trained test llama (tests/helpers/trained_lm.py): built once, cached on disk."""
    from tests.helpers.trained_lm import trained_llama

    return trained_llama()
