"""Help ▸ Getting started: the workflow in five steps, where the documentation is, and every
keyboard shortcut the window has (read from its actions, so the list cannot go stale)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from .dialog_parts import WindowDialog

STEPS = (
    ("Open", "File ▸ Open model… takes a safetensors file, a shard index, a PyTorch file, a "
             "GGUF, or a Hugging Face folder (File ▸ Open folder…, or pick its config.json)."),
    ("Plan", "A model opens unquantized (32 bits per weight). Pick a preset (Presets menu or the "
             "Plan panel), let Run ▸ Optimize… choose each tensor's encoding for a target size, "
             "or set encodings per tensor (double-click the encoding cell, Ctrl+E on a "
             "selection) and by rules (Plan panel)."),
    ("Compare", "Run ▸ Compare presets and plans… measures size against error for each preset "
                "and optimized mix before anything is written, and saves the table as a report."),
    ("Measure", "Run ▸ Quantize with metrics fills the error column and the Analysis plots; "
                "What-if shows every candidate encoding for the selected tensors; What-if with "
                "output error also measures them on the calibration file (the output error "
                "column and the Sensitivity dock)."),
    ("Export", "File ▸ Export… writes GGUF (llama.cpp, by plain rounding or GPTQ), a Hugging "
               "Face GPTQ folder or NNEF (tract), with editable GGUF metadata. Save the recipe "
               "(Ctrl+S) to repeat the plan with qtstudio-cli."),
)


def docs_folder() -> Path | None:
    """docs/ of a source checkout (an installed wheel has none)."""
    here = Path(__file__).resolve().parents[2] / "docs"
    return here if (here / "core.md").is_file() else None


def help_html(window: Any) -> str:
    parts = ["<h3>Getting started</h3><ol>"]
    parts += [f"<li><b>{t}</b>: {html.escape(text)}</li>" for t, text in STEPS]
    parts.append("</ol><h3>Documentation</h3><p>")
    docs = docs_folder()
    if docs is not None:
        for name, what in (("core.md", "models, plans, recipes, encodings, jobs"),
                           ("export_gguf.md", "GGUF export"), ("nnef.md", "NNEF export")):
            url = (docs / name).as_uri()
            parts.append(f'<a href="{url}">{name}</a>: {what}<br>')
        readme = docs.parent / "README.md"
        if readme.is_file():
            parts.append(f'<a href="{readme.as_uri()}">README.md</a>: the command line<br>')
    else:
        parts.append("The README and docs/ of the qtstudio source tree; "
                     "<tt>qtstudio-cli --help</tt> lists every command.")
    parts.append("</p><h3>Keyboard shortcuts</h3><table>")
    seen = set()
    for act in window.actions():
        keys = act.shortcut().toString()
        text = act.text().replace("&", "").rstrip("…")
        if keys and text and (keys, text) not in seen:
            seen.add((keys, text))
            parts.append(f"<tr><td><tt>{html.escape(keys)}</tt>&nbsp;&nbsp;</td>"
                         f"<td>{html.escape(text)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


class HelpDialog(WindowDialog):
    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(window, "Getting started with qtstudio", "helpDialog", parent)
        self.text = QTextBrowser(objectName="helpText")
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(help_html(window))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text, 1)
        lay.addWidget(buttons)
        self.resize(620, 560)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
