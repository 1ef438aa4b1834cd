"""The button rows and the vertical body every dialog of the window builds the same way."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLayout, QPushButton, QVBoxLayout, QWidget

#: a part of a dialog's body: a layout, a widget, or a widget with its stretch factor
Part = QLayout | QWidget | tuple[QWidget, int]


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
