"""Light or dark, following the system: the Qt palette decides, pyqtgraph is told to match."""

from __future__ import annotations

from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


def is_dark(palette: QPalette | None = None) -> bool:
    pal = palette or QGuiApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def plot_colors() -> tuple[QColor, QColor]:
    """(background, foreground) for plots, taken from the current palette."""
    pal = QGuiApplication.palette()
    return pal.color(QPalette.ColorRole.Base), pal.color(QPalette.ColorRole.Text)


def apply_theme(app: QApplication) -> None:
    """Fusion renders the system palette faithfully on every platform (light or dark); pyqtgraph's
    defaults (black background) would ignore it, so they are set from the palette."""
    import pyqtgraph as pg

    app.setStyle("Fusion")
    bg, fg = plot_colors()
    pg.setConfigOptions(background=bg, foreground=fg, antialias=True)


# Colours for encodings: stable across plots so Q4_K is the same hue everywhere.
_PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf",
]
_FIXED = {"F32": "#7f7f7f", "F16": "#a0a0a0", "BF16": "#bcbd22"}
_KNOWN = ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "Q5_K", "Q3_K", "Q2_K", "Q4_1", "Q5_0", "Q5_1",
          "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4"]


def encoding_color(name: str) -> QColor:
    name = name.upper()
    if name in _FIXED:
        return QColor(_FIXED[name])
    if name in _KNOWN:
        return QColor(_PALETTE[_KNOWN.index(name)])
    h = 0
    for ch in name:
        h = (h * 131 + ord(ch)) & 0xFFFFFFFF
    return QColor(_PALETTE[h % len(_PALETTE)])
