"""The Analysis plots hold the data they claim: errors, memory stacks, histogram grid, what-if,
demo accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize

pytestmark = pytest.mark.gui

Q_PROJ = "model.layers.0.self_attn.q_proj.weight"


def test_error_and_memory_plots(window, small_model, qtbot):
    window.open_model(small_model)
    doc = window.doc
    window.apply_preset("Q8_0")
    window.assign([Q_PROJ], "Q4_0")
    mem = window.analysis.memory
    # memory stacks: before by source dtype, after by planned encoding, totals exact
    assert sum(mem.stacks[0].values()) == doc.model.total_bytes
    assert sum(mem.stacks[1].values()) == doc.plan.total_bytes
    by_enc: dict[str, int] = {}
    for e in doc.plan.entries:
        by_enc[e.encoding] = by_enc.get(e.encoding, 0) + e.nbytes
    assert mem.stacks[1] == pytest.approx(by_enc)
    assert window.analysis.error.point_count() == 0

    window.run_quantize()
    qtbot.waitUntil(lambda: window.worker is None, timeout=30000)
    err = window.analysis.error
    measured = [t.name for t in doc.model.tensors if (doc.error(t.name) or {}).get("rel_error")]
    assert err.point_count() == len(measured) == 16  # every quantized tensor; floats are exact
    # one series per encoding, each point at the tensor's position with its error
    series = err.series["Q4_0"]
    names = list(series.scatter.data["data"])
    assert names == [Q_PROJ]
    pos = [t.name for t in doc.model.tensors].index(Q_PROJ)
    assert series.xData[0] == pos and series.yData[0] == doc.error(Q_PROJ)["rel_error"]
    # clicking a point selects its tensor in the tree
    err.tensor_clicked.emit(Q_PROJ)
    assert window.selected_tensor_names() == [Q_PROJ]


def test_histogram_overlays_the_block_grid(window, small_model, qtbot):
    from tests.helpers.window_tree import select_rows

    window.open_model(small_model)
    window.assign([Q_PROJ], "Q4_0")
    select_rows(window, [Q_PROJ])
    hist = window.analysis.histogram
    qtbot.waitUntil(lambda: hist.shown == (Q_PROJ, "Q4_0"), timeout=10000)
    x = window.doc.model.load(Q_PROJ)
    edges, counts = hist.hist.getData()
    # bins cover the central 99.8% and the grid; counted exactly as numpy counts that range
    inside = np.count_nonzero((x >= edges[0]) & (x <= edges[-1]))
    assert counts.sum() == inside >= 0.99 * x.size
    # the grid belongs to the median block (by largest |w|) of 32 values
    grid = hist.grid_info
    absmax = np.abs(x.reshape(x.shape[0], -1, 32)).max(axis=2)
    rank = np.argsort(absmax, axis=None).tolist().index(grid.row * absmax.shape[1] + grid.col // 32)
    assert rank == absmax.size // 2
    # oracle: that block encoded by the gguf package; its levels are d * (q - 8), q = 0..15,
    # d the block's fp16 scale
    raw = gguf_quantize(x[grid.row:grid.row + 1], GGMLQuantizationType.Q4_0)[0]
    b = grid.col // 32
    d = float(raw[b * 18:b * 18 + 2].view(np.float16)[0])
    ladder = d * (np.arange(16) - 8)
    levels = hist.levels
    assert 8 <= levels.size <= 16 and grid.step == pytest.approx(abs(d), rel=1e-3)
    assert np.all(np.min(np.abs(levels[:, None] - ladder[None, :]), axis=1) < 1e-6)
    gx, _gy = hist.grid.getData()
    assert np.allclose(np.unique(gx), np.unique(levels))
    assert "Q4_0 grid" in hist.note.text()

    # a float encoding has no grid
    window.assign([Q_PROJ], "F16")
    qtbot.waitUntil(lambda: hist.shown == (Q_PROJ, "F16"), timeout=10000)
    assert hist.levels.size == 0 and "no grid" in hist.note.text()


def test_whatif_compares_every_candidate(window, small_model, qtbot):
    from tests.helpers.window_tree import select_rows

    window.open_model(small_model)
    names = [Q_PROJ, "model.layers.1.mlp.up_proj.weight"]
    select_rows(window, names)
    window.run_whatif()
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    rows = {r[0]: r for r in window.analysis.whatif.rows}
    # every encoding both tensors accept, F32 excepted (zero error does not fit a log axis)
    expected = set(window.doc.candidates(names[0])) & set(window.doc.candidates(names[1]))
    assert set(rows) == expected - {"F32"}
    assert rows["Q8_0"][1] == pytest.approx(8.5) and rows["Q4_0"][1] == pytest.approx(4.5)
    assert rows["Q8_0"][2] < rows["Q5_0"][2] < rows["Q4_0"][2]
    assert all(r[3] == 2 for r in rows.values())
    # the numbers are real errors: Q8_0 on q_proj matches the gguf package's codec
    x = window.doc.model.load(Q_PROJ)
    from gguf.quants import dequantize as gdq

    y = gdq(gguf_quantize(x, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0)
    rel = float(np.linalg.norm(y - x) / np.linalg.norm(x))
    assert window.doc.measurements.error(Q_PROJ, "Q8_0")["rel_error"] == pytest.approx(rel,
                                                                                       rel=1e-4)
    assert window.analysis.whatif.points.xData.size == len(rows)
    # clicking a point assigns its encoding to the selection, as one undoable edit
    window.analysis.whatif.encoding_chosen.emit("Q5_1")
    assert [window.doc.plan.entry(n).encoding for n in names] == ["Q5_1", "Q5_1"]
    assert window.undo_stack.count() == 1
    # the circle marks the plan's choice now
    cx, _cy = window.analysis.whatif.current.getData()
    assert list(cx) == [pytest.approx(rows["Q5_1"][1])]


def test_demo_accuracy_before_and_after(window, qtbot):
    from qtstudio.jobs.demo_eval import evaluate

    assert window.open_demo()
    window.apply_preset("Q4_0")
    window.run_evaluate()
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    f, q = window.analysis.accuracy.values
    expected = evaluate(window.doc.recipe)  # oracle: the same evaluation, run directly
    assert f == pytest.approx(expected["float_accuracy"])
    assert q == pytest.approx(expected["quantized_accuracy"])
    assert 0.9 < f <= 1.0
    heights = window.analysis.accuracy.bars.opts["height"]
    assert list(heights) == pytest.approx([f, q])


def test_large_tensors_are_sampled_not_loaded(tmp_path):
    """A tensor past the sampling limit is read row by row from its memory map (bf16 here)."""
    import json
    import struct

    from qtstudio.formats import open_model
    from qtstudio.jobs.whatif import sample_rows

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4096, 256)).astype(np.float32)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncate to bfloat16
    # written by hand: safetensors.numpy has no bfloat16
    header = json.dumps({"emb.weight": {"dtype": "BF16", "shape": [4096, 256],
                                        "data_offsets": [0, bits.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())
    with open_model(path) as model:
        got, rows = sample_rows(model, "emb.weight", 64 * 256)
        assert got.shape == (64, 256) and rows.size == 64
        assert rows[0] == 0 and rows[-1] == 4095
        expected = (bits[rows].astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(got, expected)
        full, all_rows = sample_rows(model, "emb.weight", 10**7)
        assert full.shape == (4096, 256) and all_rows.size == 4096


def test_log_axis_labels_only_1_2_5_ticks(qapp):
    from qtstudio.gui.plots import LogAxis

    axis = LogAxis("left")
    values = [float(np.log10(v)) for v in (0.01, 0.02, 0.05, 0.07, 0.08, 0.09, 0.1)]
    assert axis.logTickStrings(values, 1.0, 1.0) == ["0.01", "0.02", "0.05", "", "", "", "0.1"]
    # inside one decade with no 1/2/5 tick to spare, every label stays
    narrow = [float(np.log10(v)) for v in (0.06, 0.07, 0.08)]
    assert axis.logTickStrings(narrow, 1.0, 1.0) == ["0.06", "0.07", "0.08"]
