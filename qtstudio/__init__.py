"""qtstudio: mixed-precision model quantization studio."""

from .core.encodings import BlockParameters, Encoding, encodings, get_encoding
from .core.qtensor import QTensor, dequantize, qmatmul, quantize
from .export.tensor_file import load_tensors, save_tensors

__version__ = "0.1.0"


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
