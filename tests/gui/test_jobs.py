"""Background work from the window: quantize, cancel, benchmark, export; the loop never stalls."""

from __future__ import annotations

import time

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QFileDialog
from safetensors.numpy import save_file

from qtstudio.core.recipe import Recipe
from qtstudio.jobs import Cancelled

pytestmark = pytest.mark.gui

BIG_TENSORS, BIG_ROWS, BIG_COLS = 10, 2048, 3072  # 10 x 24 MiB = 240 MiB of float32


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.safetensors"
    rng = np.random.default_rng(1)
    save_file({f"layers.{i}.weight": rng.standard_normal((BIG_ROWS, BIG_COLS), dtype=np.float32)
               for i in range(BIG_TENSORS)}, str(path))
    return path


def _rel_error_oracle(x: np.ndarray, qtype: GGMLQuantizationType) -> float:
    """Relative RMS error through the gguf package's own codec (bit-exact with ggml)."""
    x2 = x.reshape(-1, x.shape[-1])
    y = gguf_dequantize(gguf_quantize(x2, qtype), qtype).reshape(x2.shape)
    return float(np.linalg.norm((y - x2).astype(np.float64)) / np.linalg.norm(x2))


def test_quantize_fills_errors(window, small_model, qtbot):
    # (runs in a worker process; progress, result and errors come back to the window)
    window.open_model(small_model)
    doc = window.doc
    window.apply_preset("Q8_0")
    window.assign(["model.layers.1.mlp.up_proj.weight"], "Q4_0")
    progress: list = []
    w = window.run_quantize()
    w.yielded.connect(progress.append)
    qtbot.waitUntil(lambda: window.worker is None, timeout=30000)
    assert window.worker is None and not window.progress.isVisible()
    assert progress and all(p.stage in ("quantize", "done") for p in progress)
    for name, qtype in (("model.layers.0.self_attn.q_proj.weight", GGMLQuantizationType.Q8_0),
                        ("model.layers.1.mlp.up_proj.weight", GGMLQuantizationType.Q4_0)):
        got = doc.error(name)["rel_error"]
        assert got == pytest.approx(_rel_error_oracle(doc.model.load(name), qtype), rel=1e-4)
    # tree shows it, group rows show the worst below them
    from qtstudio.gui.tree_model import COL

    tm = window.tree_model
    leaf = tm.index_for_path("model.layers.1.mlp.up_proj.weight")
    shown = tm.index(leaf.row(), COL["error"], leaf.parent()).data()
    assert float(shown) == pytest.approx(doc.error("model.layers.1.mlp.up_proj.weight")
                                         ["rel_error"], rel=1e-2)
    grp = tm.index_for_path("model.layers.1")
    assert tm.index(grp.row(), COL["error"], grp.parent()).data() == shown  # Q4_0 is the worst
    # changing the encoding hides the stale number; changing it back shows it again
    window.assign(["model.layers.1.mlp.up_proj.weight"], "Q5_0")
    assert doc.error("model.layers.1.mlp.up_proj.weight") is None
    window.act_undo.trigger()
    assert doc.error("model.layers.1.mlp.up_proj.weight") is not None


def _loop_gaps(qtbot, run_for) -> list[float]:
    """Largest intervals between ticks of a 10 ms timer while ``run_for()`` waits."""
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def tick():
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    try:
        run_for()
    finally:
        timer.stop()
    return gaps


def test_event_loop_never_stalls_during_quantize(window, big_model, qtbot):
    assert window.open_model(big_model)
    window.push_recipe(Recipe(default_encoding="Q4_K").to_dict(), "all Q4_K")
    # the same timer with nothing running: what this machine's load alone costs the loop
    idle = _loop_gaps(qtbot, lambda: qtbot.wait(1000))
    t0 = time.perf_counter()

    def quantize():
        window.run_quantize()
        qtbot.waitUntil(lambda: window.worker is None, timeout=120000)

    gaps = _loop_gaps(qtbot, quantize)
    elapsed = time.perf_counter() - t0
    assert len(window.doc.measurements.errors) == BIG_TENSORS
    assert len(gaps) > 10, "the job finished too fast to measure anything"
    print(f"quantized {BIG_TENSORS * BIG_ROWS * BIG_COLS * 4 / 2**20:.0f} MiB in {elapsed:.2f} s; "
          f"largest event-loop gap {max(gaps):.1f} ms over {len(gaps)} ticks "
          f"(idle baseline {max(idle):.1f} ms)")
    # under 100 ms; on a machine so loaded that the idle loop already stalls, what the job adds
    # on top of that must still stay under 100 ms
    assert max(gaps) < 100.0 + max(0.0, max(idle) - 20.0)


def test_cancel_midway_leaves_a_consistent_state(window, big_model, qtbot):
    window.open_model(big_model)
    window.push_recipe(Recipe(default_encoding="Q4_K").to_dict(), "all Q4_K")
    doc = window.doc
    plan_before = doc.plan
    recipe_before = doc.recipe.to_dict()
    seen: list = []
    w = window.run_quantize()

    def on_progress(p):
        seen.append(p)
        if p.index >= 1:
            window.cancel_btn.click()

    w.yielded.connect(on_progress)
    errors: list = []
    w.errored.connect(errors.append)
    qtbot.waitUntil(lambda: window.worker is None, timeout=120000)
    assert errors and isinstance(errors[0], Cancelled)
    assert max(p.index for p in seen) < BIG_TENSORS - 1  # it stopped before the end
    # nothing half-applied: no errors recorded, plan and recipe untouched, window idle
    assert doc.measurements.errors == {}
    assert doc.plan is plan_before and doc.recipe.to_dict() == recipe_before
    assert window.worker is None and not window.cancel_btn.isVisible()
    assert window.act_quantize.isEnabled() and window.act_open.isEnabled()
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.error_dialog is None  # a cancel is not an error
    # and it runs again to the end
    w = window.run_quantize()
    qtbot.waitUntil(lambda: window.worker is None, timeout=120000)
    assert len(doc.measurements.errors) == BIG_TENSORS


def test_job_error_is_shown_in_a_dialog(window, small_model, qtbot):
    window.open_model(small_model)
    window.apply_preset("Q8_0")
    # the checkpoint is replaced on disk by a broken one after it was opened: the job, which
    # reads the file afresh, fails with the reader's message
    path = window.doc.model.path
    broken = path.with_name("broken.tmp")
    broken.write_bytes(b"\xff" * 8 + b"{}")
    broken.replace(path)
    window.run_quantize()
    qtbot.waitUntil(lambda: window.worker is None, timeout=30000)
    assert window.error_dialog is not None and window.error_dialog.isVisible()
    assert "Quantize failed" in window.error_dialog.windowTitle()
    assert "model.safetensors" in window.error_dialog.text()
    assert window.doc.measurements.errors == {}
    window.error_dialog.close()


def test_benchmark_times_each_selected_layer(window, small_model, qtbot):
    from qtstudio.jobs.benchmark import QMATMUL

    window.open_model(small_model)
    window.apply_preset("Q8_0")
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    from tests.helpers.window_tree import select_rows

    select_rows(window, names)
    window.run_benchmark()
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    bench = window.doc.measurements.bench
    assert sorted(k[0] for k in bench) == sorted(names)
    for d in bench.values():
        assert d["encoding"] == "Q8_0" and d["seconds"] > 0 and d["float_seconds"] > 0
        assert d["method"].startswith(QMATMUL)  # Q8_0 has a native kernel
    assert window.analysis.bench.table.rowCount() == 2


def test_export_gguf_through_dialog(window, qtbot, tmp_path, monkeypatch):
    from .conftest import write_llama_like

    # a checkpoint without config.json: exported as a GGUF tensor container
    src = write_llama_like(tmp_path / "plain.safetensors")
    window.open_model(src)
    window.apply_preset("Q8_0")
    up = "model.layers.0.mlp.up_proj.weight"
    window.assign([up], "Q4_0")
    doc = window.doc
    out = tmp_path / "out" / "plain-q8.gguf"
    out.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    window.act_export.trigger()
    dlg = window.export_dlg
    assert dlg.format.currentText().startswith("GGUF")
    dlg.findChild(type(dlg.export_btn), "exportBrowse").click()
    assert dlg.path.text() == str(out)
    dlg.export_btn.click()
    assert window.worker is not None
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    assert window.error_dialog is None, window.last_error
    assert out.is_file() and "Exported" in window.statusBar().currentMessage()
    # the gguf package reads it back: every tensor with the type the plan chose
    written = {t["name"]: t["gguf_name"] for t in window.last_export.tensors}
    reader = GGUFReader(str(out))
    types = {t.name: GGMLQuantizationType(t.tensor_type).name for t in reader.tensors}
    assert len(types) == len(doc.plan.entries)
    for e in doc.plan.entries:
        assert types[written[e.name]] == e.encoding, e.name
    assert types[written[up]] == "Q4_0"


def test_export_nnef_of_the_demo_runs_in_tract(window, qtbot, tmp_path, monkeypatch):
    tract = pytest.importorskip("tract")
    import torch

    from qtstudio.core import demo
    from qtstudio.gui.export_dialog import NNEF
    from qtstudio.jobs.demo_eval import build_module

    assert window.open_demo()
    window.apply_preset("Q4_0")
    out = tmp_path / "digits-q4.nnef.tgz"
    window.act_export.trigger()
    dlg = window.export_dlg
    dlg.format.setCurrentText(NNEF)
    assert dlg.path.text().endswith(".nnef.tgz")
    # the demo takes an image batch, not tokens: no sequence length to choose
    assert dlg.calibration.isVisible() and not dlg.seq_len.isVisible()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    dlg.findChild(type(dlg.export_btn), "exportBrowse").click()
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: window.worker is None, timeout=120000)
    assert window.error_dialog is None, window.last_error
    assert out.is_file()
    # tract (an independent engine) runs the file; its predictions agree with torch's float model
    runnable = tract.nnef().load(str(out)).into_runnable()
    x, _y = demo.load_test_set()
    module = build_module()
    agree = 0
    n = 60
    # the graph has the exporter's fixed batch of 4 (as `qtstudio-cli export demo` writes it)
    for i in range(0, n, 4):
        got = runnable.run([x[i:i + 4]])[0].to_numpy()
        with torch.no_grad():
            ref = module(torch.from_numpy(x[i:i + 4])).numpy()
        assert got.shape == ref.shape == (4, ref.shape[1])
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
    assert agree >= 0.95 * n
