"""The demo MLP (qtstudio/resources/demo) in the same block-major shape: one block per layer.

Block i is Linear i followed by ReLU (except the last); the inputs are the digits test images.
Tensor names are the checkpoint's (``fc1.weight`` ...), since the demo has no GGUF names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .decoder import Observer
from .errors import CalibrationError
from .weights import Overrides, TensorAccess, WeightFn

if TYPE_CHECKING:
    import torch

    from qtstudio.core.model import Model


class MLPEngine:
    kind = "mlp"

    def __init__(self, model: Model, *, weight_fn: WeightFn | None = None,
                 observer: Observer | None = None) -> None:
        prefixes = model.config.get("tensor_prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise CalibrationError(model.path, "config.json has no tensor_prefixes for the MLP")
        self.model = model
        self.prefixes = [str(p) for p in prefixes]
        self.access = TensorAccess(model, weight_fn)
        self.observer = observer

    @property
    def n_blocks(self) -> int:
        return len(self.prefixes)

    def block_tensor_names(self, i: int) -> list[str]:
        p = self.prefixes[i]
        return [n for n in (f"{p}.weight", f"{p}.bias") if self.access.has(n)]

    def embed(self, x: np.ndarray, overrides: Overrides | None = None) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def load_block(self, i: int, overrides: Overrides | None = None) -> dict[str, torch.Tensor]:
        return {n: self.access.tensor(n, overrides) for n in self.block_tensor_names(i)}

    def run_block(self, i: int, h: torch.Tensor, *, weights: dict[str, torch.Tensor] | None = None,
                  overrides: Overrides | None = None,
                  observer: Observer | None = None) -> torch.Tensor:
        import torch

        if weights is None:
            weights = self.load_block(i, overrides)
        elif overrides:
            weights = {**weights, **{n: self.access.tensor(n, overrides)
                                     for n in overrides if n in weights}}
        obs = observer if observer is not None else self.observer
        p = self.prefixes[i]
        if obs is not None:
            obs(f"{p}.weight", h)
        with torch.no_grad():
            y = torch.nn.functional.linear(h, weights[f"{p}.weight"], weights.get(f"{p}.bias"))
            return torch.relu(y) if i < self.n_blocks - 1 else y
