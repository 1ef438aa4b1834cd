"""Which encoding each weight gets: the plan's choice, checked against what tract can read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from qtstudio.core.encodings import get_encoding

from .builder import BLOCK_AWARE_USES
from .capability import nnef_fallback


class PlanLookup:
    """Finds a module parameter's encoding in a plan whose names may carry a different prefix
    (``bert.encoder...`` in a checkpoint, ``encoder...`` in a bare BertModel, a wrapper's
    ``model.`` in front)."""

    def __init__(self, plan: Any) -> None:
        self.uniform: str | None = None
        self.by_name: dict[str, str] = {}
        if plan is None:
            return
        if isinstance(plan, str):
            self.uniform = get_encoding(plan).name
        elif isinstance(plan, Mapping):
            self.by_name = {str(k): get_encoding(v).name for k, v in plan.items()}
        elif hasattr(plan, "entries"):
            self.by_name = {e.name: e.encoding for e in plan.entries}
        else:
            raise TypeError("plan must be a Plan, a {tensor name: encoding} mapping, an encoding "
                            f"name or None; got {type(plan).__name__}")
        self._suffix: dict[str, list[str]] = {}
        for name in self.by_name:
            parts = name.split(".")
            for i in range(1, len(parts)):
                self._suffix.setdefault(".".join(parts[i:]), []).append(name)

    def find(self, name: str) -> str | None:
        if name in self.by_name:
            return self.by_name[name]
        parts = name.split(".")
        for i in range(1, len(parts)):  # module name longer than the plan's
            cand = ".".join(parts[i:])
            if cand in self.by_name:
                return self.by_name[cand]
        hits = self._suffix.get(name, []) if self.by_name else []
        if len(hits) == 1:  # plan name longer than the module's
            return self.by_name[hits[0]]
        return None


def make_policy(plan: Any, *, default_float: str = "F32",
                name_map: dict[str, str] | None = None):
    lookup = PlanLookup(plan)
    name_map = name_map or {}
    default_float = get_encoding(default_float).name

    def policy(name: str, tensor: torch.Tensor, uses: frozenset[str],
               ) -> tuple[str, str | None, str | None]:
        shape = tuple(int(s) for s in tensor.shape)
        if not tensor.dtype.is_floating_point:
            return "I64", None, None
        if lookup.uniform is not None:
            quantizable = len(shape) >= 2 and uses <= BLOCK_AWARE_USES
            requested = lookup.uniform if quantizable else None
        else:
            requested = lookup.find(name_map.get(name, name))
        if requested is None:
            return default_float, None, None
        fb = nnef_fallback(requested, shape, uses=uses)
        if fb is None:
            return requested, requested, None
        return fb[0], requested, fb[1]

    return policy
