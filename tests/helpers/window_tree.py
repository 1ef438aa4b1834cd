"""Reaching rows of the main window's tensor tree from GUI tests."""

from __future__ import annotations

from typing import Any


def proxy_index(win: Any, name: str, column: str = "name") -> Any:
    """The view's index of ``column`` in the row of tensor or group ``name``."""
    from qtstudio.gui.tree_model import COL

    src = win.tree_model.index_for_path(name)
    src = win.tree_model.index(src.row(), COL[column], src.parent())
    return win.proxy.mapFromSource(src)


def select_rows(win: Any, names: list[str]) -> None:
    """Select exactly the rows of ``names`` (as a user would with Ctrl-click)."""
    sm = win.tree.selectionModel()
    sm.clearSelection()
    for n in names:
        sm.select(proxy_index(win, n), sm.SelectionFlag.Select | sm.SelectionFlag.Rows)
