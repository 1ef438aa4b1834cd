"""Where the engines get their weights: the checkpoint, a plan, or a caller's override.

Every engine reads a tensor through :class:`TensorAccess`, by GGUF name. The value is, in order:
an override the caller passed for this call; else the checkpoint's float32 values (decoded when
the file is quantized) passed through the access's ``weight_fn`` (a plan's decode(quantize(w)),
see :func:`plan_weight_fn`); then the layout fix the engine needs (a GGUF llama file's q/k rows
are interleaved for ggml's rotary embedding and are put back in Hugging Face order).

Overrides and ``weight_fn`` see and return the tensor in its *stored* layout, exactly what
``model.load(name)`` returns: the layout the exporter quantizes. Row quantizers commute with the
q/k row reordering, so decode(quantize(w)) in either layout gives the same model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CalibrationError

if TYPE_CHECKING:
    import torch

    from qtstudio.core.model import Model, TensorInfo
    from qtstudio.core.plan import Plan
    from qtstudio.formats.imatrix import ImportanceMatrix

#: (tensor description, float32 values in stored layout) -> the values the model should use
WeightFn = Callable[["TensorInfo", np.ndarray], np.ndarray]
#: GGUF tensor name -> replacement values (numpy or torch), stored layout
Overrides = Mapping[str, Any]

_FLOAT = ("F32", "F16", "BF16", "F64")


class TensorAccess:
    """Float weights of one model by GGUF name, with the weight function and layout fixes."""

    def __init__(self, model: Model, weight_fn: WeightFn | None = None,
                 transforms: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None
                 ) -> None:
        self.model = model
        self.weight_fn = weight_fn
        self.transforms = dict(transforms or {})
        self.by_gguf: dict[str, TensorInfo] = {}
        for t in model.tensors:
            key = t.gguf_name or t.name
            self.by_gguf.setdefault(key, t)

    def has(self, name: str) -> bool:
        return name in self.by_gguf

    def info(self, name: str) -> TensorInfo:
        try:
            return self.by_gguf[name]
        except KeyError:
            raise CalibrationError(self.model.path, f"the model has no tensor {name}") from None

    def block_weights(self, loaded: dict, overrides: Overrides | None) -> dict:
        """A loaded block's weights with single tensors replaced by ``overrides``."""
        if not overrides:
            return loaded
        out = dict(loaded)
        for n in overrides:
            if n in out:
                out[n] = self.tensor(n, overrides)
        return out

    def stored(self, name: str, overrides: Overrides | None = None) -> np.ndarray:
        """The values in stored layout, after the override or the weight function."""
        if overrides and name in overrides:
            v = overrides[name]
            arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            info = self.info(name)
            if tuple(arr.shape) != tuple(info.shape):
                raise ValueError(f"override for {name} has shape {tuple(arr.shape)}, the tensor "
                                 f"is {tuple(info.shape)}")
            return np.asarray(arr, dtype=np.float32)
        info = self.info(name)
        arr = self.model.load(info.name)
        if self.weight_fn is not None:
            arr = self.weight_fn(info, arr)
        return arr

    def tensor(self, name: str, overrides: Overrides | None = None) -> torch.Tensor:
        import torch

        arr = self.stored(name, overrides)
        fix = self.transforms.get(name)
        if fix is not None:
            arr = fix(arr)
        out = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
        if not (overrides and name in overrides):
            # the mapped file pages are copied: let them go, so a pass over a model whose
            # file is larger than memory keeps only one block resident
            from qtstudio.formats.mapped_pages import release_pages

            release_pages(self.model.load_raw(self.info(name).name))
        return out

    def optional(self, name: str, overrides: Overrides | None = None) -> torch.Tensor | None:
        return self.tensor(name, overrides) if self.has(name) else None


def plan_weight_fn(model: Model, plan: Plan, *, imatrix: ImportanceMatrix | None = None,
                   allow_requantize: bool = False, threads: int | None = None) -> WeightFn:
    """decode(quantize(w)) with each tensor's planned encoding: the values the export stores.

    As the GGUF export: a tensor already stored in its planned type keeps its stored values; a
    quantized tensor re-encoded to another type needs ``allow_requantize``; encodings that use an
    importance matrix get its weights (by GGUF name, else checkpoint name); 1-D tensors planned
    as F16/BF16 stay float32, as the exporter keeps them for llama.cpp.
    """
    from qtstudio.core.encodings import get_encoding

    entries = {e.name: e for e in plan.entries}
    if not allow_requantize:
        for e in plan.entries:
            if e.source_dtype not in _FLOAT and e.source_dtype != e.encoding:
                raise CalibrationError(model.path, f"tensor {e.name} is already "
                                                   f"{e.source_dtype}; re-encoding it as "
                                                   f"{e.encoding} compounds the quantization "
                                                   "error. Pass --allow-requantize to do it "
                                                   "anyway")

    def apply(info: TensorInfo, w: np.ndarray) -> np.ndarray:
        e = entries.get(info.name)
        if e is None or e.encoding == "F32" or e.encoding == info.dtype:
            return w
        if w.ndim == 1 and e.encoding in ("F16", "BF16"):
            return w
        enc = get_encoding(e.encoding)
        n = int(w.shape[-1])
        x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, n)
        weights = None
        if imatrix is not None and enc.uses_imatrix:
            n_mat = w.shape[0] if w.ndim == 3 else 1
            weights = imatrix.weights_for(info.gguf_name or info.name, n * n_mat)
            if weights is None:
                weights = imatrix.weights_for(info.name, n * n_mat)
            if weights is not None and n_mat > 1:
                rows = x.shape[0] // n_mat
                out = np.empty_like(x)
                for m in range(n_mat):
                    part = x[m * rows:(m + 1) * rows]
                    q = enc.quantize_rows(part, imatrix=weights[m * n:(m + 1) * n],
                                          threads=threads)
                    out[m * rows:(m + 1) * rows] = enc.dequantize_rows(q, n, threads=threads)
                return out.reshape(w.shape)
        if not np.isfinite(x).all():
            raise CalibrationError(model.path, f"tensor {info.name} holds non-finite values; "
                                               f"it cannot be encoded as {enc.name}")
        q = enc.quantize_rows(x, imatrix=weights, threads=threads)
        return enc.dequantize_rows(q, n, threads=threads).reshape(w.shape)

    return apply


# llama.cpp's CPU backend multiplies a quantized matrix with activations it first rounds to
# the type's "vec_dot" partner: 32-value Q8_0/Q8_1 blocks for the legacy types and IQ4_NL,
# 256-value Q8_K blocks for the K and IQ types; half-precision weights take half activations.
_Q8_32 = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "IQ4_NL"}
_HALF = {"F16": "f16", "BF16": "bf16"}


def activation_rounding(enc_name: str) -> str | None:
    """How llama.cpp's CPU backend rounds the input of a matmul with this weight type:
    "q8_32", "q8_256", "f16", "bf16", or None (float32, as is)."""
    if enc_name in _HALF:
        return _HALF[enc_name]
    if enc_name in _Q8_32:
        return "q8_32"
    from qtstudio.core.encodings import get_encoding

    try:
        enc = get_encoding(enc_name)
    except (KeyError, ValueError):
        return None
    return "q8_256" if enc.ggml_type is not None and enc.elements_per_block == 256 else None


def plan_activation_rounding(plan: Plan) -> dict[str, str]:
    """GGUF name (else checkpoint name) -> activation rounding for each matrix of the plan."""
    out: dict[str, str] = {}
    for e in plan.entries:
        if len(e.shape) < 2:
            continue
        kind = activation_rounding(e.encoding)
        if kind is not None:
            out[e.gguf_name or e.name] = kind
    return out


def round_activations(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x [..., n] rounded as llama.cpp rounds a matmul input (see activation_rounding)."""
    import torch

    if kind == "f16":
        return x.to(torch.float16).to(x.dtype)
    if kind == "bf16":
        return x.to(torch.bfloat16).to(x.dtype)
    block = 32 if kind == "q8_32" else 256
    n = x.shape[-1]
    if n % block:
        return x
    xb = x.reshape(*x.shape[:-1], n // block, block)
    d = xb.abs().amax(-1, keepdim=True) / 127.0
    if block == 32:  # Q8_0 keeps its block scale in half precision
        d = d.to(torch.float16).to(x.dtype)
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.round(xb * inv).clamp(-127, 127)
    return (q * d).reshape(x.shape)
