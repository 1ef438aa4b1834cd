"""llama.cpp importance-matrix files: both formats, checked against hand-made bytes."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from qtstudio.formats.imatrix import (
    ImatrixError,
    load_imatrix,
    save_imatrix_gguf,
    save_imatrix_legacy,
)


def _legacy_bytes(entries, trailer=None):
    out = struct.pack("<i", len(entries))
    for name, ncall, vals in entries:
        raw = name.encode()
        out += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, len(vals))
        out += np.asarray(vals, "<f4").tobytes()
    if trailer is not None:
        chunks, dataset = trailer
        out += struct.pack("<ii", chunks, len(dataset)) + dataset.encode()
    return out


def test_legacy_values_are_divided_by_call_count(tmp_path):
    p = tmp_path / "imatrix.dat"
    p.write_bytes(_legacy_bytes([("blk.0.attn_q.weight", 4, [4.0, 8.0, 2.0]),
                                 ("output.weight", 0, [3.0, 5.0])], trailer=(12, "wiki.txt")))
    im = load_imatrix(p)
    assert im.format == "legacy"
    np.testing.assert_array_equal(im.entries["blk.0.attn_q.weight"], [1.0, 2.0, 0.5])
    # a zero call count leaves the sums as they are, as llama-quantize does
    np.testing.assert_array_equal(im.entries["output.weight"], [3.0, 5.0])
    assert im.chunk_count == 12 and im.datasets == ["wiki.txt"]
    assert im.weights_for("blk.0.attn_q.weight", 3) is not None
    assert im.weights_for("blk.0.attn_q.weight", 4) is None  # wrong length: not used


def test_legacy_writer_matches_hand_layout(tmp_path):
    p = tmp_path / "w.dat"
    save_imatrix_legacy(p, {"a.weight": np.array([1.0, 2.0], np.float32)}, {"a.weight": 3},
                        chunk_count=5, dataset="d")
    assert p.read_bytes() == _legacy_bytes([("a.weight", 3, [1.0, 2.0])], trailer=(5, "d"))


def test_gguf_imatrix_layout_and_division(tmp_path):
    p = tmp_path / "imatrix.gguf"
    sums = {"blk.0.ffn_up.weight": np.array([[2.0, 4.0, 6.0, 8.0]], np.float32),
            # two expert matrices, the second never saw input
            "blk.0.ffn_down_exps.weight": np.array([[3.0, 6.0], [9.0, 9.0]], np.float32)}
    counts = {"blk.0.ffn_up.weight": 2.0,
              "blk.0.ffn_down_exps.weight": np.array([3.0, 0.0], np.float32)}
    save_imatrix_gguf(p, sums, counts, datasets=["a.txt", "b.txt"], chunk_count=10,
                      chunk_size=512)
    # the gguf package sees llama-imatrix's layout: <name>.in_sum2 [n_mat, n] and .counts
    r = gguf.GGUFReader(p)
    names = {t.name: t for t in r.tensors}
    assert names["blk.0.ffn_up.weight.in_sum2"].shape.tolist() == [4, 1]
    assert names["blk.0.ffn_down_exps.weight.counts"].shape.tolist() == [1, 2]
    assert r.fields["imatrix.chunk_count"].contents() == 10
    assert r.fields["imatrix.datasets"].contents() == ["a.txt", "b.txt"]
    im = load_imatrix(p)
    assert im.format == "gguf" and im.chunk_size == 512 and im.chunk_count == 10
    np.testing.assert_array_equal(im.entries["blk.0.ffn_up.weight"], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(im.entries["blk.0.ffn_down_exps.weight"], [1.0, 2.0, 1.0, 1.0])


@pytest.mark.parametrize("data,match", [
    (b"", "truncated"),
    (struct.pack("<i", 0), "impossible"),
    (struct.pack("<i", 2**30) + b"\0" * 64, "impossible"),
    (struct.pack("<ii", 1, -5) + b"\0" * 32, "invalid name length"),
    (struct.pack("<ii", 1, 1) + b"x" + struct.pack("<ii", 1, 2**29) + b"\0" * 8, "too short"),
    (_legacy_bytes([("a", 1, [1.0, 2.0])])[:-3], "too short|truncated"),
])
def test_bad_legacy_files(tmp_path, data, match):
    p = tmp_path / "bad.dat"
    p.write_bytes(data)
    with pytest.raises(ImatrixError, match=match) as info:
        load_imatrix(p)
    assert "bad.dat" in str(info.value)


def test_bad_gguf_imatrix(tmp_path):
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGUF" + b"\xff" * 20)
    with pytest.raises(ImatrixError, match=r"bad\.gguf"):
        load_imatrix(p)
    q = tmp_path / "nodata.gguf"
    save_imatrix_gguf(q, {}, {}, datasets=[], chunk_count=0, chunk_size=1)
    with pytest.raises(ImatrixError, match="no importance data"):
        load_imatrix(q)
    with pytest.raises(ImatrixError, match=r"missing\.dat: no such file"):
        load_imatrix(tmp_path / "missing.dat")
