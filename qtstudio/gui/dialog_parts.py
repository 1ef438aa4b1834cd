"""What every dialog of the window builds the same way: its frame, the button rows and the
vertical body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLayout, QPushButton, QVBoxLayout, QWidget

#: a part of a dialog's body: a layout, a widget, or a widget with its stretch factor
Part = QLayout | QWidget | tuple[QWidget, int]


class WindowDialog(QDialog):
    """A dialog the main window opens: its child (unless ``parent`` is given), titled, named for
    the tests and style sheets that look it up, and keeping the window it acts on as
    ``_window``."""

    def __init__(self, window: Any, title: str, object_name: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent or window)
        self.setWindowTitle(title)
        self.setObjectName(object_name)
        self._window = window


def ok_cancel_buttons(dialog: QDialog) -> QDialogButtonBox:
    """OK (accept) and Cancel (reject) for ``dialog``."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons


def action_buttons(dialog: QDialog, label: str, object_name: str,
                   on_action: Callable[[], object]) -> tuple[QDialogButtonBox, QPushButton]:
    """Cancel and a named action button (``label``) that calls ``on_action`` instead of closing:
    the dialog starts a job and closes itself when the job is under way."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
    action = buttons.addButton(label, QDialogButtonBox.ButtonRole.AcceptRole)
    action.setObjectName(object_name)
    buttons.accepted.connect(on_action)
    buttons.rejected.connect(dialog.reject)
    return buttons, action


def body_layout(dialog: QDialog, *parts: Part) -> QVBoxLayout:
    """``dialog``'s layout: ``parts`` top to bottom."""
    lay = QVBoxLayout(dialog)
    for part in parts:
        if isinstance(part, QLayout):
            lay.addLayout(part)
        elif isinstance(part, tuple):
            lay.addWidget(*part)
        else:
            lay.addWidget(part)
    return lay
