"""Render screenshots of the app's main states into docs/ (for the README).

Runs the real window on an X server: under an existing $DISPLAY, or on a private Xvfb it starts
(apt-get install xvfb). Each state is captured with QWidget.grab(), which renders the window as
it is on screen, menus and docks included.

    python scripts/screenshots.py [--out docs] [--only-sensitivity]

whatif.png and sensitivity.png show the output error measured on calibration text, so they use
the trained test model (tests/helpers/trained_lm.py: built once, cached); --only-sensitivity
renders just those two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_sample_model(folder: Path, n_layers: int = 8, hidden: int = 512, ffn: int = 1536,
                       vocab: int = 2048) -> Path:
    """A llama-shaped checkpoint with trained-looking weights: heavier tails in some layers, so
    the error plot has something to show. Rows are multiples of 256, so k-quants apply."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)

    def w(*shape: int, tail: float = 0.0) -> np.ndarray:
        x = rng.standard_normal(shape).astype(np.float32) * 0.02
        if tail:
            x += rng.standard_t(3, shape).astype(np.float32) * 0.02 * tail
        return x

    t = {"model.embed_tokens.weight": w(vocab, hidden)}
    for i in range(n_layers):
        p = f"model.layers.{i}"
        tail = 1.0 + 0.6 * np.sin(i)
        t[f"{p}.input_layernorm.weight"] = np.ones(hidden, np.float32)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[f"{p}.self_attn.{name}.weight"] = w(hidden, hidden, tail=tail)
        t[f"{p}.post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        t[f"{p}.mlp.gate_proj.weight"] = w(ffn, hidden, tail=tail)
        t[f"{p}.mlp.up_proj.weight"] = w(ffn, hidden)
        t[f"{p}.mlp.down_proj.weight"] = w(hidden, ffn, tail=2 * tail)
    t["model.norm.weight"] = np.ones(hidden, np.float32)
    t["lm_head.weight"] = w(vocab, hidden)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(t, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "num_hidden_layers": n_layers, "hidden_size": hidden, "intermediate_size": ffn,
        "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": vocab}))
    return folder


def _shoot_output_error(tmp: Path, out: Path, settle, shot) -> None:
    """Run ▸ What-if with output error on the trained test model: the tree's output error
    column, the what-if plot, and the Sensitivity dock (depth plot and what-if table)."""
    sys.path.insert(0, str(ROOT))
    from qtstudio.gui.main_window import MainWindow
    from tests.helpers.trained_lm import corpus_text, trained_llama

    calib = tmp / "calibration.txt"
    calib.write_text(corpus_text()[:4000], encoding="utf-8")
    os.environ["QTSTUDIO_CACHE"] = str(tmp / "cache")
    win = MainWindow()
    win.resize(1600, 1000)
    win.show()
    settle()
    win.open_model(trained_llama())
    win.apply_preset("Q4_K_M")
    win.choose_calibration_file(str(calib))
    win.eval_ctx = 64
    win.tree.selectAll()
    win.run_whatif(output=True)
    win.wait_idle(600000)
    win.tree.collapseAll()
    for path in ("model", "model.layers", "model.layers.0"):
        win.tree.expand(win.proxy.mapFromSource(win.tree_model.index_for_path(path)))
    win.select_tensor("model.layers.0")
    win.analysis.show_whatif(win.selected_tensor_names())
    win.sensitivity_plot.show_whatif(win.doc, win.selected_tensor_names())
    shot(win, "whatif.png")
    win.tree.selectAll()
    win.sensitivity_plot.show_whatif(win.doc, win.selected_tensor_names())
    settle(300)
    win.sensitivity_dock.grab().save(str(out / "sensitivity.png"))  # the dock alone
    print(f"wrote {out / 'sensitivity.png'}")
    win.undo_stack.setClean()
    win.close()


def _start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        sys.exit("no $DISPLAY and no Xvfb: apt-get install xvfb (or run under a desktop)")
    # -displayfd: Xvfb picks a free display number and writes it to the pipe when ready
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1920x1200x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if proc.poll() is not None or not number:
        sys.exit("Xvfb did not start")
    display = f":{number}"
    os.environ["DISPLAY"] = display
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--only-sensitivity", action="store_true",
                    help="only whatif.png and sensitivity.png")
    args = ap.parse_args()
    xvfb = _start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        rc = _shoot(args.out, only_sensitivity=args.only_sensitivity)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)
    # skip interpreter teardown: freeing refguard's bank of None/True/False references there
    # would abort on the references PySide 6.12 dropped (see qtstudio/gui/refguard.py)
    sys.stdout.flush()
    os._exit(rc)


def _shoot(out: Path, *, only_sensitivity: bool = False) -> int:
    from PySide6.QtCore import QEventLoop, QSettings, QTimer

    from qtstudio.core.recipe import Recipe, Rule
    from qtstudio.gui.app import create_application
    from qtstudio.gui.main_window import MainWindow

    # a private settings folder: the user's saved layout and recent files stay out of the shots
    settings_dir = tempfile.mkdtemp(prefix="qtstudio-shots-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    app = create_application([sys.argv[0]])
    out.mkdir(parents=True, exist_ok=True)

    def settle(ms: int = 400) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def until(pred, timeout_s: float = 60.0) -> None:
        t0 = time.monotonic()
        while not pred() and time.monotonic() - t0 < timeout_s:
            settle(50)

    def shot(win: MainWindow, name: str) -> None:
        settle(300)
        path = out / name
        win.grab().save(str(path))
        print(f"wrote {path}")

    def shot_with_dialog(win: MainWindow, dlg, name: str) -> None:
        """The window with a dialog drawn where it stands over it (grab() sees one window)."""
        from PySide6.QtCore import QPoint
        from PySide6.QtGui import QColor, QPainter, QPen

        settle(300)
        pix = win.grab()
        inner = dlg.grab()
        at = dlg.mapToGlobal(QPoint(0, 0)) - win.mapToGlobal(QPoint(0, 0))
        painter = QPainter(pix)
        painter.drawPixmap(at, inner)
        painter.setPen(QPen(QColor("#707070"), 1))
        painter.drawRect(at.x() - 1, at.y() - 1, inner.width() + 1, inner.height() + 1)
        painter.end()
        path = out / name
        pix.save(str(path))
        print(f"wrote {path}")

    with tempfile.TemporaryDirectory() as tmp:
        _shoot_output_error(Path(tmp), out, settle, shot)
        if only_sensitivity:
            return 0
        folder = write_sample_model(Path(tmp) / "tiny-llama-8L")
        win = MainWindow()
        win.resize(1600, 1000)
        win.show()
        settle()
        win.open_model(folder)
        win.apply_preset("Q4_K_M")
        win.push_recipe(win.doc.with_rules([Rule(r"mlp\.up_proj", "Q5_K")]), "rule")
        win.assign(["model.layers.7.self_attn.o_proj.weight"], "Q8_0")
        win.run_quantize()
        win.wait_idle()
        win.tree.collapseAll()
        for path in ("model", "model.layers", "model.layers.0", "model.layers.1"):
            win.tree.expand(win.proxy.mapFromSource(win.tree_model.index_for_path(path)))
        win.select_tensor("model.layers.1.mlp.down_proj.weight")
        win.analysis.show_tab("Error")
        shot(win, "main-window.png")

        until(lambda: win.analysis.histogram.shown is not None)
        win.analysis.show_tab("Histogram")
        shot(win, "histogram.png")

        win.analysis.show_tab("Memory")
        shot(win, "memory.png")

        win.filter_edit.setText("down_proj")
        win.tree.selectAll()  # everything the filter shows: the eight down_proj matrices
        win.run_benchmark()
        win.wait_idle()
        shot(win, "benchmark.png")
        win.filter_edit.clear()

        # Run > Optimize: 4.25 bpw, then quantize so the error plot shows the new mix; the
        # dialog is opened again over the result for the picture
        win.optimize_dialog()
        win.optimize_dlg.set_target(4.25)
        win.optimize_dlg.start()
        win.wait_idle()
        win.run_quantize()
        win.wait_idle()
        win.tree.collapseAll()
        for path in ("model", "model.layers", "model.layers.0"):
            win.tree.expand(win.proxy.mapFromSource(win.tree_model.index_for_path(path)))
        win.analysis.show_tab("Error")
        win.optimize_dialog()
        dlg = win.optimize_dlg
        dlg.set_target(3.5)
        shot_with_dialog(win, dlg, "optimize.png")
        dlg.reject()

        # Run > Compare presets and plans, drawn over the window
        win.compare_dialog()
        cmp_dlg = win.compare_dlg
        cmp_dlg.start()
        win.wait_idle(180000)
        shot_with_dialog(win, cmp_dlg, "compare.png")
        cmp_dlg.reject()

        # a small screen: 1100x720, the first-run hint on a model that opened unquantized
        win.undo_stack.setClean()
        win.open_model(folder)
        win.resize(1100, 720)
        win._fit_docks()
        settle(300)
        win.analysis.show_tab("Memory")
        shot(win, "small-screen.png")
        win.resize(1600, 1000)
        win._fit_docks()

        win.undo_stack.setClean()
        win.open_demo()
        win.push_recipe(Recipe(preset="Q4_0").to_dict(), "Q4_0")
        win.run_evaluate()
        win.wait_idle()
        win.tree.expandAll()
        shot(win, "demo-accuracy.png")

        # the system turns dark: palette change, the plots follow
        from PySide6.QtGui import QColor, QPalette

        dark = QPalette()
        for role, color in ((QPalette.ColorRole.Window, "#2b2b2b"),
                            (QPalette.ColorRole.WindowText, "#e0e0e0"),
                            (QPalette.ColorRole.Base, "#1e1e1e"),
                            (QPalette.ColorRole.AlternateBase, "#262626"),
                            (QPalette.ColorRole.Text, "#e0e0e0"),
                            (QPalette.ColorRole.Button, "#353535"),
                            (QPalette.ColorRole.ButtonText, "#e0e0e0"),
                            (QPalette.ColorRole.Highlight, "#3d6fb4"),
                            (QPalette.ColorRole.HighlightedText, "#ffffff"),
                            (QPalette.ColorRole.PlaceholderText, "#8a8a8a")):
            dark.setColor(role, QColor(color))
        for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                     QPalette.ColorRole.ButtonText):
            dark.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
        app.setPalette(dark)
        win.undo_stack.setClean()
        win.open_model(folder)
        win.apply_preset("Q4_K_M")
        win.run_quantize()
        win.wait_idle()
        win.tree.expandToDepth(1)
        win.analysis.show_tab("Error")
        shot(win, "dark.png")
        win.undo_stack.setClean()
        win.close()
    return 0


if __name__ == "__main__":  # guarded: job worker processes import the main module again
    sys.exit(main())
