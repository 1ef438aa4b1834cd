"""The encodings registry: every way a tensor can be stored, with its block parameters.

An encoding turns float32 rows into bytes and back. Native ones (the ggml block types and the
float storage types) run in the C library; others, including third-party plugins found through
the ``qtstudio.encodings`` entry-point group, are Python classes with the same interface.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

from qtstudio import kernels

from .encoding_base import GGUF, NNEF, SAFETENSORS, BlockParameters, Encoding
from .int8 import INT8_ENCODINGS
from .int_storage import INTEGER_ENCODINGS

ENTRY_POINT_GROUP = "qtstudio.encodings"

class NativeEncoding(Encoding):
    """A ggml type implemented by the C library."""

    def __init__(self, native: kernels.NativeType, formats: Iterable[str],
                 description: str = "") -> None:
        self.name = native.name
        self.ggml_type = native.type_id
        self.block = BlockParameters(native.block_elems, native.block_bytes)
        self.uses_imatrix = native.uses_imatrix
        self.export_formats = frozenset(formats)
        self.description = description

    def quantize_rows(self, x, *, imatrix=None, threads=None):
        return kernels.quantize_rows(self.ggml_type, x, imatrix=imatrix, threads=threads)

    def dequantize_rows(self, data, n_per_row, *, threads=None):
        return kernels.dequantize_rows(self.ggml_type, data, n_per_row, threads=threads)


_NATIVE_DESCRIPTIONS = {
    "F32": "32-bit float, lossless",
    "F16": "IEEE half precision",
    "BF16": "bfloat16 (8-bit exponent, 7-bit mantissa)",
    "Q4_0": "4-bit symmetric, one fp16 scale per 32 values",
    "Q4_1": "4-bit with scale and minimum per 32 values",
    "Q5_0": "5-bit symmetric, one fp16 scale per 32 values",
    "Q5_1": "5-bit with scale and minimum per 32 values",
    "Q8_0": "8-bit symmetric, one fp16 scale per 32 values",
    "Q2_K": "2-bit k-quant, 256-value super-blocks",
    "Q3_K": "3-bit k-quant, 256-value super-blocks",
    "Q4_K": "4-bit k-quant with 6-bit sub-block scales and mins",
    "Q5_K": "5-bit k-quant with 6-bit sub-block scales and mins",
    "Q6_K": "6-bit k-quant with 8-bit sub-block scales",
    "IQ4_NL": "4-bit non-linear grid, 32-value blocks",
    "IQ4_XS": "4-bit non-linear grid, 256-value super-blocks",
    "TQ1_0": "ternary, 1.69 bpw",
    "TQ2_0": "ternary, 2.06 bpw",
    "MXFP4": "OCP microscaling FP4 (E2M1 with E8M0 scale)",
}

# tract reads f32/f16 tensors and Q4_0 blocks; everything ggml has goes into GGUF.
_NNEF_NATIVE = {"F32", "F16", "Q4_0"}


class Registry:
    """Name -> Encoding, case-insensitive; plugins load lazily on first lookup."""

    def __init__(self) -> None:
        self._by_name: dict[str, Encoding] = {}
        self._plugins_loaded = False
        self.plugin_errors: list[str] = []

    def register(self, enc: Encoding, *, replace: bool = False) -> Encoding:
        if not enc.name:
            raise ValueError("an encoding needs a name")
        key = enc.name.upper()
        if key in self._by_name and not replace:
            raise ValueError(f"an encoding named {enc.name!r} is already registered")
        self._by_name[key] = enc
        return enc

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                enc = obj() if isinstance(obj, type) else obj
                if not isinstance(enc, Encoding):
                    raise TypeError(f"{ep.value} is not an Encoding")
                self.register(enc)
            except Exception as exc:  # a broken plugin must not take the app down
                self.plugin_errors.append(f"encoding plugin {ep.name!r} failed to load: {exc}")

    def get(self, name: str | Encoding) -> Encoding:
        if isinstance(name, Encoding):
            return name
        if not isinstance(name, str):
            raise TypeError(f"an encoding name must be a string, got {type(name).__name__}")
        key = name.strip().upper()
        if key not in self._by_name:
            self._load_plugins()
        try:
            return self._by_name[key]
        except KeyError:
            known = ", ".join(e.name for e in self.all())
            raise ValueError(f"unknown encoding {name!r}; known encodings: {known}") from None

    def all(self) -> list[Encoding]:
        self._load_plugins()
        return list(self._by_name.values())


REGISTRY = Registry()


def _register_native() -> None:
    for t in kernels.native_types():
        if not (t.can_quantize and t.can_dequantize):
            continue
        formats = {GGUF}
        if t.name in _NNEF_NATIVE:
            formats.add(NNEF)
        if t.name in {"F32", "F16", "BF16"}:
            formats.add(SAFETENSORS)
        REGISTRY.register(NativeEncoding(t, formats, _NATIVE_DESCRIPTIONS.get(t.name, "")))


_register_native()


def _register_python_builtins() -> None:
    for enc in [*INT8_ENCODINGS, *INTEGER_ENCODINGS]:
        REGISTRY.register(enc)


_register_python_builtins()


def get_encoding(name: str | Encoding) -> Encoding:
    return REGISTRY.get(name)


def encodings() -> list[Encoding]:
    """Every registered encoding with its block parameters."""
    return REGISTRY.all()
