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


# Colours for encodings: stable across plots so Q4_K is the same hue everywhere, and distinct
# within a what-if plot, which shows every encoding at once (no two neighbours in hue share a
# lightness; greys are kept for the float types).
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#9edae5", "#393b79", "#637939", "#843c39",
]
_FIXED = {"F32": "#7f7f7f", "F16": "#a8a8a8", "BF16": "#525252"}
_KNOWN = ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "Q5_K", "Q3_K", "Q2_K", "MXFP4", "Q5_0", "Q4_1",
          "Q5_1", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "INT8_PT_SYM", "INT8_PC_SYM",
          "INT8_PT_ASYM", "INT8_PC_ASYM", "Q3_K_S"]


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
