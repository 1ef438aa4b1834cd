"""PyTorch state dicts (.bin / .pt / .pth) loaded with weights_only=True and mmap=True.

weights_only restricts unpickling to tensors and plain containers, so a file whose pickle
would call arbitrary code is refused by torch before anything runs; we turn that refusal into
a message that says why. mmap keeps tensor storage on disk until a tensor is read.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtstudio.core.model import RawTensor

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
    what = f" (it references {m.group(1) or m.group(2)})" if m else ""
    return ModelFormatError(
        path, "refused: this pickle needs code to load" + what + ". Only plain tensors and "
              "containers are accepted (weights_only loading), so it was never unpickled; "
              "re-save it as a state dict or as safetensors")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except RuntimeError as exc:
        if "mmap" in str(exc) and zipfile.is_zipfile(path) is False:
            # The pre-1.6 (non-zip) format cannot be mapped; it still loads weights-only.
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
            except pickle.UnpicklingError as exc2:
                raise _refusal(path, exc2) from None
            except Exception as exc2:
                raise ModelFormatError(path, f"not a loadable PyTorch file ({exc2})") from None
        raise ModelFormatError(path, f"not a loadable PyTorch file ({exc})") from None
    except (EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ModelFormatError(path, f"not a loadable PyTorch file ({type(exc).__name__}: "
                                     f"{exc})") from None


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                _flatten(v, f"{prefix}.{k}" if prefix else k, out)


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


class TorchSource:
    def __init__(self, tensors: dict[str, tuple[Path, torch.Tensor]]) -> None:
        self._tensors = tensors
        self.raws: list[RawTensor] = []
        for name, (path, t) in tensors.items():
            dtype = _TORCH_DTYPES.get(t.dtype)
            if dtype is None:
                raise ModelFormatError(path, f"unsupported dtype {t.dtype} in tensor {name!r}",
                                       tensor=name)
            self.raws.append(RawTensor(name, tuple(t.shape), dtype,
                                       t.numel() * t.element_size()))
        self._dtypes = {r.name: r.dtype for r in self.raws}

    def load_raw(self, name: str) -> np.ndarray:
        if not self._tensors:
            raise ValueError("the model was closed")
        t = self._tensors[name][1].contiguous()
        dtype = self._dtypes[name]
        if dtype == "BF16":
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy().view(PLAIN_DTYPES[dtype])

    def load(self, name: str) -> np.ndarray:
        return plain_to_f32(self.load_raw(name), self._dtypes[name])

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
