"""Automatic per-tensor bit allocation: the least total error that fits a size budget.

Three steps, each usable on its own:

1. :func:`cost_table` lists, without reading any weights, what every tensor could get: each
   candidate encoding is passed through the same plan logic an export uses (shape fallbacks,
   export-format fallbacks), so the bytes are exact and two candidates that end up as the same
   encoding count once. Tensors that stay float are fixed bytes.
2. :func:`measure_tensor` fills in the error of each option: the sum of squared errors after a
   quantize/decode round trip, optionally weighted per column by an importance matrix. Large
   tensors are measured on evenly spaced rows (see :func:`sample_rows`) and the sum scaled up;
   ggml encodes every row on its own, so sampled rows give exactly their own errors and a tensor
   with few enough rows is measured exactly.
3. :func:`optimize` solves the budgeted choice (a multiple-choice knapsack): a greedy pass over
   each tensor's lower convex hull gives a feasible answer and a lower bound (the LP
   relaxation), a fill step spends what budget is left, and a depth-first branch and bound with
   the same bound proves optimality or improves the answer within a node limit. Every uniform
   assignment that fits is a candidate too, so the result never has more error than a uniform
   encoding of equal or smaller size.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .encodings import get_encoding
from .metrics import MetricsAccumulator

if TYPE_CHECKING:
    from .model import Model
    from .recipe import Recipe

DEFAULT_CANDIDATES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0")
#: float32 values measured per tensor at most (8 MiB); tensors no larger are measured exactly
SAMPLE_ELEMENTS = 1 << 21
#: branch-and-bound nodes before settling for the best answer found so far
NODE_LIMIT = 200_000
# The bound tables cost tensors x hull segments floats; above this, skip the exact search.
_MAX_BOUND_CELLS = 4_000_000
#: kl: measured output sensitivity (qtstudio.jobs.sensitivity), checked by a real eval
OBJECTIVES = ("mse", "imatrix", "kl")


class InfeasibleTargetError(ValueError):
    """The budget is below the smallest size any assignment of the candidates can reach."""

    def __init__(self, budget: int, floor: int, params: int, source: str = "") -> None:
        self.budget, self.floor, self.params = budget, floor, params
        super().__init__(
            (f"{source}: " if source else "")
            + f"target of {budget} bytes ({_bpw(budget, params):.4f} bpw) is below the smallest "
            f"reachable size: {floor} bytes ({_bpw(floor, params):.4f} bpw) with every tensor "
            f"at its smallest candidate; raise the target or add smaller candidates")


def _bpw(nbytes: float, params: int) -> float:
    return 8.0 * nbytes / params if params else 0.0


# --- targets -------------------------------------------------------------------------------
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
          "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from ``123456``, ``"4.2GB"`` (10^9), ``"3.5GiB"`` / ``"3.5G"`` (2^30), ``"800MB"``."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise ValueError(f"cannot read {text!r} as a size (examples: 123456, 4.2GB, 3.5GiB)")
        value, unit = float(m.group(1)), m.group(2).upper()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}; use B, KB, MB, GB, TB "
                         "(powers of 10) or KiB, MiB, GiB, TiB (powers of 2)")
    nbytes = math.floor(value * _UNITS[unit])
    if nbytes <= 0:
        raise ValueError(f"a target size must be positive, got {text!r}")
    return nbytes


def budget_for_bpw(target_bpw: float, total_params: int) -> int:
    """Bytes allowed at ``target_bpw`` over all parameters (as Plan.avg_bpw counts them)."""
    if not math.isfinite(target_bpw) or target_bpw <= 0:
        raise ValueError(f"--target-bpw must be a positive number, got {target_bpw}")
    return math.floor(target_bpw * total_params / 8.0)


# --- what each tensor could get ------------------------------------------------------------
@dataclass
class Option:
    """One encoding a tensor can take: exact bytes and measured error."""

    encoding: str
    nbytes: int
    #: the candidates that resolve to this encoding for this tensor (fallbacks merge them)
    requested: tuple[str, ...]
    error: float = math.nan


@dataclass
class TensorCosts:
    name: str
    shape: tuple[int, ...]
    params: int
    options: list[Option]
    gguf_name: str | None = None
    #: sum of squared (weighted) values, on the same rows and scale as the errors
    signal: float = 0.0
    rows: int = 0
    #: rows measured (== rows when exact)
    measured_rows: int = 0
    weighted: bool = False
    note: str | None = None

    @property
    def measured(self) -> bool:
        return all(not math.isnan(o.error) for o in self.options)

    def option_for(self, candidate: str) -> int:
        for i, o in enumerate(self.options):
            if candidate in o.requested:
                return i
        raise KeyError(f"{self.name}: no option for {candidate}")


@dataclass
class CostTable:
    tensors: list[TensorCosts]
    #: bytes of tensors the optimizer does not touch (they stay in the float encoding)
    fixed_bytes: int
    total_params: int
    candidates: list[str]
    float_encoding: str = "F32"
    target_format: str | None = "gguf"
    objective: str = "mse"
    #: the model file, for messages
    source: str = ""

    @property
    def floor_bytes(self) -> int:
        return self.fixed_bytes + sum(min(o.nbytes for o in t.options) for t in self.tensors)

    @property
    def ceiling_bytes(self) -> int:
        return self.fixed_bytes + sum(max(o.nbytes for o in t.options) for t in self.tensors)

    def check_budget(self, budget: int) -> None:
        if budget < self.floor_bytes:
            raise InfeasibleTargetError(budget, self.floor_bytes, self.total_params, self.source)


def cost_table(model: Model, candidates: Sequence[str] = DEFAULT_CANDIDATES, *,
               float_encoding: str = "F32", target_format: str | None = "gguf",
               objective: str = "mse") -> CostTable:
    """Every quantizable tensor's options under ``candidates``, from the plan logic alone."""
    from .plan import resolve_plan
    from .recipe import Recipe

    names = _candidate_names(candidates)
    quantizable = [t.name for t in model.tensors if t.quantizable]
    if not quantizable:
        raise ValueError(f"{model.path}: no quantizable tensors to allocate bits to")
    per_tensor: dict[str, dict[str, Option]] = {n: {} for n in quantizable}
    fixed = 0
    for k, cand in enumerate(names):
        recipe = Recipe(overrides=dict.fromkeys(quantizable, cand), float_encoding=float_encoding)
        plan = resolve_plan(model, recipe, target_format=target_format)
        for e in plan.entries:
            if not e.quantizable:
                if k == 0:
                    fixed += e.nbytes
                continue
            opts = per_tensor[e.name]
            if e.encoding in opts:
                opts[e.encoding].requested += (cand,)
            else:
                opts[e.encoding] = Option(e.encoding, e.nbytes, (cand,))
    tensors = []
    for t in model.tensors:
        if t.quantizable:
            opts = sorted(per_tensor[t.name].values(), key=lambda o: (o.nbytes, o.encoding))
            tensors.append(TensorCosts(t.name, tuple(t.shape), t.params, opts,
                                       gguf_name=t.gguf_name))
    return CostTable(tensors, fixed, model.total_params, names, float_encoding=float_encoding,
                     target_format=target_format, objective=objective, source=str(model.path))


def _candidate_names(candidates: Iterable[str]) -> list[str]:
    out: list[str] = []
    for c in candidates:
        name = get_encoding(c.strip()).name
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("the optimizer needs at least one candidate encoding")
    return out


# --- measuring -----------------------------------------------------------------------------
def sample_rows(n_rows: int, n_cols: int, sample_elements: int = SAMPLE_ELEMENTS,
                ) -> np.ndarray | None:
    """Indices of the rows to measure, or None for all of them (an exact measurement).

    A tensor with at most ``sample_elements`` values (or ``sample_elements <= 0``) is measured
    whole. Otherwise ceil(sample_elements / n_cols) rows are taken at evenly spaced positions
    (the middle row of each of that many equal strides), so the choice is deterministic and
    covers the whole tensor, including every expert of a stacked 3-D tensor.
    """
    if sample_elements <= 0:
        return None
    want = max(1, -(-sample_elements // max(1, n_cols)))
    if want >= n_rows:
        return None
    return (np.arange(want, dtype=np.int64) * n_rows) // want + (n_rows // want) // 2


def lookup_imatrix(imatrix: Any, costs: TensorCosts) -> np.ndarray | None:
    """The tensor's column weights by checkpoint or GGUF name; None when absent or mis-sized."""
    if not imatrix:
        return None
    n = costs.shape[-1] if costs.shape else 1
    for key in (costs.name, costs.gguf_name):
        if key is None:
            continue
        w = imatrix.get(key)
        if w is not None and np.size(w) == n:
            w = np.ascontiguousarray(np.reshape(w, n), dtype=np.float32)
            # Unusable weights (as the quantizers would see them) mean no weighting.
            if np.all(np.isfinite(w)) and np.all(w >= 0) and np.any(w > 0):
                return w
            return None
    return None


def needs_every_row(costs: TensorCosts) -> bool:
    """Whether some option's scales depend on the whole tensor (so no row sampling)."""
    return any(getattr(get_encoding(o.encoding), "needs_whole_tensor", False)
               for o in costs.options)


def measure_tensor(costs: TensorCosts, x: np.ndarray, *, imatrix: np.ndarray | None = None,
                   weighted: bool = False, threads: int | None = None,
                   sample_elements: int = SAMPLE_ELEMENTS, float_encoding: str = "F32",
                   cancel: Any = None, total_rows: int | None = None,
                   all_finite: bool | None = None) -> None:
    """Fill ``costs``' option errors from the tensor's float values ``x``.

    ``x`` is the whole tensor; or, with ``total_rows``, only the rows that
    ``sample_rows(total_rows, columns, sample_elements)`` picks (so a caller can read just
    those), with ``all_finite`` saying whether the whole tensor is free of NaN/Inf.
    ``imatrix`` goes to the quantizers (as the export will use it); ``weighted`` also weighs the
    squared errors by it. A tensor holding NaN or Inf cannot be quantized (the quantize job
    leaves such tensors alone), so its only option becomes the float encoding.
    """
    n = x.shape[-1] if x.ndim else 1
    x2 = x.reshape(-1, n)
    rows = x2.shape[0] if total_rows is None else total_rows
    idx = sample_rows(rows, n, sample_elements)
    if total_rows is not None and x2.shape[0] != (rows if idx is None else len(idx)):
        raise ValueError(f"{costs.name}: got {x2.shape[0]} rows, expected the sampled rows")
    if total_rows is not None and idx is not None and needs_every_row(costs):
        raise ValueError(f"{costs.name}: an option needs every row of the tensor")
    costs.rows = rows
    finite = bool(np.all(np.isfinite(x2))) if all_finite is None else all_finite
    if not finite:
        fenc = get_encoding(float_encoding)
        costs.options = [Option(fenc.name, fenc.nbytes(costs.shape), ("float",), 0.0)]
        costs.note = f"non-finite values: stays {fenc.name}"
        costs.measured_rows = rows
        return
    if total_rows is None and idx is not None:
        sample = np.ascontiguousarray(x2[idx], dtype=np.float32)
    else:
        sample = np.ascontiguousarray(x2, dtype=np.float32)
    costs.measured_rows = sample.shape[0]
    costs.weighted = weighted and imatrix is not None
    wt = imatrix if costs.weighted else None
    s = sample.astype(np.float64)
    costs.signal = float(np.einsum("ij,ij,j->", s, s, wt) if wt is not None
                         else np.einsum("ij,ij->", s, s)) * rows / sample.shape[0]
    del s
    for o in costs.options:
        if cancel is not None:
            cancel.check()
        enc = get_encoding(o.encoding)
        # Per-tensor scales depend on every row: such encodings are measured on all rows.
        part = sample
        if idx is not None and getattr(enc, "needs_whole_tensor", False):
            part = np.ascontiguousarray(x2, dtype=np.float32)
        acc = MetricsAccumulator(n, wt)
        q = enc.quantize_rows(part, imatrix=imatrix, threads=threads)
        acc.update(part, enc.dequantize_rows(q, n, threads=threads))
        o.error = acc.e2 * rows / part.shape[0]


# --- solving -------------------------------------------------------------------------------
@dataclass
class Solution:
    #: option index per tensor
    picks: list[int]
    nbytes: int
    error: float
    #: no assignment within the budget has less error than this (the LP relaxation)
    lower_bound: float
    proven_optimal: bool
    nodes: int = 0


def _pareto(opts: Sequence[tuple[int, float]]) -> list[int]:
    """Indices of options no other option beats on both bytes and error, by bytes ascending."""
    order = sorted(range(len(opts)), key=lambda i: (opts[i][0], opts[i][1]))
    keep: list[int] = []
    for i in order:
        if not keep or opts[i][1] < opts[keep[-1]][1]:
            if keep and opts[i][0] == opts[keep[-1]][0]:
                keep[-1] = i
            else:
                keep.append(i)
    return keep


def _hull(opts: Sequence[tuple[int, float]], front: list[int]) -> list[int]:
    """The lower convex hull of a Pareto front (bytes up, error down)."""
    hull: list[int] = []
    for i in front:
        while len(hull) >= 2:
            a, b = opts[hull[-2]], opts[hull[-1]]
            c = opts[i]
            # b lies on or above the segment a-c: it is never the better of the two neighbours.
            if (b[1] - a[1]) * (c[0] - a[0]) >= (c[1] - a[1]) * (b[0] - a[0]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


@dataclass
class _Segment:
    tensor: int
    to: int
    dbytes: int
    gain: float

    @property
    def slope(self) -> float:
        return self.gain / self.dbytes


def solve(options: Sequence[Sequence[tuple[int, float]]], budget: int, *,
          node_limit: int = NODE_LIMIT,
          extra_starts: Iterable[Sequence[int]] = ()) -> Solution:
    """Pick one (bytes, error) option per tensor: least total error with bytes <= ``budget``.

    ``extra_starts`` are complete assignments (e.g. uniform ones) to keep if they are better.
    Raises ValueError when even the smallest option of every tensor does not fit.
    """
    n = len(options)
    for t, opts in enumerate(options):
        if not opts:
            raise ValueError(f"tensor {t} has no options")
        if any(math.isnan(e) or e < 0 for _, e in opts):
            raise ValueError(f"tensor {t} has an unmeasured or negative error")
    fronts = [_pareto(o) for o in options]
    floor = sum(options[t][f[0]][0] for t, f in enumerate(fronts))
    if floor > budget:
        raise ValueError(f"the smallest assignment needs {floor} bytes, over the budget {budget}")

    # Greedy over hull segments, steepest error drop per byte first: a feasible assignment, and
    # with the first segment that does not fit taken fractionally, the LP relaxation's optimum.
    picks = [f[0] for f in fronts]
    segs: list[_Segment] = []
    for t, f in enumerate(fronts):
        h = _hull(options[t], f)
        for a, b in itertools.pairwise(h):
            segs.append(_Segment(t, b, options[t][b][0] - options[t][a][0],
                                 options[t][a][1] - options[t][b][1]))
    segs.sort(key=lambda s: -s.slope)
    left = budget - floor
    lower = sum(options[t][p][1] for t, p in enumerate(picks))
    blocked = False
    for s in segs:
        if s.dbytes <= left and not blocked:
            picks[s.tensor] = s.to
            left -= s.dbytes
            lower -= s.gain
        elif not blocked:
            lower -= s.gain * left / s.dbytes
            blocked = True
    lower = max(lower, 0.0)

    best = _fill(options, fronts, picks, budget)
    best_err = _error(options, best)
    for start in extra_starts:
        start = list(start)
        if _bytes(options, start) <= budget:
            start = _fill(options, fronts, start, budget)
            if _error(options, start) < best_err:
                best, best_err = start, _error(options, start)

    nodes = 0
    proven = best_err <= lower * (1 + 1e-12) + 1e-300
    if not proven and n <= 900 and n * max(1, len(segs)) <= _MAX_BOUND_CELLS:
        found, nodes, complete = _branch_and_bound(options, fronts, budget, best, best_err,
                                                   node_limit)
        if _error(options, found) < best_err:
            best, best_err = found, _error(options, found)
        proven = complete
        if complete:
            lower = best_err
    return Solution(best, _bytes(options, best), best_err, min(lower, best_err), proven, nodes)


def _bytes(options: Sequence[Sequence[tuple[int, float]]], picks: Sequence[int]) -> int:
    return sum(options[t][p][0] for t, p in enumerate(picks))


def _error(options: Sequence[Sequence[tuple[int, float]]], picks: Sequence[int]) -> float:
    return math.fsum(options[t][p][1] for t, p in enumerate(picks))


def _fill(options, fronts, picks: list[int], budget: int) -> list[int]:
    """Spend leftover bytes: repeatedly take the single-tensor change that cuts error most."""
    picks = list(picks)
    left = budget - _bytes(options, picks)
    while True:
        best_gain, best_move = 0.0, None
        for t, f in enumerate(fronts):
            cb, ce = options[t][picks[t]]
            for i in f:
                b, e = options[t][i]
                if ce - e > best_gain and b - cb <= left:
                    best_gain, best_move = ce - e, (t, i, b - cb)
        if best_move is None:
            return picks
        t, i, db = best_move
        picks[t] = i
        left -= db


def _branch_and_bound(options, fronts, budget: int, incumbent: list[int], inc_err: float,
                      node_limit: int) -> tuple[list[int], int, bool]:
    """Depth-first search with the LP bound of the tensors still open; exact if it finishes."""
    n = len(options)
    # Widest error ranges first: early decisions then matter most and prune most.
    order = sorted(range(n), key=lambda t: -(options[t][fronts[t][0]][1]
                                            - options[t][fronts[t][-1]][1]))
    base_bytes = [0] * (n + 1)
    base_err = [0.0] * (n + 1)
    cum_b: list[np.ndarray] = [np.zeros(0)] * (n + 1)
    cum_g: list[np.ndarray] = [np.zeros(0)] * (n + 1)
    seg_b: list[np.ndarray] = [np.zeros(0)] * (n + 1)
    seg_g: list[np.ndarray] = [np.zeros(0)] * (n + 1)
    suffix: list[tuple[float, int, float]] = []  # (slope, dbytes, gain)
    for d in range(n - 1, -1, -1):
        t = order[d]
        f = fronts[t]
        base_bytes[d] = base_bytes[d + 1] + options[t][f[0]][0]
        base_err[d] = base_err[d + 1] + options[t][f[0]][1]
        h = _hull(options[t], f)
        for a, b in itertools.pairwise(h):
            db = options[t][b][0] - options[t][a][0]
            g = options[t][a][1] - options[t][b][1]
            suffix.append((g / db, db, g))
        suffix.sort(key=lambda s: -s[0])
        sb = np.array([s[1] for s in suffix], dtype=np.float64)
        sg = np.array([s[2] for s in suffix], dtype=np.float64)
        seg_b[d], seg_g[d] = sb, sg
        cum_b[d], cum_g[d] = np.cumsum(sb), np.cumsum(sg)

    def bound(d: int, room: int) -> float:
        spare = room - base_bytes[d]
        if spare < 0:
            return math.inf
        cb = cum_b[d]
        if cb.size == 0:
            return base_err[d]
        j = int(np.searchsorted(cb, spare, side="right"))
        gain = float(cum_g[d][j - 1]) if j else 0.0
        if j < cb.size:
            used = float(cb[j - 1]) if j else 0.0
            gain += float(seg_g[d][j]) * (spare - used) / float(seg_b[d][j])
        return base_err[d] - gain

    best = [list(incumbent), inc_err]
    current = [0] * n
    nodes = 0
    tol = 1e-12

    def visit(d: int, room: int, err: float) -> bool:
        nonlocal nodes
        nodes += 1
        if nodes > node_limit:
            return False
        if d == n:
            if err < best[1]:
                picks = [0] * n
                for k in range(n):
                    picks[order[k]] = current[k]
                best[0], best[1] = picks, err
            return True
        if err + bound(d, room) >= best[1] * (1 - tol):
            return True
        t = order[d]
        rest = base_bytes[d + 1]
        for i in sorted(fronts[t], key=lambda i: options[t][i][1]):
            b, e = options[t][i]
            if b + rest > room:
                continue
            current[d] = i
            if not visit(d + 1, room - b, err + e):
                return False
        return True

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, n + 100))
    try:
        complete = visit(0, budget, 0.0)
    finally:
        sys.setrecursionlimit(limit)
    return best[0], nodes, complete


# --- the whole optimization ----------------------------------------------------------------
@dataclass
class Baseline:
    candidate: str
    nbytes: int
    bpw: float
    error: float
    fits: bool


@dataclass
class OptimizeResult:
    table: CostTable
    budget: int
    picks: list[int]
    total_bytes: int
    total_error: float
    lower_bound: float
    proven_optimal: bool
    baselines: list[Baseline] = field(default_factory=list)
    nodes: int = 0
    elapsed: float = 0.0
    #: kl objective: the eval check of the solved plan and its rivals on the calibration data
    #: ({"label", "nbytes", "bpw", "kl_mean"}), the label kept, and its recipe when the kept
    #: plan is not the solver's (a preset that won the check)
    checks: list[dict[str, Any]] = field(default_factory=list)
    chosen: str | None = None
    recipe_override: Recipe | None = None
    #: kl objective: the SensitivityResult the solver ran on
    sensitivity: Any = None
    #: how the plan's types are filled (a recipe QuantMethod; None: plain rounding)
    method: Any = None
    #: GPTQ method with the check: {"digest", "tensors"} sha256 of the kept plan's GPTQ bytes
    gptq_bytes: dict[str, Any] | None = None

    @property
    def avg_bpw(self) -> float:
        return _bpw(self.total_bytes, self.table.total_params)

    @property
    def target_bpw(self) -> float:
        return _bpw(self.budget, self.table.total_params)

    @property
    def total_signal(self) -> float:
        return math.fsum(t.signal for t in self.table.tensors)

    def choice(self, name: str) -> Option:
        for t, p in zip(self.table.tensors, self.picks, strict=True):
            if t.name == name:
                return t.options[p]
        raise KeyError(f"no quantizable tensor named {name!r}")

    def best_uniform(self) -> Baseline | None:
        """The uniform candidate with least error among those that fit the budget."""
        fits = [b for b in self.baselines if b.fits]
        return min(fits, key=lambda b: b.error) if fits else None

    def recipe(self) -> Recipe:
        from .recipe import Recipe

        if self.recipe_override is not None:
            return self.recipe_override
        overrides = {t.name: t.options[p].encoding
                     for t, p in zip(self.table.tensors, self.picks, strict=True)}
        extra = {} if self.method is None else {"method": self.method}
        return Recipe(overrides=overrides, float_encoding=self.table.float_encoding,
                      notes=self.notes(), **extra)

    def notes(self) -> str:
        t = self.table
        parts = [f"optimize: target {self.budget} bytes ({self.target_bpw:.4f} bpw); achieved "
                 f"{self.total_bytes} bytes ({self.avg_bpw:.4f} bpw); objective {t.objective} "
                 f"total error {self.total_error:.6g}"
                 + (" (proven optimal)" if self.proven_optimal else
                    f" (lower bound {self.lower_bound:.6g})")]
        base = self.best_uniform()
        if base is not None:
            parts.append(f"best uniform that fits: {base.candidate} at {base.bpw:.4f} bpw, "
                         f"error {base.error:.6g}")
        if self.checks:
            parts.append("eval check (calibration KL): " + ", ".join(
                f"{c['label']} {c['kl_mean']:.4g}" for c in self.checks)
                + f"; kept {self.chosen}")
        parts.append(f"candidates {','.join(t.candidates)}")
        return "; ".join(parts)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for t, p in zip(self.table.tensors, self.picks, strict=True):
            o = t.options[p]
            rel = math.sqrt(o.error / t.signal) if t.signal > 0 else None
            out.append({
                "name": t.name, "shape": list(t.shape), "params": t.params,
                "encoding": o.encoding, "nbytes": o.nbytes, "bpw": round(_bpw(o.nbytes, t.params),
                                                                          4),
                "error": o.error, "rel_error": rel,
                "measured_rows": t.measured_rows, "rows": t.rows,
                "exact": t.measured_rows == t.rows, "weighted": t.weighted, "note": t.note,
                "options": [{"encoding": x.encoding, "nbytes": x.nbytes, "error": x.error,
                             "requested": list(x.requested)} for x in t.options],
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_bytes": self.budget, "target_bpw": round(self.target_bpw, 4),
            "total_bytes": self.total_bytes, "avg_bpw": round(self.avg_bpw, 4),
            "floor_bytes": self.table.floor_bytes,
            "floor_bpw": round(_bpw(self.table.floor_bytes, self.table.total_params), 4),
            "fixed_bytes": self.table.fixed_bytes, "total_params": self.table.total_params,
            "objective": self.table.objective, "total_error": self.total_error,
            "total_signal": self.total_signal, "lower_bound": self.lower_bound,
            "proven_optimal": self.proven_optimal, "nodes": self.nodes,
            "candidates": self.table.candidates, "elapsed": round(self.elapsed, 3),
            "uniform": [{"candidate": b.candidate, "nbytes": b.nbytes, "bpw": round(b.bpw, 4),
                         "error": b.error, "fits": b.fits} for b in self.baselines],
            "tensors": self.rows(),
            "checks": self.checks, "chosen": self.chosen,
            "method": self.recipe().method.to_dict(), "gptq_bytes": self.gptq_bytes,
            "recipe": self.recipe().to_dict(),
        }


def uniform_picks(table: CostTable, candidate: str) -> list[int]:
    """Every tensor at ``candidate`` (through its fallbacks; non-finite tensors stay float)."""
    picks = []
    for t in table.tensors:
        try:
            picks.append(t.option_for(candidate))
        except KeyError:  # a tensor left float has that one option only
            picks.append(0)
    return picks


def optimize(table: CostTable, budget: int, *, node_limit: int = NODE_LIMIT) -> OptimizeResult:
    """The least-error assignment of ``table``'s measured options within ``budget`` bytes."""
    table.check_budget(budget)
    if not all(t.measured for t in table.tensors):
        missing = next(t.name for t in table.tensors if not t.measured)
        raise ValueError(f"tensor {missing} has not been measured")
    options = [[(o.nbytes, o.error) for o in t.options] for t in table.tensors]
    uniforms = {c: uniform_picks(table, c) for c in table.candidates}
    room = budget - table.fixed_bytes
    sol = solve(options, room, node_limit=node_limit,
                extra_starts=[p for p in uniforms.values() if _bytes(options, p) <= room])
    baselines = []
    for c, p in uniforms.items():
        nb = _bytes(options, p) + table.fixed_bytes
        baselines.append(Baseline(c, nb, _bpw(nb, table.total_params), _error(options, p),
                                  nb <= budget))
    return OptimizeResult(table, budget, sol.picks, sol.nbytes + table.fixed_bytes, sol.error,
                          sol.lower_bound, sol.proven_optimal, baselines, sol.nodes)
