"""The plan document: an open model, the recipe being edited, its resolved plan, and measurements.

Qt-free on purpose (the widgets subscribe to it, as napari's Qt layer subscribes to its models), so
the editing logic is testable without a display and the undo commands only swap recipes in and out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtstudio.core.encodings import get_encoding
from qtstudio.core.plan import Plan, resolve_plan
from qtstudio.core.recipe import Recipe, Rule

#: encodings a tensor that must stay float may take
FLOAT_ENCODINGS = ("F32", "F16", "BF16")

Listener = Callable[[str], None]


def is_integer_dtype(dtype: str) -> bool:
    """I8/I16/I32/I64, U8..., BOOL: position ids and masks, never encoded."""
    d = str(dtype).upper()
    return d == "BOOL" or (d[:1] in ("I", "U") and d[1:].isdigit())

_METRIC_KEYS = ("rmse", "rel_error", "snr_db", "cosine", "max_abs")


def _metrics_dict(value: Any) -> dict[str, float]:
    """Accept a metrics dataclass, a namespace or a plain dict and give a plain dict back."""
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()
                if k in _METRIC_KEYS and isinstance(v, int | float)}
    out = {}
    for key in _METRIC_KEYS:
        if hasattr(value, key):
            out[key] = float(getattr(value, key))
    return out


@dataclass
class Measurements:
    """Per (tensor, encoding) errors, from a quantize run or a what-if sweep; kept across edits so
    switching an encoding back shows its error again without recomputing."""

    errors: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    bench: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    accuracy: dict[str, float] | None = None
    #: measured on calibration data, each tensor alone at an encoding (every other one float):
    #: {"out_err": relative block output error or None, "kl": output KL}
    output: dict[tuple[str, str], dict[str, float | None]] = field(default_factory=dict)
    #: the calibration data of ``output`` (file or corpus name)
    output_source: str | None = None
    #: tensors with an output error for some encoding
    output_names: set[str] = field(default_factory=set)

    def error(self, name: str, encoding: str) -> dict[str, float] | None:
        return self.errors.get((name, encoding.upper()))

    def set_output(self, values: dict[tuple[str, str], dict[str, float | None]],
                   source: str) -> None:
        """New output errors; those measured on other data are dropped (not comparable)."""
        if source != self.output_source:
            self.output, self.output_names = {}, set()
            self.output_source = source
        self.output.update({(n, e.upper()): dict(v) for (n, e), v in values.items()})
        self.output_names.update(n for n, _e in values)

    def set_error(self, name: str, encoding: str, metrics: Any) -> None:
        self.errors[(name, encoding.upper())] = _metrics_dict(metrics)


class PlanDocument:
    """Model + recipe + resolved plan; every change goes through ``set_recipe``."""

    def __init__(self, model: Any, recipe: Recipe | None = None,
                 recipe_path: Path | None = None, *, has_imatrix: bool = False) -> None:
        self.model = model
        self.recipe: Recipe = recipe if recipe is not None else Recipe()
        self.recipe_path = recipe_path
        self.measurements = Measurements()
        self.last_report: Any = None
        #: the last optimizer run (an OptimizeSummary), shown while the plan is its answer
        self.optimize_summary: Any = None
        self._candidates: dict[tuple[tuple[int, ...], bool], list[str]] = {}
        #: an importance matrix is loaded: the llama.cpp mixtures then choose as
        #: llama-quantize --imatrix does (and the quantize/export jobs use it)
        self.has_imatrix = has_imatrix
        self.plan: Plan = resolve_plan(model, self.recipe, has_imatrix=has_imatrix)
        self._listeners: list[Listener] = []

    # ---- observers -------------------------------------------------------------------------
    def subscribe(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def unsubscribe(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def notify(self, what: str) -> None:
        """``what`` is "plan" (the recipe changed) or "measurements" (new errors or timings)."""
        for fn in list(self._listeners):
            fn(what)

    # ---- recipe edits (the undo commands call these with snapshots) --------------------------
    def recipe_snapshot(self) -> dict:
        return self.recipe.to_dict()

    def set_recipe(self, recipe: Recipe | dict) -> None:
        if isinstance(recipe, dict):
            recipe = Recipe.from_dict(recipe)
        # resolve first: a bad recipe changes nothing
        plan = resolve_plan(self.model, recipe, has_imatrix=self.has_imatrix)
        self.recipe, self.plan = recipe, plan
        self.notify("plan")

    def set_has_imatrix(self, flag: bool) -> None:
        """An importance matrix was loaded (or dropped): the same recipe, resolved again."""
        if flag != self.has_imatrix:
            self.has_imatrix = flag
            self.plan = resolve_plan(self.model, self.recipe, has_imatrix=flag)
            self.notify("plan")

    def with_overrides(self, names: Iterable[str], encoding: str | None) -> dict:
        """The recipe that results from assigning ``encoding`` (None: back to the plan's choice)."""
        d = self.recipe_snapshot()
        overrides = dict(d.get("overrides") or {})
        for name in names:
            if encoding is None:
                overrides.pop(name, None)
            else:
                overrides[name] = encoding
        d["overrides"] = overrides
        return d

    def with_rules(self, rules: list[Rule]) -> dict:
        d = self.recipe_snapshot()
        d["rules"] = [r.to_dict() for r in rules]
        return d

    def with_fields(self, **fields: Any) -> dict:
        """The recipe with these of its fields replaced, e.g. ``with_fields(preset="Q4_K_M")``."""
        return {**self.recipe_snapshot(), **fields}

    # ---- queries -----------------------------------------------------------------------------
    def candidates(self, name: str) -> list[str]:
        """Encodings the tensor can take: any whose block fits its rows when it is quantizable,
        the float types only when it must stay float."""
        from qtstudio.core.encodings import encodings

        info = self.model.tensor(name)
        if is_integer_dtype(info.dtype):
            return []  # ids and masks are data: they keep their integer type, nothing to choose
        key = (tuple(info.shape), info.quantizable)
        found = self._candidates.get(key)  # models repeat a handful of shapes many times
        if found is None:
            found = [e.name for e in encodings() if e.accepts_shape(key[0])] if key[1] \
                else list(FLOAT_ENCODINGS)
            self._candidates[key] = found
        return list(found)

    def error(self, name: str) -> dict[str, float] | None:
        return self.measurements.error(name, self.plan.entry(name).encoding)

    def output_error(self, name: str) -> dict[str, float | None] | None:
        """Output error and KL of the tensor's planned encoding, None when not measured."""
        return self.measurements.output.get((name, self.plan.entry(name).encoding.upper()))

    def output_measured(self, name: str) -> bool:
        """Some encoding of the tensor has an output error (so a missing one is stale)."""
        return name in self.measurements.output_names

    def bpw_of(self, encoding: str, shape: tuple[int, ...]) -> float:
        enc = get_encoding(encoding)
        n = 1
        for s in shape:
            n *= int(s)
        return 8.0 * enc.nbytes(tuple(shape)) / max(n, 1)
