"""An opened checkpoint: tensor descriptions from the headers, data read on demand."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .format_error import ModelFormatError
from .gguf_names import GGUFNamer
from .roles import MAX_BLOCKS, block_index, is_quantizable, role_of
from .tensor_info import RawTensor, TensorInfo
from .tree import TreeNode, build_tree

__all__ = ["Model", "RawTensor", "TensorInfo", "TensorSource"]


class TensorSource(Protocol):
    """What a reader hands the Model: raw and float access by name, and a close."""

    def load_raw(self, name: str) -> np.ndarray: ...

    def load(self, name: str) -> np.ndarray: ...

    def close(self) -> None: ...


def _plausible_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_BLOCKS


def _n_blocks(config: dict, metadata: dict, arch: str | None,
              raws: list[RawTensor]) -> int | None:
    """The layer count the headers declare, else one past the highest block in the names.

    A declared count beyond MAX_BLOCKS is damage, not a model: it is passed over for the
    names, whose block numbers ``block_index`` already bounds.
    """
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = config.get(key)
        if _plausible_count(v):
            return v  # type: ignore[return-value]
    if arch:
        v = metadata.get(f"{arch}.block_count")
        if _plausible_count(v):
            return v  # type: ignore[return-value]
    found = [b for b in (block_index(r.name) for r in raws) if b is not None]
    return max(found) + 1 if found else None


class Model:
    """A checkpoint opened lazily. Build one with :func:`qtstudio.formats.open_model`."""

    def __init__(self, path: Path, fmt: str, raws: Iterable[RawTensor], source: TensorSource, *,
                 config: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                 architecture: str | None = None, names_are_gguf: bool = False) -> None:
        self.path = Path(path)
        self.format = fmt
        self.config: dict[str, Any] = dict(config or {})
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.architecture = architecture
        self._source = source
        raw_list = list(raws)
        self.n_blocks = _n_blocks(self.config, self.metadata, architecture, raw_list)
        namer = GGUFNamer(architecture, self.n_blocks)
        infos: list[TensorInfo] = []
        for r in raw_list:
            gname = r.name if names_are_gguf else namer(r.name)
            params = math.prod(r.shape)  # Python ints: a numpy product could wrap around
            infos.append(TensorInfo(
                name=r.name,
                shape=r.shape,
                dtype=r.dtype,
                params=params,
                nbytes=r.nbytes,
                role=role_of(r.name, r.shape, gname),
                quantizable=(r.unreadable is None and params > 0
                             and is_quantizable(r.name, r.shape, r.dtype, gname)),
                block_index=block_index(gname or r.name),
                gguf_name=gname,
                unreadable=r.unreadable,
            ))
        self.tensors: list[TensorInfo] = infos
        self._by_name = {t.name: t for t in infos}

    # --- lookup ---------------------------------------------------------------------------
    def tensor(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    @cached_property
    def tree(self) -> TreeNode:
        return build_tree(self.tensors)

    @property
    def total_params(self) -> int:
        return sum(t.params for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def n_head(self) -> int | None:
        return self._hparam(("num_attention_heads", "n_head"), ("attention.head_count",))

    @property
    def n_head_kv(self) -> int | None:
        return self._hparam(("num_key_value_heads", "multi_query_group_num"),
                            ("attention.head_count_kv",)) or self.n_head

    @property
    def n_expert(self) -> int:
        return self._hparam(("num_local_experts", "num_experts", "n_routed_experts"),
                            ("expert_count",)) or 0

    def _hparam(self, cfg_keys: tuple[str, ...], gguf_keys: tuple[str, ...]) -> int | None:
        for key in cfg_keys:
            v = self.config.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        if self.architecture:
            for key in gguf_keys:
                v = self.metadata.get(f"{self.architecture}.{key}")
                if isinstance(v, int) and not isinstance(v, bool):
                    return v
                if isinstance(v, list) and v and all(isinstance(i, int) for i in v):
                    return max(v)  # per-layer arrays (some GGUFs): the largest is what counts
        return None

    # --- data -----------------------------------------------------------------------------
    @property
    def unreadable(self) -> list[TensorInfo]:
        """Tensors whose values cannot be read, each with its reason."""
        return [t for t in self.tensors if t.unreadable is not None]

    def load(self, name: str) -> np.ndarray:
        """The tensor as float32 in its logical shape (converted or decoded on demand).

        An unreadable tensor raises ModelFormatError with its reason.
        """
        info = self.tensor(name)
        if info.unreadable is not None:
            raise ModelFormatError(self.path, info.unreadable, tensor=name)
        return self._source.load(name)

    def load_raw(self, name: str) -> np.ndarray:
        """The tensor in its stored dtype (or as uint8 rows for block encodings)."""
        self.tensor(name)
        return self._source.load_raw(name)

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Model({str(self.path)!r}, format={self.format!r}, "
                f"architecture={self.architecture!r}, tensors={len(self.tensors)})")
