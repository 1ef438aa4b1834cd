"""What the window keeps of an optimizer run, and how the summary says it. Qt-free.

The full ``OptimizeResult`` holds every tensor's measured options; the window needs only the
target, what was reached, and the best uniform encoding it was compared with, plus the overrides
it applied (so the summary can tell whether the plan still is the optimizer's answer after
undo or later edits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qtstudio.core.human_numbers import human_bytes


@dataclass(frozen=True)
class OptimizeSummary:
    budget: int
    target_bpw: float
    total_bytes: int
    avg_bpw: float
    objective: str
    total_error: float
    proven_optimal: bool
    candidates: tuple[str, ...]
    #: (candidate, bpw, error) of the least-error uniform encoding that fits, if any does
    best_uniform: tuple[str, float, float] | None
    overrides: dict[str, str] = field(default_factory=dict)
    #: under the imatrix objective, tensors the importance matrix had no weights for
    unweighted: int = 0

    @classmethod
    def from_result(cls, r: Any) -> OptimizeSummary:
        base = r.best_uniform()
        return cls(int(r.budget), float(r.target_bpw), int(r.total_bytes), float(r.avg_bpw),
                   str(r.table.objective), float(r.total_error), bool(r.proven_optimal),
                   tuple(r.table.candidates),
                   (base.candidate, float(base.bpw), float(base.error)) if base else None,
                   dict(r.recipe().overrides),
                   sum(1 for t in r.table.tensors if r.table.objective == "imatrix"
                       and not t.weighted and t.note is None))

    @property
    def target_text(self) -> str:
        return f"{self.target_bpw:.3f} bpw ({human_bytes(self.budget)})"

    def applied_to(self, recipe: Any) -> bool:
        """Whether ``recipe`` still gives every tensor the optimizer's choice."""
        return dict(recipe.overrides) == self.overrides

    def uniform_text(self) -> str:
        if self.best_uniform is None:
            return "no uniform candidate fits the target"
        cand, bpw, err = self.best_uniform
        if err > 0:
            gain = f"{100.0 * (1.0 - self.total_error / err):.1f}% less error"
        else:
            gain = "equal error"
        return (f"beats uniform {cand} ({bpw:.3f} bpw, {self.objective} error {err:.4g}) "
                f"with {self.objective} error {self.total_error:.4g}: {gain}")

    def summary_text(self) -> str:
        """Short enough for the summary panel; ``uniform_text`` has the numbers in full."""
        how = "proven optimal" if self.proven_optimal else "best found"
        text = f"{self.avg_bpw:.3f} bpw for a {self.target_bpw:.3f} bpw target ({how})"
        if self.best_uniform is None:
            return text + "; no uniform candidate fits"
        cand, bpw, err = self.best_uniform
        if err > 0:
            return (text + f"; {100.0 * (1.0 - self.total_error / err):.1f}% less "
                    f"{self.objective} error than uniform {cand} ({bpw:.3f} bpw)")
        return text + f"; same error as uniform {cand} ({bpw:.3f} bpw)"

    def status_text(self) -> str:
        text = (f"Optimized: {self.avg_bpw:.3f} bpw ({human_bytes(self.total_bytes)}) for a "
                f"{self.target_text} target; {self.uniform_text()}")
        if self.unweighted:
            text += (f"; {self.unweighted} tensor(s) have no importance weights, their error "
                     "is unweighted")
        return text
