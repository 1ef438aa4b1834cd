"""Compare whole-model plans before quantizing: llama.cpp presets and optimized mixes, each as
(size, error), from one measuring pass.

Every quantizable tensor is measured once under every encoding any compared plan uses (the
optimizer's cost table and measuring, sampled rows for large tensors), then each plan's error is
the sum of its tensors' errors: relative RMS error = sqrt(sum squared error / sum squared
weights) over the quantizable tensors. Optimized mixes at a few sizes come from the same table.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qtstudio.core.model import Model
from qtstudio.core.optimize import budget_for_bpw, cost_table, optimize
from qtstudio.core.plan import resolve_plan
from qtstudio.core.presets import PRESETS
from qtstudio.core.recipe import Recipe

from . import CancelToken, Progress
from .optimize import measure_job

#: presets compared by default: the quantized llama.cpp mixes people choose between
DEFAULT_PRESETS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
#: optimized mixes compared by default, in bits per weight
DEFAULT_TARGETS = (3.5, 4.5, 5.5)
_FLOATS = ("F32", "F16", "BF16")


@dataclass
class ComparedPlan:
    label: str
    kind: str  # "preset" | "optimized" | "current"
    nbytes: int
    bpw: float
    #: relative RMS error over the quantizable tensors (nan: some tensor was not measurable)
    rel_error: float
    encodings: dict[str, int] = field(default_factory=dict)


@dataclass
class Comparison:
    source: str
    total_params: int
    original_bytes: int
    plans: list[ComparedPlan]
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "total_params": self.total_params,
                "original_bytes": self.original_bytes, "elapsed": round(self.elapsed, 3),
                "method": __doc__.split("\n\n")[1].replace("\n", " "),
                "plans": [asdict(p) for p in self.plans]}

    def to_markdown(self) -> str:
        lines = [f"# Plan comparison: {Path(self.source).name}", "",
                 f"{self.total_params:,} parameters, {self.original_bytes / 2**20:.2f} MiB "
                 "unquantized. Error: relative RMS over the quantizable tensors.", "",
                 "| plan | kind | size (MiB) | bpw | relative error | encodings |",
                 "|---|---|---:|---:|---:|---|"]
        for p in self.plans:
            encs = ", ".join(f"{k} × {v}" for k, v in sorted(p.encodings.items(),
                                                               key=lambda kv: -kv[1]))
            err = "n/a" if math.isnan(p.rel_error) else f"{p.rel_error:.4g}"
            lines.append(f"| {p.label} | {p.kind} | {p.nbytes / 2**20:.2f} | {p.bpw:.3f} | "
                         f"{err} | {encs} |")
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
        """JSON for .json, a Markdown table otherwise; written atomically, never onto one of
        ``inputs`` (the model's files)."""
        from qtstudio.formats.atomic import atomic_output

        path = Path(path)
        inputs = [*inputs, *model_files(self.source)]
        text = json.dumps(self.to_dict(), indent=1) if path.suffix.lower() == ".json" \
            else self.to_markdown()
        with atomic_output(path, inputs=inputs) as f:
            f.write(text.encode("utf-8"))
        return path


def model_files(source: str | Path) -> list[Path]:
    """The model's own files: a report must never land on one (a Hugging Face folder's
    config.json and tokenizer included)."""
    src = Path(source)
    folder = src if src.is_dir() else src.parent
    files = [src]
    if (folder / "config.json").is_file():
        files += [f for f in folder.iterdir() if f.is_file()]
    return files


def compare_job(model: Model, *, presets: Sequence[str] = DEFAULT_PRESETS,
                targets_bpw: Sequence[float] = DEFAULT_TARGETS,
                current: Recipe | Mapping[str, Any] | None = None,
                has_imatrix: bool = False, threads: int | None = None,
                cancel: CancelToken | None = None) -> Generator[Progress, None, Comparison]:
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    if isinstance(current, Mapping):
        current = Recipe.from_dict(dict(current))
    named: list[tuple[str, str, Any]] = []
    for p in presets:
        if p not in PRESETS:
            raise ValueError(f"unknown preset {p}; presets: {', '.join(PRESETS)}")
        named.append((p, "preset", resolve_plan(model, Recipe(preset=p),
                                                has_imatrix=has_imatrix)))
    if current is not None:
        named.append(("current plan", "current", resolve_plan(model, current,
                                                              has_imatrix=has_imatrix)))
    used: dict[str, None] = dict.fromkeys(("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"))
    for _, _, plan in named:
        for e in plan.entries:
            if e.quantizable and e.encoding not in _FLOATS:
                used[e.encoding] = None
    table = cost_table(model, list(used))
    yield from measure_job(model, table, threads=threads, cancel=cancel)
    signal = math.fsum(t.signal for t in table.tensors)
    by_name = {t.name: t for t in table.tensors}

    def rel(sq: float) -> float:
        return math.sqrt(sq / signal) if signal > 0 else math.nan

    plans: list[ComparedPlan] = []
    for label, kind, plan in named:
        sq = 0.0
        for e in plan.entries:
            t = by_name.get(e.name)
            if t is None or e.encoding in (e.source_dtype, "F32"):
                continue  # stored as read, or widened to F32: exact
            opt = next((o for o in t.options if o.encoding == e.encoding), None)
            sq += math.nan if opt is None else opt.error
        encs: dict[str, int] = {}
        for e in plan.entries:
            encs[e.encoding] = encs.get(e.encoding, 0) + 1
        plans.append(ComparedPlan(label, kind, plan.total_bytes, plan.avg_bpw, rel(sq), encs))
    for bpw in targets_bpw:
        cancel.check()
        budget = budget_for_bpw(bpw, table.total_params)
        if budget < table.floor_bytes:
            continue
        res = optimize(table, budget)
        encs = {}
        for t, p in zip(table.tensors, res.picks, strict=True):
            enc = t.options[p].encoding
            encs[enc] = encs.get(enc, 0) + 1
        n_fixed = len(model.tensors) - len(table.tensors)
        if n_fixed:
            encs["F32"] = encs.get("F32", 0) + n_fixed
        plans.append(ComparedPlan(f"optimized {bpw:g} bpw", "optimized", res.total_bytes,
                                  res.avg_bpw, rel(res.total_error), encs))
    plans.sort(key=lambda p: p.nbytes)
    out = Comparison(str(model.path), model.total_params, model.total_bytes, plans,
                     time.perf_counter() - start)
    yield Progress("done", "", 1, 1, 1, 1, out.elapsed, f"{len(plans)} plans compared")
    return out
