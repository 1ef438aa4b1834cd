"""qtstudio: mixed-precision model quantization studio."""

from .core.encodings import BlockParameters, Encoding, encodings, get_encoding
from .core.qtensor import QTensor, dequantize, quantize
from .export.tensor_file import load_tensors, save_tensors

__version__ = "0.1.0"

__all__ = [
    "BlockParameters",
    "Encoding",
    "QTensor",
    "__version__",
    "dequantize",
    "encodings",
    "get_encoding",
    "load_tensors",
    "quantize",
    "save_tensors",
]
