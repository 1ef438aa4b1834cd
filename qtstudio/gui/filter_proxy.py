"""Filtering the layer tree by tensor name: substring or regular expression.

Qt's recursive filtering asks Python for every row and its descendants and then removes rows from
an expanded view one range at a time, which takes minutes on 10,000 tensors. Instead the matching
set is computed once in Python (a tensor matches, so do its ancestors; everything below a matching
group is kept) and the proxy is reset in one step.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel

from .tree_model import SortRole


class LayerFilterProxy(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SortRole)
        self.setDynamicSortFilter(False)  # sorting happens when the user clicks a header
        self._keep: set[int] | None = None  # ids of nodes to show; None: no filter
        self._matching = 0
        self.pattern = ""

    def setSourceModel(self, model) -> None:
        self._keep, self._matching, self.pattern = None, 0, ""
        super().setSourceModel(model)

    def set_pattern(self, text: str, *, regex: bool) -> str | None:
        """Apply the filter; returns a message when the regular expression is invalid."""
        try:
            rx = re.compile(text if regex else re.escape(text), re.IGNORECASE)
        except re.error as exc:
            return f"invalid regular expression: {exc}"
        src = self.sourceModel()
        self.beginResetModel()
        self.pattern = text
        if not text or src is None:
            self._keep = None
            self._matching = 0
        else:
            self._keep, self._matching = self._compute(src.node(QModelIndex()), rx)
        self.endResetModel()
        return None

    @staticmethod
    def _compute(root, rx: re.Pattern) -> tuple[set[int], int]:
        keep: set[int] = {id(root)}
        matching = 0
        stack = [(root, False)]
        while stack:
            node, inside = stack.pop()
            hit = inside or bool(node.path and rx.search(node.path))
            if hit:
                keep.add(id(node))
                if node.tensor is not None:
                    matching += 1
                p = node.parent
                while p is not None and id(p) not in keep:
                    keep.add(id(p))
                    p = p.parent
            # below a matching group everything shows ("layers.3" opens all of layer 3)
            stack.extend((c, hit) for c in node.children)
        return keep, matching

    def filterAcceptsRow(self, source_row: int,
                         source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if self._keep is None:
            return True
        src = self.sourceModel()
        node = src.node(source_parent).children[source_row]
        return id(node) in self._keep

    def matching_tensor_count(self) -> int:
        return self._matching
