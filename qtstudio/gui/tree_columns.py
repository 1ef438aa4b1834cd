"""Column widths of the layer tree.

The name column takes what the others leave, but never less than NAME_MIN (a stretch section
would shrink to three letters on a 1100 px window); the view scrolls sideways instead. Once the
user drags the name column, their width stays. The header's context menu hides and shows columns.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QHeaderView, QMenu, QTreeView

from .tree_model import COLUMNS

NAME_MIN = 200
WIDTHS = {"shape": 80, "dtype": 46, "parameters": 72, "size": 80, "encoding": 104, "bpw": 46,
          "error": 78, "output error": 88, "gguf name": 180}


class _NameFitter(QObject):
    def __init__(self, tree: QTreeView) -> None:
        super().__init__(tree)
        self._tree = tree
        self._ours = False
        self.user_width: int | None = None
        tree.header().sectionResized.connect(self._resized)

    def _resized(self, index: int, _old: int, new: int) -> None:
        if index == 0 and not self._ours:
            self.user_width = new

    def fit(self) -> None:
        tree = self._tree
        header = tree.header()
        if self.user_width is not None or header.count() == 0:
            return
        others = sum(header.sectionSize(i) for i in range(1, header.count())
                     if not header.isSectionHidden(i))
        width = max(NAME_MIN, tree.viewport().width() - others)
        self._ours = True
        try:
            header.resizeSection(0, width)
        finally:
            self._ours = False

    def eventFilter(self, obj, event) -> bool:  # the viewport resized: fit the name again
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.Type.Resize:
            self.fit()
        return False


def size_columns(tree: QTreeView, *, show_gguf: bool = False) -> None:
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    for i, name in enumerate(COLUMNS[1:], start=1):
        header.resizeSection(i, WIDTHS[name])
    header.setSectionHidden(COLUMNS.index("gguf name"), not show_gguf)
    fitter = tree.findChild(_NameFitter)
    if fitter is None:
        fitter = _NameFitter(tree)
        tree.viewport().installEventFilter(fitter)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(lambda pos: _column_menu(tree, pos))
        header.sectionResized.connect(lambda i, _o, _n: i != 0 and fitter.fit())
    fitter.fit()


def _column_menu(tree: QTreeView, pos) -> None:
    header = tree.header()
    menu = QMenu(tree)
    for i, name in enumerate(COLUMNS):
        if i == 0:
            continue
        act = menu.addAction(name)
        act.setCheckable(True)
        act.setChecked(not header.isSectionHidden(i))
        act.toggled.connect(lambda on, i=i: (header.setSectionHidden(i, not on),
                                             tree.findChild(_NameFitter).fit()))
    tree.column_menu = menu  # tests reach the menu through this
    menu.popup(header.mapToGlobal(pos))
