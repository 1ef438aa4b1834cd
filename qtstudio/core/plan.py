"""Plans: which encoding every tensor of a model gets, and what that costs, before any work.

``resolve_plan`` applies a recipe to a model in llama-quantize's order of precedence: tensors
llama-quantize never quantizes stay float; the recipe's output / token-embedding types; per-tensor
overrides; then rules (first match wins), else the preset's mixture; then shape fallbacks and
export-format fallbacks, each recorded with its reason and its cost in bits per weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .encodings import Encoding, get_encoding
from .int_storage import INTEGER_DTYPES
from .nnef_rules import nnef_float_fallback, static_nnef_problem
from .presets import PRESETS, Category, Mixture, category_of, shape_fallback

if TYPE_CHECKING:
    from .model import Model, TensorInfo
    from .recipe import Recipe

#: the primer's runtime overhead factor: M ~= P * Q / 8 * 1.2
MEMORY_OVERHEAD = 1.2

# What to use instead when the target file format cannot carry an encoding.
_FORMAT_FALLBACK = {
    "gguf": lambda enc: "Q8_0" if enc.bpw > 5.0 else "Q4_0",
    "nnef": nnef_float_fallback,
    "safetensors": lambda enc: "F16",
}
#: the file formats a plan can be made to fit (``resolve_plan``'s ``target_format``)
TARGET_FORMATS = tuple(_FORMAT_FALLBACK)


@dataclass(frozen=True)
class PlanEntry:
    name: str
    gguf_name: str | None
    shape: tuple[int, ...]
    source_dtype: str
    #: what the recipe asked for (None: nothing asked, the tensor stays float)
    requested: str | None
    #: what it will get
    encoding: str
    fallback_from: str | None
    reason: str | None
    nbytes: int
    bpw: float
    origin: str
    params: int = 0
    quantizable: bool = False
    #: bits per weight paid (positive) or saved by the fallback, against the requested type
    bpw_cost: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "gguf_name": self.gguf_name, "shape": list(self.shape),
            "source_dtype": self.source_dtype, "requested": self.requested,
            "encoding": self.encoding, "nbytes": self.nbytes, "bpw": round(self.bpw, 4),
            "origin": self.origin, "params": self.params,
        }
        if self.fallback_from is not None:
            d["fallback_from"] = self.fallback_from
            d["reason"] = self.reason
            d["bpw_cost"] = None if self.bpw_cost is None else round(self.bpw_cost, 4)
        return d


@dataclass
class Plan:
    entries: list[PlanEntry]
    target_format: str | None = "gguf"
    preset: str | None = None
    #: bytes of the source checkpoint, for comparison
    original_bytes: int = 0
    _index: dict[str, PlanEntry] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {e.name: e for e in self.entries}

    def entry(self, name: str) -> PlanEntry:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"the plan has no tensor named {name!r}") from None

    def encoding_for(self, name: str) -> Encoding:
        return get_encoding(self.entry(name).encoding)

    @property
    def total_params(self) -> int:
        return sum(e.params for e in self.entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    @property
    def avg_bpw(self) -> float:
        p = self.total_params
        return 8.0 * self.total_bytes / p if p else 0.0

    @property
    def memory_estimate_bytes(self) -> int:
        """P * Q / 8 * 1.2 with Q the plan's average bits per weight."""
        return round(self.total_params * self.avg_bpw / 8.0 * MEMORY_OVERHEAD)

    @property
    def fallbacks(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.fallback_from is not None]

    @property
    def fallback_bpw_cost(self) -> float:
        """How much the fallbacks moved the model's average bits per weight."""
        p = self.total_params
        bits = sum((e.bpw_cost or 0.0) * e.params for e in self.fallbacks)
        return bits / p if p else 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.encoding] = out.get(e.encoding, 0) + 1
        return out

    def totals(self) -> dict[str, Any]:
        return {
            "total_params": self.total_params,
            "total_bytes": self.total_bytes,
            "original_bytes": self.original_bytes,
            "avg_bpw": round(self.avg_bpw, 4),
            "memory_estimate_bytes": self.memory_estimate_bytes,
            "n_fallbacks": len(self.fallbacks),
            "fallback_bpw_cost": round(self.fallback_bpw_cost, 4),
            "encodings": self.counts(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "target_format": self.target_format,
                "tensors": [e.to_dict() for e in self.entries], **self.totals()}


def _nominal_bytes(enc: Encoding, params: int) -> float:
    return enc.bpw * params / 8.0


def _float_encoding(recipe: Recipe, info: TensorInfo) -> str:
    # integer tensors (position ids, index buffers) stay integers of their own width
    if info.dtype in INTEGER_DTYPES:
        return info.dtype
    return recipe.float_encoding


def resolve_plan(model: Model, recipe: Recipe, *, target_format: str | None = "gguf",
                 has_imatrix: bool = False) -> Plan:
    """Decide every tensor's encoding. ``target_format=None`` skips export-format checks."""
    preset = PRESETS[recipe.preset] if recipe.preset else None
    mixture = Mixture(model, preset, has_imatrix=has_imatrix) if preset else None
    chosen: dict[str, tuple[str | None, str, str]] = {}  # name -> (requested, encoding, origin)
    # llama.cpp's counters depend on its tensor order, so decide in that order.
    for info in Mixture.order(model):
        chosen[info.name] = _choose(info, recipe, preset, mixture)
    entries: list[PlanEntry] = []
    for info in model.tensors:
        requested, enc_name, origin = chosen[info.name]
        entries.append(_finish(info, requested, enc_name, origin, target_format))
    return Plan(entries, target_format=target_format, preset=recipe.preset,
                original_bytes=model.total_bytes)


def _choose(info: TensorInfo, recipe: Recipe, preset, mixture: Mixture | None,
            ) -> tuple[str | None, str, str]:
    fenc = _float_encoding(recipe, info)
    override = recipe.overrides.get(info.name)
    if not info.quantizable:
        if override is not None:
            return override, override, "override"
        return None, fenc, "float"
    cat = category_of(info)
    if recipe.token_embedding_type and cat == Category.TOKEN_EMBD:
        return recipe.token_embedding_type, recipe.token_embedding_type, "override"
    if recipe.output_tensor_type and cat == Category.OUTPUT:
        return recipe.output_tensor_type, recipe.output_tensor_type, "override"
    if override is not None:
        return override, override, "override"
    for i, rule in enumerate(recipe.rules):
        if rule.matches(info):
            return rule.encoding, rule.encoding, f"rule {i + 1}"
    if preset is None:
        if recipe.default_encoding:
            return recipe.default_encoding, recipe.default_encoding, "default"
        return None, fenc, "float"
    if not preset.quantized or recipe.pure or mixture is None:
        return preset.default, preset.default, "preset"
    enc = mixture.choose(info, preset.default, output_type=recipe.output_tensor_type)
    return enc, enc, "preset"


def _finish(info: TensorInfo, requested: str | None, enc_name: str, origin: str,
            target_format: str | None) -> PlanEntry:
    fallback_from: str | None = None
    reasons: list[str] = []
    name = enc_name
    if requested is not None and not info.quantizable and not _is_float(name):
        reasons.append(f"{info.role} tensor {info.name} is not quantizable")
        name = "F32"
    else:
        name, why = shape_fallback(name, info.shape) if info.shape else (name, None)
        if why:
            reasons.append(why)
    enc = get_encoding(name)
    if target_format == "nnef" and info.shape:
        problem = static_nnef_problem(enc, info.shape, role=info.role)
        if problem:
            reasons.append(problem)
            enc = get_encoding(nnef_float_fallback(enc))
    elif target_format is not None and target_format not in enc.export_formats:
        alt = _FORMAT_FALLBACK.get(target_format, lambda e: "F16")(enc)
        alt_name, why = shape_fallback(alt, info.shape)
        reasons.append(f"{target_format} files cannot store {enc.name}")
        if why:
            reasons.append(why)
        enc = get_encoding(alt_name)
    if enc.name != enc_name:
        fallback_from = enc_name
    nbytes = enc.nbytes(info.shape) if info.shape else enc.row_bytes(1)
    params = info.params
    bpw = 8.0 * nbytes / params if params else 0.0
    cost = None
    if fallback_from is not None and params:
        asked = get_encoding(fallback_from)
        cost = bpw - 8.0 * _nominal_bytes(asked, params) / params
    return PlanEntry(
        name=info.name, gguf_name=info.gguf_name, shape=info.shape, source_dtype=info.dtype,
        requested=requested, encoding=enc.name, fallback_from=fallback_from,
        reason="; ".join(reasons) or None, nbytes=nbytes, bpw=bpw, origin=origin,
        params=params, quantizable=info.quantizable, bpw_cost=cost,
    )


def _is_float(name: str) -> bool:
    return get_encoding(name).ggml_type in (0, 1, 30)
