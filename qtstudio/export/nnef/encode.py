"""Turn one variable into .dat bytes in its encoding, and report what the reader will see."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qtstudio.core.encodings import get_encoding
from qtstudio.core.metrics import tensor_metrics
from qtstudio.core.qtensor import quantize

from .builder import Variable, float_literal
from .dat import array_dat, q4_0_dat
from .q4_0 import quantize_q4_0


@dataclass
class Encoded:
    header: bytes
    payload: bytes
    #: what tract computes with, float32 in the variable's stored shape
    decoded: np.ndarray
    quant_line: str | None = None
    #: data for side variables (per-channel scale / zero point), by identifier
    side: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


def encode_variable(var: Variable, *, calibration: str = "minmax",
                    threads: int | None = None) -> Encoded:
    t = var.tensor.detach().cpu()
    if var.kind == "integer":
        arr = t.numpy().astype(np.int64)
        h, p = array_dat(arr)
        return Encoded(h, p, arr)
    x = t.float().numpy().astype(np.float32).reshape(var.shape)
    enc = var.encoding
    if enc == "F32":
        h, p = array_dat(x)
        return Encoded(h, p, x)
    if enc == "F16":
        half = x.astype(np.float16)
        h, p = array_dat(half)
        return Encoded(h, p, half.astype(np.float32), stats=_stats(x, half.astype(np.float32)))
    if enc == "Q4_0":
        rows = var.shape[0]
        r = quantize_q4_0(x.reshape(rows, -1), calibration, threads=threads)
        h, p = q4_0_dat(r.blocks, var.shape)
        stats = _stats(x, r.decoded.reshape(var.shape))
        stats.update(mse_minmax=r.mse_minmax, mse=r.mse, gain_over_minmax=r.gain)
        return Encoded(h, p, r.decoded.reshape(var.shape), stats=stats)
    if enc.startswith("INT8_"):
        return _encode_int8(var, x, threads)
    raise ValueError(f"{var.label}: NNEF export cannot write encoding {enc}")


def _encode_int8(var: Variable, x: np.ndarray, threads: int | None) -> Encoded:
    enc = get_encoding(var.encoding)
    shape = var.shape if var.shape else (1,)
    qt = quantize(x.reshape(shape), enc, threads=threads)
    n = shape[-1]
    q, scale, zp = enc.split(qt.data, n)  # type: ignore[attr-defined]
    q = q.reshape(shape)
    decoded = enc.dequantize_rows(qt.data, n).reshape(var.shape)
    h, p = array_dat(q.reshape(var.shape), quantized=True)
    side: dict[str, np.ndarray] = {}
    if getattr(enc, "per_channel", False):
        # graph.quant holds one scale per tensor: store raw codes (scale 1) and apply the
        # per-row scale and zero point as explicit f32 tensors in the graph
        line = _quant_line(var.ident, 1.0, 0)
        side_shape = (*tuple(shape[:-1]), 1)
        if var.scale_ident:
            side[var.scale_ident] = scale.astype(np.float32).reshape(side_shape)
        if var.zero_ident:
            side[var.zero_ident] = zp.astype(np.float32).reshape(side_shape)
    else:
        line = _quant_line(var.ident, float(scale[0]), int(zp[0]))
    return Encoded(h, p, decoded.astype(np.float32), quant_line=line, side=side,
                   stats=_stats(x, decoded))


def _quant_line(ident: str, scale: float, zero_point: int) -> str:
    return (f'"{ident}": zero_point_linear_quantize(zero_point = {zero_point}, '
            f"scale = {float_literal(scale)}, bits = 8, signed = true, symmetric = false);")


def _stats(x: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    m = tensor_metrics(x.reshape(-1), decoded.reshape(-1))
    return {"rmse": float(m.rmse), "snr_db": float(m.snr_db), "max_abs": float(m.max_abs)}
