import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DATA = Path(__file__).parent / "data"


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
