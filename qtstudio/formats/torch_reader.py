"""PyTorch state dicts (.bin / .pt / .pth) loaded with weights_only=True and mmap=True.

weights_only restricts unpickling to tensors and plain containers, so a file whose pickle
would call arbitrary code is refused by torch before anything runs; we turn that refusal into
a message that says why. mmap keeps tensor storage on disk until a tensor is read.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtstudio.core.model import RawTensor
from qtstudio.core.regular_files import regular_size

from .errors import ModelFormatError
from .floats import PLAIN_DTYPES, plain_to_f32

_TORCH_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|global:? ?`?([\w.]+)", re.IGNORECASE)


def _refusal(path: Path, exc: Exception) -> ModelFormatError:
    text = str(exc)
    m = _GLOBAL.search(text)
    if m is None:
        # weights_only wraps every unpickling failure; without a global it is damage, not code
        detail = " ".join(line.strip() for line in text.splitlines()
                          if line.strip() and "weights_only" not in line
                          and "PyTorch 2.6" not in line and "documentation" not in line)
        return ModelFormatError(path, "the pickle is damaged or not a state dict"
                                      + (f" ({detail[:200]})" if detail else ""))
    return ModelFormatError(
        path, f"refused: this pickle needs code to load (it references "
              f"{m.group(1) or m.group(2)}). Only plain tensors and "
              "containers are accepted (weights_only loading), so it was never unpickled; "
              "re-save it as a state dict or as safetensors")


def _damaged(path: Path, exc: BaseException) -> ModelFormatError:
    if isinstance(exc, RecursionError):
        return ModelFormatError(path, "the pickle nests containers too deeply to be a state dict")
    if isinstance(exc, MemoryError):
        return ModelFormatError(path, "the file asks for more memory than it could hold: damaged")
    text = " ".join(str(exc).split())[:200]
    return ModelFormatError(path, f"not a loadable PyTorch file ({type(exc).__name__}: {text})")


def _torch_load(path: Path) -> Any:
    regular_size(path)  # a FIFO or device is refused before torch opens it
    # torch warns about odd pickle protocols and the like; the user gets our verdict instead
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _torch_load_quiet(path)


def _torch_load_quiet(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except RuntimeError as exc:
        if "mmap" not in str(exc) or _is_zip(path):
            raise _damaged(path, exc) from None
    except Exception as exc:
        raise _damaged(path, exc) from None
    # The pre-1.6 (non-zip) format cannot be mapped; it still loads weights-only.
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except Exception as exc:
        raise _damaged(path, exc) from None


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


#: containers deeper than this are not a state dict (and a self-containing dict stops here)
MAX_DEPTH = 32


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0,
             active: set[int] | None = None) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return
    if not isinstance(obj, dict) or depth > MAX_DEPTH:
        return
    active = set() if active is None else active
    if id(obj) in active:  # a dict that contains itself: the cycle holds nothing new
        return
    active.add(id(obj))
    for k, v in obj.items():
        if isinstance(k, str):
            _flatten(v, f"{prefix}.{k}" if prefix else k, out, depth + 1, active)
    active.discard(id(obj))


def _state_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise ModelFormatError(path, f"holds a {type(obj).__name__}, not a state dict")
    # Training checkpoints wrap the weights: {"state_dict": {...}, "epoch": 3, ...}.
    for key in ("state_dict", "model_state_dict", "model", "module"):
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    out: dict[str, torch.Tensor] = {}
    _flatten(obj, "", out)
    if not out:
        raise ModelFormatError(path, "holds no tensors")
    return out


def _dtype_name(dtype: torch.dtype) -> str:
    return _TORCH_DTYPES.get(dtype) or str(dtype).removeprefix("torch.").upper()


def _examine(t: torch.Tensor) -> tuple[str | None, int]:
    """(why the tensor cannot be read or None, bytes it really stores), from its metadata
    alone: nothing is allocated or copied, whatever its shape and strides claim."""
    if t.is_meta:
        return "a meta tensor: the file holds its shape but no values", 0
    if t.layout != torch.strided:
        return (f"a {str(t.layout).removeprefix('torch.')} tensor: only dense tensors can be "
                "read (save it with .to_dense())"), 0
    if t.is_quantized:
        return f"a torch-quantized {t.dtype} tensor: its values need torch's quantizer", 0
    if t.dtype not in _TORCH_DTYPES:
        readable = ", ".join(_TORCH_DTYPES.values())
        return f"dtype {t.dtype} cannot be read (readable: {readable})", 0
    size = t.element_size()
    storage = t.untyped_storage().nbytes()
    shape, strides = tuple(t.shape), t.stride()
    numel = math.prod(shape)
    if numel == 0:
        return None, 0
    if any(st < 0 for st in strides):
        return f"negative strides {strides}", 0
    last = sum((d - 1) * st for d, st in zip(shape, strides, strict=True))
    reach = (t.storage_offset() + last + 1) * size
    if reach > storage:
        return (f"its view (shape {list(shape)}, strides {list(strides)}) reaches byte "
                f"{reach} of a {storage}-byte storage"), 0
    if numel * size > storage:
        # stride 0 or overlapping strides: the view repeats bytes; reading it would allocate
        # the logical size, which the file never paid for
        return (f"shape {list(shape)} with strides {list(strides)} shows {numel * size} bytes "
                f"of values from a {storage}-byte storage (a repeated, stride-0 view); save "
                "it with .contiguous() or .clone()"), storage
    return None, numel * size


class TorchSource:
    def __init__(self, tensors: dict[str, tuple[Path, torch.Tensor]]) -> None:
        self._tensors: dict[str, tuple[Path, torch.Tensor]] = {}
        self.raws: list[RawTensor] = []
        for name, (path, t) in tensors.items():
            t = t.detach()  # an nn.Parameter is a tensor that requires grad: numpy refuses it
            why, nbytes = _examine(t)
            self._tensors[name] = (path, t)
            self.raws.append(RawTensor(name, tuple(t.shape), _dtype_name(t.dtype), nbytes, why))
        self._raw = {r.name: r for r in self.raws}

    def load_raw(self, name: str) -> np.ndarray:
        if not self._tensors:
            raise ValueError("the model was closed")
        path, t = self._tensors[name]
        raw = self._raw[name]
        if raw.unreadable is not None:
            raise ModelFormatError(path, raw.unreadable, tensor=name)
        try:
            t = t.contiguous()
            if raw.dtype == "BF16":
                return t.view(torch.int16).numpy().view(np.uint16)
            return t.numpy().view(PLAIN_DTYPES[raw.dtype])
        except RuntimeError as exc:  # storage mapped from a file that shrank, and the like
            raise ModelFormatError(path, f"cannot read the data ({exc})", tensor=name) from None

    def load(self, name: str) -> np.ndarray:
        return plain_to_f32(self.load_raw(name), self._raw[name].dtype)

    def close(self) -> None:
        self._tensors = {}


def open_torch(paths: list[Path], *, index_path: Path | None = None,
               weight_map: dict[str, str] | None = None) -> TorchSource:
    tensors: dict[str, tuple[Path, torch.Tensor]] = {}
    for p in paths:
        for name, t in _state_dict(p, _torch_load(p)).items():
            if name in tensors:
                raise ModelFormatError(p, f"tensor also stored in {tensors[name][0].name}",
                                       tensor=name)
            tensors[name] = (p, t)
    if weight_map is not None and index_path is not None:
        for name, fname in weight_map.items():
            got = tensors.get(name)
            if got is None or got[0].name != fname:
                raise ModelFormatError(index_path, f"the index places this tensor in {fname}, "
                                                   "but that shard does not hold it", tensor=name)
    return TorchSource(tensors)
