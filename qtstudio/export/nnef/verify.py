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


def fresh_inputs(example_inputs: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """New inputs of the same shapes and value ranges: the export folded everything that did
    not depend on the example's data, and a second input shows whether that was right."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for x in example_inputs:
        if x.dtype == torch.bool:
            out.append(torch.rand(x.shape, generator=gen) > 0.5)
        elif x.dtype.is_floating_point:
            std = float(x.float().std()) if x.numel() > 1 else 1.0
            noise = torch.randn(x.shape, generator=gen) * (std or 1.0)
            out.append((x.float().mean() + noise).to(x.dtype))
        else:
            lo, hi = int(x.min()), int(x.max())
            out.append(torch.randint(lo, hi + 1, x.shape, generator=gen, dtype=x.dtype))
    return out


def _check_once(path, module, inputs, decoded) -> list[dict[str, Any]]:
    feeds = [x.detach().cpu().numpy() for x in inputs]
    got = run_tract(path, feeds)
    ref_q = torch_outputs(module, inputs, decoded)
    ref_f = torch_outputs(module, inputs)
    if len(got) != len(ref_q):
        raise ValueError(f"tract returned {len(got)} outputs, torch {len(ref_q)}")
    outputs = []
    for g, rq, rf in zip(got, ref_q, ref_f, strict=True):
        vs_same = compare(g, rq)
        passed = vs_same["max_abs"] <= TOLERANCE * max(vs_same["scale"], 1e-30)
        outputs.append({"shape": list(g.shape), "vs_torch_same_weights": vs_same,
                        "within_tolerance": passed, "vs_float_model": compare(g, rf)})
    return outputs


def verify_export(path: str | Path, module: torch.nn.Module,
                  example_inputs: Sequence[torch.Tensor],
                  decoded: dict[str, np.ndarray], *, fresh: int = 1) -> dict[str, Any]:
    """tract vs torch-on-decoded-weights (pass/fail) and vs the float model (deviation), on the
    example inputs and on ``fresh`` new inputs of the same shapes."""
    outputs = _check_once(path, module, example_inputs, decoded)
    trials = []
    for i in range(fresh):
        trials.append(_check_once(path, module, fresh_inputs(example_inputs, 1000 + i),
                                  decoded))
    ok = all(o["within_tolerance"] for o in outputs) and all(
        o["within_tolerance"] for t in trials for o in t)
    worst = max((o["vs_torch_same_weights"]["rel_max"] for t in [outputs, *trials] for o in t),
                default=0.0)
    return {"ok": ok, "tolerance": TOLERANCE, "outputs": outputs,
            "fresh_inputs": len(trials), "worst_rel_max": worst}
