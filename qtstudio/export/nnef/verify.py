"""Run an export with tract and compare it with torch.

Two comparisons: against the same module carrying the dequantized weights the export stores
(this checks the translation: the error must stay within 1e-4 of the output's scale), and
against the original float module (this is what quantization costs).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: tract must reproduce torch on the same weights to this fraction of the output's scale
TOLERANCE = 1e-4


def run_tract(path: str | Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import tract  # optional dependency: only verification needs it

    model = tract.nnef().load(str(path)).into_runnable()
    feeds = []
    for x in inputs:
        x = np.ascontiguousarray(x)
        # NNEF integer tensors are 64-bit in tract, whatever width torch used
        if x.dtype.kind in "iu" and x.dtype != np.int64:
            x = x.astype(np.int64)
        feeds.append(x)
    return [o.to_numpy() for o in model.run(feeds)]


def _flat_outputs(out: Any) -> list[np.ndarray]:
    leaves = torch.utils._pytree.tree_leaves(out)
    return [t.detach().float().cpu().numpy() for t in leaves if isinstance(t, torch.Tensor)]


def torch_outputs(module: torch.nn.Module, inputs: Sequence[torch.Tensor],
                  decoded: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Outputs of ``module`` (a copy with ``decoded`` weights swapped in, when given)."""
    m = module
    if decoded:
        m = copy.deepcopy(module)
        named = dict(m.named_parameters(remove_duplicate=False))
        named.update(dict(m.named_buffers(remove_duplicate=False)))
        for name, arr in decoded.items():
            target = named.get(name)
            if target is None:
                raise KeyError(f"module has no parameter or buffer {name!r}")
            with torch.no_grad():
                target.copy_(torch.from_numpy(np.asarray(arr)).reshape(target.shape))
    was_training = m.training
    try:
        with torch.no_grad():
            return _flat_outputs(m.eval()(*inputs))
    finally:
        m.train(was_training)


def compare(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"tract output shape {got.shape} differs from torch's {ref.shape}")
    err = np.abs(got - ref)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    denom = float(np.linalg.norm(got) * np.linalg.norm(ref))
    out = {"max_abs": float(err.max()) if err.size else 0.0, "scale": scale,
           "rel_max": float(err.max() / scale) if scale else 0.0,
           "cosine": float(np.sum(got * ref) / denom) if denom else 1.0}
    if ref.ndim >= 1 and ref.shape[-1] > 1:
        out["argmax_agreement"] = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
    return out


def verify_export(path: str | Path, module: torch.nn.Module,
                  example_inputs: Sequence[torch.Tensor],
                  decoded: dict[str, np.ndarray]) -> dict[str, Any]:
    """tract vs torch-on-decoded-weights (pass/fail) and vs the float model (deviation)."""
    feeds = [x.detach().cpu().numpy() for x in example_inputs]
    got = run_tract(path, feeds)
    ref_q = torch_outputs(module, example_inputs, decoded)
    ref_f = torch_outputs(module, example_inputs)
    if len(got) != len(ref_q):
        raise ValueError(f"tract returned {len(got)} outputs, torch {len(ref_q)}")
    outputs = []
    ok = True
    for g, rq, rf in zip(got, ref_q, ref_f, strict=True):
        vs_same = compare(g, rq)
        passed = vs_same["max_abs"] <= TOLERANCE * max(vs_same["scale"], 1e-30)
        ok &= passed
        outputs.append({"shape": list(g.shape), "vs_torch_same_weights": vs_same,
                        "within_tolerance": passed, "vs_float_model": compare(g, rf)})
    return {"ok": ok, "tolerance": TOLERANCE, "outputs": outputs}
