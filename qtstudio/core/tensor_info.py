"""What the headers say about tensors, before and after roles and names are worked out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawTensor:
    """A reader's description of one tensor before roles and names are worked out."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    unreadable: str | None = None


@dataclass(frozen=True)
class TensorInfo:
    """What the headers say about one tensor; no data."""

    name: str
    #: logical shape in numpy order: the last axis is the row that blocks run along
    shape: tuple[int, ...]
    #: storage type, e.g. "F32", "BF16", "Q4_K"
    dtype: str
    params: int
    nbytes: int
    role: str
    quantizable: bool
    block_index: int | None
    gguf_name: str | None
    #: why this tensor's values cannot be read (bad type, damaged data), or None; the rest of
    #: the file stays usable and ``Model.load`` raises ModelFormatError with this reason
    unreadable: str | None = None
