"""The entry point: ``qtstudio [PATH]`` / ``python -m qtstudio``, and the system palette."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui


def _run_main(monkeypatch, argv):
    from PySide6.QtWidgets import QApplication

    from qtstudio.gui import app as app_mod
    from qtstudio.gui import main_window

    created = []
    real = main_window.MainWindow

    def capture(*a, **k):
        win = real(*a, **k)
        created.append(win)
        return win

    monkeypatch.setattr(main_window, "MainWindow", capture)
    monkeypatch.setattr(QApplication, "exec", lambda self=None: 0)  # no blocking event loop
    assert app_mod.main(argv) == 0
    win = created[0]
    win.close()
    return win


def test_main_opens_the_path(monkeypatch, small_model):
    win = _run_main(monkeypatch, [str(small_model)])
    assert win.doc.model.path.parent == small_model
    assert len(win.doc.model.tensors) == 21


def test_main_without_argument_opens_the_demo(monkeypatch):
    from qtstudio.core.demo import demo_model_path

    win = _run_main(monkeypatch, [])
    assert win.doc.model.path == demo_model_path()
    assert win.doc.recipe.preset == "Q4_0"  # the showcase starts from a preset


def test_showcase_quantizes_and_evaluates_the_demo(window, qtbot):
    assert window.open_demo(showcase=True)
    qtbot.waitUntil(lambda: window.doc.measurements.accuracy is not None, timeout=60000)
    qtbot.waitUntil(lambda: window.worker is None, timeout=60000)
    quantized = [e.name for e in window.doc.plan.entries if e.encoding == "Q4_0"]
    assert quantized and all(window.doc.error(n) for n in quantized)
    assert window.analysis.accuracy.values is not None


def test_module_help_needs_no_display():
    # importing the entry point must not import Qt: --help works with no display at all
    out = subprocess.run([sys.executable, "-m", "qtstudio", "--help"], capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                      "QT_QPA_PLATFORM": "nonexistent"})
    assert out.returncode == 0, out.stderr
    assert "usage: qtstudio" in out.stdout and "demo" in out.stdout


def test_plots_follow_a_palette_change(window, qapp):
    from PySide6.QtGui import QColor, QPalette

    old = qapp.palette()
    dark = QPalette(old)
    dark.setColor(QPalette.ColorRole.Base, QColor("#1e1e1e"))
    dark.setColor(QPalette.ColorRole.Text, QColor("#e0e0e0"))
    try:
        qapp.setPalette(dark)
        qapp.processEvents()
        bg = window.analysis.error.plot.backgroundBrush().color()
        assert bg.name() == "#1e1e1e"
    finally:
        qapp.setPalette(old)
