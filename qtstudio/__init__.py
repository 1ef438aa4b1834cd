"""qtstudio: mixed-precision model quantization studio.

The public names below load on first use (PEP 562), so ``import qtstudio`` and the entry points
(``qtstudio``, ``qtstudio-cli``) start without loading numpy or the native library: a Ctrl-C in
those first moments lands in code that handles it, not in the middle of an import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "BlockParameters": "qtstudio.core.encodings",
    "Encoding": "qtstudio.core.encodings",
    "encodings": "qtstudio.core.encodings",
    "get_encoding": "qtstudio.core.encodings",
    "QTensor": "qtstudio.core.qtensor",
    "dequantize": "qtstudio.core.qtensor",
    "quantize": "qtstudio.core.qtensor",
    "load_tensors": "qtstudio.export.tensor_file",
    "save_tensors": "qtstudio.export.tensor_file",
    "qmatmul": "qtstudio.core.qtensor",
}

if TYPE_CHECKING:
    from .core.encodings import BlockParameters, Encoding, encodings, get_encoding
    from .core.qtensor import QTensor, dequantize, qmatmul, quantize
    from .export.tensor_file import load_tensors, save_tensors


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qtstudio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def export_nnef(module, plan, example_inputs, path, **kwargs):
    """Export a torch module to NNEF for tract (see qtstudio.export.nnef.export_nnef).

    Imported lazily: it needs torch, which the rest of this package does not load up front.
    """
    from .export.nnef import export_nnef as _export_nnef

    return _export_nnef(module, plan, example_inputs, path, **kwargs)


__all__ = [
    "BlockParameters",
    "Encoding",
    "QTensor",
    "__version__",
    "dequantize",
    "encodings",
    "export_nnef",
    "get_encoding",
    "load_tensors",
    "qmatmul",
    "quantize",
    "save_tensors",
]
