"""Output error in the window: the layer tree's column, the Sensitivity dock's what-if table and
depth plot, all measured on the trained test model and checked against the job's own numbers
(and the CLI's, which must show the same)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qtstudio.cli import main
from qtstudio.gui.tree_model import COL, NOT_MEASURED
from qtstudio.jobs import run_job
from qtstudio.jobs.whatif import output_curve, output_error_job, output_errors, whatif_curve

CTX = 32
BLOCK1 = "model.layers.1"


@pytest.fixture
def calib(calib_text):
    return calib_text(1200)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QTSTUDIO_CACHE", str(tmp_path / "cache"))


def _measured(window, lm, calib, qtbot, group: str):
    window.open_model(lm)
    window.apply_preset("Q4_K_M")
    window.choose_calibration_file(str(calib))
    window.eval_ctx = CTX
    window.select_tensor(group)
    names = window.selected_tensor_names()
    assert names and all(n.startswith(group) for n in names)
    window.act_whatif_output.trigger()
    assert window.worker is not None
    qtbot.waitUntil(lambda: window.worker is None, timeout=240000)
    assert window.error_dialog is None, window.last_error
    return names


def _cell(window, name: str, column: str) -> str:
    tm = window.tree_model
    idx = tm.index_for_path(name)
    return tm.index(idx.row(), COL[column], idx.parent()).data()


def test_whatif_output_error_in_tree_table_and_cli(window, lm, calib, qtbot, tmp_path):
    names = _measured(window, lm, calib, qtbot, BLOCK1)
    doc = window.doc
    # the oracle: the job itself, run here on the same tensors, encodings and data
    cands = {n: [e for e in doc.candidates(n) if not e.startswith("I")] for n in names}
    # from the cache the window's run filled: nothing measured again, the very same numbers
    sens = run_job(output_error_job(doc.model, cands, str(calib), ctx=CTX))
    quantizable = [n for n in names if doc.model.tensor(n).quantizable]
    assert sens.measured == [] and sorted(sens.reused) == sorted(quantizable)
    truth = output_errors(sens)
    assert doc.measurements.output == truth
    # measured afresh: equal up to the float summation order of the torch threads
    fresh = output_errors(run_job(output_error_job(doc.model, cands, str(calib), ctx=CTX,
                                                cache=False)))
    assert fresh.keys() == truth.keys()
    for k, v in truth.items():
        assert fresh[k]["kl"] == pytest.approx(v["kl"], rel=1e-6, abs=1e-15)
        if v["out_err"] is not None:
            assert fresh[k]["out_err"] == pytest.approx(v["out_err"], rel=1e-6, abs=1e-15)
    for n in names:
        enc = doc.plan.entry(n).encoding
        if n not in quantizable:  # norms stay float, as in the optimizer: nothing to measure
            assert (n, enc) not in truth and _cell(window, n, "output error") == ""
            continue
        oe = truth[(n, enc)]["out_err"]
        assert oe is not None and oe > 0
        assert _cell(window, n, "output error") == f"{oe:.2e}"
    # the group row shows the worst below it
    worst = max(truth[(n, doc.plan.entry(n).encoding)]["out_err"] for n in quantizable)
    assert _cell(window, BLOCK1, "output error") == f"{worst:.2e}"
    # fewer bits, more output error: the measurement means something
    down = next(n for n in names if n.endswith("down_proj.weight"))
    errs = [truth[(down, e)]["out_err"] for e in ("Q8_0", "Q6_K", "Q4_K", "Q2_K")]
    assert errs == sorted(errs) and errs[-1] > 100 * errs[0]

    # the what-if table: the same numbers as the CLI prints and writes
    table = window.sensitivity_plot.rows
    encs = ["Q8_0", "Q6_K", "Q4_K", "Q2_K"]
    out_json = tmp_path / "w.json"
    assert main(["whatif", str(lm), "--encodings", ",".join(encs), "--tensors", f"{BLOCK1}.*",
                 "--data", str(calib), "--ctx", str(CTX), "--json", str(out_json),
                 "--quiet"]) == 0
    d = json.loads(out_json.read_text())
    assert sorted(d["tensors_selected"]) == sorted(quantizable)
    selected, names = len(names), d["tensors_selected"]  # the CLI takes the quantizable ones
    for row in d["encodings"]:
        shown = table[row["encoding"]]
        assert shown[1] == f"{row['bpw']:.3f}" and shown[2] == f"{row['rel_error']:.5f}"
        assert shown[3] == f"{row['out_err']:.3e}" and shown[4] == f"{row['kl']:.3e}"
        assert shown[5] == f"{row['tensors']}/{selected}"
    # and both are the job's numbers folded by output_curve / whatif_curve
    curve = output_curve(truth, names, doc.model, encs)
    for row in d["encodings"]:
        assert row["out_err"] == pytest.approx(curve[row["encoding"]]["out_err"], rel=1e-12)
        assert row["kl"] == pytest.approx(curve[row["encoding"]]["kl"], rel=1e-12)
    wc = {r[0]: r for r in whatif_curve(doc.measurements.errors, names, doc.model, encs)}
    for row in d["encodings"]:
        assert row["rel_error"] == pytest.approx(wc[row["encoding"]][2], rel=1e-12)


def test_output_error_goes_stale_when_the_plan_changes(window, lm, calib, qtbot):
    _measured(window, lm, calib, qtbot, BLOCK1)
    doc = window.doc
    name = f"{BLOCK1}.mlp.down_proj.weight"
    enc = doc.plan.entry(name).encoding
    before = _cell(window, name, "output error")
    assert before not in ("", NOT_MEASURED)
    # another measured encoding: its own number appears
    window.assign([name], "Q2_K")
    q2 = doc.measurements.output[(name, "Q2_K")]["out_err"]
    assert _cell(window, name, "output error") == f"{q2:.2e}"
    # forget that encoding's measurement: the row says so instead of showing an old number
    del doc.measurements.output[(name, "Q2_K")]
    doc.notify("measurements")
    assert _cell(window, name, "output error") == NOT_MEASURED
    assert _cell(window, BLOCK1, "output error").startswith("≥ ")
    window.undo_stack.undo()
    assert doc.plan.entry(name).encoding == enc
    assert _cell(window, name, "output error") == before
    # block-0 tensors were never measured: empty, not "not measured"
    assert _cell(window, "model.layers.0.mlp.up_proj.weight", "output error") == ""


def test_sensitivity_plot_lines_along_depth(window, lm, calib, qtbot):
    plot = window.sensitivity_plot
    # empty state: no axes until a measurement arrives, and a note saying how to get one
    assert not plot.plot.getPlotItem().getAxis("left").isVisible()
    assert "What-if with output error" in plot.note.text()
    window.open_model(lm)
    window.choose_calibration_file(str(calib))
    window.eval_ctx = CTX
    window.tree.selectAll()
    names = window.selected_tensor_names()
    window.act_whatif_output.trigger()
    qtbot.waitUntil(lambda: window.worker is None, timeout=400000)
    assert window.error_dialog is None, window.last_error
    assert window.sensitivity_dock.isVisible()
    out = window.doc.measurements.output
    names = [n for n in names if window.doc.model.tensor(n).quantizable]
    depth = {n: (-1 if "embed" in n else 2 if n == "lm_head.weight" else int(n.split(".")[2]))
             for n in names}
    for enc in ("Q8_0", "Q4_K", "Q2_K"):
        x, y = plot.series[enc]
        assert list(x) == [-1, 0, 1, 2]
        for d, v in zip(x, y, strict=True):
            want = sum(out[(n, enc)]["kl"] for n in names if depth[n] == d)
            assert v == pytest.approx(want, rel=1e-12)
    # one legend entry per candidate; fewer bits sit higher at every depth
    labels = [lab.text for _s, lab in plot.legend.items]
    assert {"Q8_0", "Q4_K", "Q2_K"} <= set(labels)
    assert np.all(plot.series["Q2_K"][1] > plot.series["Q8_0"][1])
    assert plot.plot.getPlotItem().getAxis("left").isVisible()
    # the head and the embedding have no block output: KL only
    assert _cell(window, "lm_head.weight", "output error") == "KL only"


def test_optimize_kl_result_fills_the_column_and_the_plot(window, lm, calib):
    from qtstudio.jobs.optimize_kl import optimize_kl_job

    window.open_model(lm)
    doc = window.doc
    before = doc.recipe_snapshot()
    result = run_job(optimize_kl_job(doc.model, target_bpw=4.5, data=str(calib), ctx=CTX,
                                  check=False, float_encoding=doc.recipe.float_encoding))
    window._on_optimized(doc, before, result)
    sens = result.sensitivity
    assert doc.measurements.output == output_errors(sens)
    assert doc.measurements.output_source == str(calib)
    for t in sens.table.tensors:
        enc = doc.plan.entry(t.name).encoding
        oe = sens.out_err.get(t.name, {}).get(enc)
        shown = _cell(window, t.name, "output error")
        assert shown == ("KL only" if oe is None else "exact" if oe == 0 else f"{oe:.2e}")
    assert set(window.sensitivity_plot.series) == set(sens.table.candidates)
