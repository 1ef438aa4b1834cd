"""``save_tensors`` / ``load_tensors``: a dict of arrays and QTensors in one GGUF file.

The counterpart of MAX's weight save/load for our own tensors. Plain numpy arrays keep their
dtype (the GGUF plain types F32, F16, F64, I8, I16, I32, I64); a QTensor in a ggml encoding is
stored as that ggml type, so llama.cpp tools and the ``gguf`` package read it as such. A QTensor
in an encoding ggml does not have (int8 per channel, plugins) is stored as its raw bytes (I8)
with its encoding name and logical shape in the metadata, and comes back as the same QTensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType

from qtstudio.core.encodings import get_encoding
from qtstudio.core.qtensor import QTensor
from qtstudio.formats.atomic import atomic_output
from qtstudio.formats.gguf_writer import GGUFStreamWriter, GGUFWriteError

_PLAIN_BY_DTYPE = {
    np.dtype("float32"): GGMLQuantizationType.F32,
    np.dtype("float16"): GGMLQuantizationType.F16,
    np.dtype("float64"): GGMLQuantizationType.F64,
    np.dtype("int8"): GGMLQuantizationType.I8,
    np.dtype("int16"): GGMLQuantizationType.I16,
    np.dtype("int32"): GGMLQuantizationType.I32,
    np.dtype("int64"): GGMLQuantizationType.I64,
}
_DTYPE_BY_PLAIN = {v.name: k for k, v in _PLAIN_BY_DTYPE.items()}
_ENC_KEY = "qtstudio.tensor.{}.encoding"
_SHAPE_KEY = "qtstudio.tensor.{}.shape"


def _metadata_value(key: str, value: Any) -> tuple[Any, GGUFValueType, GGUFValueType | None]:
    if isinstance(value, bool):
        return value, GGUFValueType.BOOL, None
    if isinstance(value, int):
        return value, GGUFValueType.INT64, None
    if isinstance(value, float):
        return value, GGUFValueType.FLOAT64, None
    if isinstance(value, str):
        return value, GGUFValueType.STRING, None
    if isinstance(value, list | tuple) and value:
        first = value[0]
        if all(isinstance(v, str) for v in value):
            return list(value), GGUFValueType.ARRAY, GGUFValueType.STRING
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value), GGUFValueType.ARRAY, GGUFValueType.INT64
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value], GGUFValueType.ARRAY, GGUFValueType.FLOAT64
        raise ValueError(f"metadata {key!r}: list items must all be str, int or float "
                         f"(first is {type(first).__name__})")
    raise ValueError(f"metadata {key!r}: cannot store a {type(value).__name__} "
                     "(use str, int, float, bool or a non-empty list of those)")


def save_tensors(path: str | Path, tensors: Mapping[str, QTensor | np.ndarray],
                 metadata: Mapping[str, Any] | None = None) -> None:
    """Write tensors (numpy arrays or QTensors) and optional metadata to a GGUF file."""
    if not isinstance(tensors, Mapping):
        raise TypeError("tensors must be a mapping of name -> QTensor or numpy array")
    plan: list[tuple[str, tuple[int, ...], GGMLQuantizationType, np.ndarray]] = []
    extra: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]] = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
        if isinstance(t, QTensor):
            if t.encoding.ggml_type is not None:
                plan.append((name, t.shape, GGMLQuantizationType(t.encoding.ggml_type), t.data))
            else:
                raw = t.data.reshape(t.data.shape[0], -1)
                plan.append((name, raw.shape, GGMLQuantizationType.I8, raw.view(np.int8)))
                extra[_ENC_KEY.format(name)] = (t.encoding.name, GGUFValueType.STRING, None)
                extra[_SHAPE_KEY.format(name)] = (list(t.shape), GGUFValueType.ARRAY,
                                                  GGUFValueType.INT64)
        elif isinstance(t, np.ndarray):
            dt = t.dtype.newbyteorder("=") if t.dtype.byteorder not in "=|" else t.dtype
            gt = _PLAIN_BY_DTYPE.get(np.dtype(dt))
            if gt is None:
                raise TypeError(f"tensor {name!r}: dtype {t.dtype} has no GGUF type; use "
                                f"{', '.join(str(d) for d in _PLAIN_BY_DTYPE)} or a QTensor")
            arr = t if t.ndim else t.reshape(1)
            plan.append((name, arr.shape, gt, arr))
        else:
            raise TypeError(f"tensor {name!r}: expected a QTensor or numpy array, "
                            f"got {type(t).__name__}")
    with atomic_output(path) as f:
        w = GGUFStreamWriter(f)
        try:
            w.add_kv("general.architecture", "qtstudio-tensors", GGUFValueType.STRING)
            for key, value in (metadata or {}).items():
                if not isinstance(key, str) or not key:
                    raise ValueError(f"metadata keys must be non-empty strings, got {key!r}")
                w.add_kv(key, *_metadata_value(key, value))
            for key, (v, vt, st) in extra.items():
                w.add_kv(key, v, vt, st)
            for name, shape, gt, _ in plan:
                w.add_tensor_info(name, shape, gt)
            w.write_header()
            for name, _, _, data in plan:
                little = data.astype(data.dtype.newbyteorder("<"), copy=False) \
                    if data.dtype.itemsize > 1 else data
                w.write_tensor_data(name, np.ascontiguousarray(little))
            w.finish()
        except GGUFWriteError as exc:
            raise ValueError(f"cannot save {path}: {exc}") from None


def load_tensors(path: str | Path, *, with_metadata: bool = False
                 ) -> dict[str, QTensor | np.ndarray] | tuple[dict[str, QTensor | np.ndarray],
                                                             dict[str, Any]]:
    """Read a file written by :func:`save_tensors` (or any GGUF): arrays and QTensors."""
    from qtstudio.formats import open_model

    out: dict[str, QTensor | np.ndarray] = {}
    with open_model(Path(path)) as model:
        if model.format != "gguf":
            raise ValueError(f"{path}: load_tensors reads GGUF files; this is {model.format}")
        meta = dict(model.metadata)
        for info in model.tensors:
            raw = model.load_raw(info.name)
            enc_name = meta.get(_ENC_KEY.format(info.name))
            if isinstance(enc_name, str):
                shape = tuple(int(s) for s in meta.get(_SHAPE_KEY.format(info.name), ()))
                out[info.name] = QTensor(np.array(raw, dtype=np.int8).view(np.uint8),
                                         shape, get_encoding(enc_name))
            elif info.dtype in _DTYPE_BY_PLAIN:
                out[info.name] = np.array(raw, dtype=_DTYPE_BY_PLAIN[info.dtype])
            else:
                out[info.name] = QTensor(np.array(raw, dtype=np.uint8), info.shape,
                                         get_encoding(info.dtype))
    if with_metadata:
        return out, meta
    return out
