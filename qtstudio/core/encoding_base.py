"""What every encoding is: block geometry and the codec interface, native or plugin.

Kept apart from the registry (qtstudio.core.encodings) so that encodings written in Python, the
built-in INT8 family and third-party plugins alike, subclass it without importing the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Formats that can carry each ggml type id as-is.
GGUF = "gguf"
NNEF = "nnef"
SAFETENSORS = "safetensors"


@dataclass(frozen=True)
class BlockParameters:
    """How an encoding lays out values: MAX's BlockParameters, plus a fixed per-row overhead."""

    elements_per_block: int
    block_bytes: int
    row_overhead_bytes: int = 0

    def row_bytes(self, n: int) -> int:
        return n // self.elements_per_block * self.block_bytes + self.row_overhead_bytes

    def bits_per_weight(self, n: int | None = None) -> float:
        per_block = 8.0 * self.block_bytes / self.elements_per_block
        if n is None or not self.row_overhead_bytes:
            return per_block
        return 8.0 * self.row_bytes(n) / n


class Encoding:
    """Base class for every encoding, native or plugin.

    Subclasses set ``name``, ``block`` and optionally ``ggml_type`` and ``uses_imatrix``, and
    implement ``quantize_rows`` / ``dequantize_rows`` over 2-D float32 and uint8 arrays.
    """

    name: str = ""
    block: BlockParameters = BlockParameters(1, 4)
    ggml_type: int | None = None
    uses_imatrix: bool = False
    #: file formats that can store this encoding without conversion
    export_formats: frozenset[str] = frozenset()
    description: str = ""

    # --- geometry -------------------------------------------------------------------------
    @property
    def elements_per_block(self) -> int:
        return self.block.elements_per_block

    @property
    def block_bytes(self) -> int:
        return self.block.block_bytes

    @property
    def bpw(self) -> float:
        return self.block.bits_per_weight()

    def row_bytes(self, n: int) -> int:
        return self.block.row_bytes(n)

    def nbytes(self, shape: tuple[int, ...]) -> int:
        if not shape:
            return self.row_bytes(1)
        rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
        return rows * self.row_bytes(int(shape[-1]))

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether a tensor of this shape can take the encoding (rows split into blocks)."""
        return len(shape) >= 1 and shape[-1] > 0 and shape[-1] % self.elements_per_block == 0

    def shape_problem(self, shape: tuple[int, ...]) -> str | None:
        if self.accepts_shape(shape):
            return None
        return (f"{self.name} needs a last dimension that is a multiple of "
                f"{self.elements_per_block}; shape {tuple(shape)} has {shape[-1] if shape else 0}")

    # --- codec ----------------------------------------------------------------------------
    def quantize_rows(self, x: np.ndarray, *, imatrix: np.ndarray | None = None,
                      threads: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def dequantize_rows(self, data: np.ndarray, n_per_row: int, *,
                        threads: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Encoding {self.name} {self.bpw:g} bpw>"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Encoding):
            return self.name == other.name
        if isinstance(other, str):
            return self.name.upper() == other.upper()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)
