"""The encoding editor of the layer tree: a combo box offering only what the tensor can take."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QComboBox, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from .tree_model import NodeRole

#: the combo entry that removes a per-tensor override
PLAN_DEFAULT = "(plan default)"


class EncodingDelegate(QStyledItemDelegate):
    def __init__(self, document_getter, parent=None) -> None:
        super().__init__(parent)
        self._doc = document_getter  # a callable: the document changes when a model opens

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        node = index.data(NodeRole)
        combo = QComboBox(parent)
        combo.setObjectName("encodingEditor")
        doc = self._doc()
        if node is None or node.tensor is None or doc is None:
            return combo
        combo.addItem(PLAN_DEFAULT, None)
        for name in doc.candidates(node.tensor.name):
            bpw = doc.bpw_of(name, tuple(node.tensor.shape))
            combo.addItem(f"{name}  ({bpw:.2f} bpw)", name)
        # Commit as soon as a choice is made: one click, one undoable edit.
        combo.activated.connect(lambda _i, c=combo: self._commit(c))
        return combo

    def _commit(self, combo: QComboBox) -> None:
        self.commitData.emit(combo)
        self.closeEditor.emit(combo)

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        if not isinstance(editor, QComboBox):
            return
        current = index.data(Qt.ItemDataRole.EditRole)
        i = editor.findData(current)
        editor.setCurrentIndex(max(i, 0))

    def setModelData(self, editor: QWidget, model: QAbstractItemModel,
                     index: QModelIndex | QPersistentModelIndex) -> None:
        if isinstance(editor, QComboBox):
            model.setData(index, editor.currentData(), Qt.ItemDataRole.EditRole)
