"""A third-party encoding, as a plugin package would ship it (used by tests/test_encodings_plugin).

SIGN1_TEST: one bit per weight (its sign) and a per-row float32 scale (the mean absolute value).
Row layout: f32 scale, then n/8 bytes of sign bits (LSB first), so rows must be multiples of 8.
It is registered through the ``qtstudio.encodings`` entry-point group, nothing else.
"""

from __future__ import annotations

import numpy as np

from qtstudio import BlockParameters, Encoding


class SignEncoding(Encoding):
    name = "SIGN1_TEST"
    block = BlockParameters(elements_per_block=8, block_bytes=1, row_overhead_bytes=4)
    export_formats = frozenset({"gguf"})
    description = "1-bit sign with a per-row mean-magnitude scale (test plugin)"

    def quantize_rows(self, x, *, imatrix=None, threads=None):
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, n = x.shape
        scale = np.mean(np.abs(x), axis=1).astype("<f4")
        bits = np.packbits(x >= 0, axis=1, bitorder="little")
        out = np.empty((rows, 4 + n // 8), dtype=np.uint8)
        out[:, :4] = scale.view(np.uint8).reshape(rows, 4)
        out[:, 4:] = bits
        return out

    def dequantize_rows(self, data, n_per_row, *, threads=None):
        rows = data.shape[0]
        scale = np.ascontiguousarray(data[:, :4]).view("<f4").reshape(rows, 1)
        bits = np.unpackbits(data[:, 4:], axis=1, bitorder="little")[:, :n_per_row]
        return (np.where(bits == 1, 1.0, -1.0) * scale).astype(np.float32)
