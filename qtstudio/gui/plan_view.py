"""Panels that show the open document's plan: bound to one document, redrawn on each change."""

from __future__ import annotations

from .document import PlanDocument


class FollowsPlan:
    """Mixin for a panel (before QWidget in its bases) with a ``refresh()`` that redraws it
    from ``self._doc``, None when no model is open."""

    _doc: PlanDocument | None = None

    def set_document(self, doc: PlanDocument | None) -> None:
        if self._doc is not None:
            self._doc.unsubscribe(self._on_doc)
        self._doc = doc
        if doc is not None:
            doc.subscribe(self._on_doc)
        self.refresh()

    def _on_doc(self, what: str) -> None:
        if what == "plan":
            self.refresh()

    def refresh(self) -> None:
        raise NotImplementedError
