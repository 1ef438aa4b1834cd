"""Unsaved plan edits: ask before an action would throw them away (open, demo, quit)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QMessageBox

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def ask(window: Any, doing: str) -> str:
    """The user's answer to "save the recipe first?"; tests replace this function."""
    name = window.doc.recipe_path.name if window.doc.recipe_path else "the unsaved recipe"
    box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved plan edits",
                      f"The plan of {window.doc.model.path.name} has edits that are not saved "
                      f"in a recipe. Save {name} before you {doing}?",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, window)
    box.setObjectName("unsavedDialog")
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    if answer == QMessageBox.StandardButton.Save:
        return SAVE
    if answer == QMessageBox.StandardButton.Discard:
        return DISCARD
    return CANCEL


def may_discard(window: Any, doing: str) -> bool:
    """True when the edits are saved, the user saved them now, or chose to drop them."""
    if window.doc is None or window.undo_stack.isClean():
        return True
    answer = ask(window, doing)
    if answer == SAVE:
        return bool(window.save_recipe())  # a cancelled Save As keeps the window as it is
    return answer == DISCARD
