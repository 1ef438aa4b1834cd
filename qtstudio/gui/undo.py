"""Undoable plan edits: each command swaps a whole recipe snapshot in or out of the document.

Recipes are small (rules and overrides), so snapshots keep every command trivially correct:
undo restores exactly what was there, whatever kind of edit it was.
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from .document import PlanDocument


class RecipeEdit(QUndoCommand):
    def __init__(self, doc: PlanDocument, after: dict, text: str) -> None:
        super().__init__(text)
        self._doc = doc
        self._before = doc.recipe_snapshot()
        self._after = after

    def redo(self) -> None:
        self._doc.set_recipe(self._after)

    def undo(self) -> None:
        self._doc.set_recipe(self._before)
