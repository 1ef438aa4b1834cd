"""The layer tree: a QAbstractItemModel over the core TreeNode hierarchy.

Qt asks only for the rows it shows, so opening a model with tens of thousands of tensors costs one
pass to index parents (``_row_of``) and nothing per row until it scrolls into view. Group rows
aggregate the plan (planned bytes, bits per weight, worst weight and output error) from one pass
per plan change.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont

from qtstudio.core.human_numbers import human_bytes, human_count

from .document import PlanDocument, is_integer_dtype

COLUMNS = ("name", "shape", "dtype", "parameters", "size", "encoding", "bpw", "error",
           "output error", "gguf name")
COL = {name: i for i, name in enumerate(COLUMNS)}

#: item data role holding the full dotted path (the filter matches on it)
PathRole = Qt.ItemDataRole.UserRole + 1
#: item data role holding the TreeNode
NodeRole = Qt.ItemDataRole.UserRole + 2
#: item data role holding a sortable number for numeric columns
SortRole = Qt.ItemDataRole.UserRole + 3

_HEADER_TIPS = {
    "size": "bytes the tensor takes under the current plan (tooltip: before and after)",
    "bpw": "bits per weight under the current plan",
    "error": "relative RMS error of the dequantized weights (group rows: the worst below them)",
    "output error": "relative error of the tensor's block output, ||out - ref||² / ||ref||², "
                    "with this tensor alone at its planned encoding, on calibration data "
                    "(Run ▸ What-if with output error; group rows: the worst below them)",
    "encoding": "encoding the plan gives the tensor; double-click or F2 to change it",
    "gguf name": "the tensor's name in a GGUF file (what llama-quantize --tensor-type rules and "
                 "gguf_name rules match)",
}

#: error text of a group that holds a quantized tensor nobody has measured yet
NOT_MEASURED = "not measured"
#: output error text of the embedding and the head: they feed no block, only their KL exists
NO_BLOCK = "KL only"

AnyIndex = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()  # the invalid index Qt uses for "top level"


class LayerTreeModel(QAbstractItemModel):
    #: (tensor names, encoding or None) the user asked for through the editor
    assign_requested = Signal(list, object)
    #: the plan or measurements changed: every visible row may show new values
    refreshed = Signal()

    def __init__(self, doc: PlanDocument, parent=None) -> None:
        super().__init__(parent)
        self._doc = doc
        self._root = doc.model.tree
        self._row_of: dict[int, int] = {}
        stack = [self._root]
        while stack:
            node = stack.pop()
            for i, child in enumerate(node.children):
                self._row_of[id(child)] = i
                if child.children:
                    stack.append(child)
        self._agg: dict[int, tuple[int, float, float | None]] = {}
        self._mix: dict[int, dict[str, int]] = {}
        self._unmeasured: set[int] = set()
        #: worst output error below each node, and nodes whose output error is stale (a
        #: tensor below was measured, but not at the encoding the plan now gives it)
        self._out: dict[int, float | None] = {}
        self._out_stale: set[int] = set()
        self._recompute()
        doc.subscribe(self._on_doc)

    def detach(self) -> None:
        self._doc.unsubscribe(self._on_doc)

    @property
    def document(self) -> PlanDocument:
        return self._doc

    # ---- aggregation ---------------------------------------------------------------------
    def _recompute(self) -> None:
        """Planned bytes, bpw and worst error for every node, bottom-up in one pass."""
        plan, doc = self._doc.plan, self._doc
        acc: dict[int, list] = {}
        order = []  # pre-order; walked backwards it visits children before parents
        stack = [self._root]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(node.children)
        mix: dict[int, dict[str, int]] = {}
        unmeasured: set[int] = set()  # nodes with a lossy tensor below that has no error yet
        out: dict[int, float | None] = {}
        stale: set[int] = set()
        for node in reversed(order):
            nb = params = 0
            worst: float | None = None
            worst_out: float | None = None
            encs: dict[str, int] = {}
            if node.tensor is not None:  # a node may hold a tensor and have children too
                err = doc.error(node.tensor.name)
                entry = plan.entry(node.tensor.name)
                nb, params = entry.nbytes, node.tensor.params
                worst = err.get("rel_error") if err else None
                integer = is_integer_dtype(node.tensor.dtype)
                encs[node.tensor.dtype if integer else entry.encoding] = 1
                if err is None and not integer and entry.encoding != entry.source_dtype:
                    unmeasured.add(id(node))
                oe = doc.output_error(node.tensor.name)
                worst_out = oe.get("out_err") if oe else None
                if oe is None and doc.output_measured(node.tensor.name):
                    stale.add(id(node))
            for child in node.children:
                if id(child) in unmeasured:
                    unmeasured.add(id(node))
                if id(child) in stale:
                    stale.add(id(node))
                co = out[id(child)]
                if co is not None and (worst_out is None or co > worst_out):
                    worst_out = co
                cb, cp, ce = acc[id(child)]
                nb += cb
                params += cp
                if ce is not None and (worst is None or ce > worst):
                    worst = ce
                for k, v in mix[id(child)].items():
                    encs[k] = encs.get(k, 0) + v
            acc[id(node)] = [nb, params, worst]
            mix[id(node)] = encs
            out[id(node)] = worst_out
        self._agg = {k: (v[0], 8.0 * v[0] / v[1] if v[1] else 0.0, v[2]) for k, v in acc.items()}
        self._mix = mix
        self._unmeasured = unmeasured
        self._out, self._out_stale = out, stale

    def _on_doc(self, what: str) -> None:
        self._recompute()
        n = self.rowCount()
        if n:
            # One signal for the top level; views repaint the rest on ``refreshed``. A dataChanged
            # per group would make a sorting/filtering proxy re-examine every row of 10k tensors.
            self.dataChanged.emit(self.index(0, COL["size"]),
                                  self.index(n - 1, len(COLUMNS) - 1))
        self.refreshed.emit()

    # ---- structure -----------------------------------------------------------------------
    def node(self, index: AnyIndex):
        return index.internalPointer() if index.isValid() else self._root

    def index(self, row: int, column: int, parent: AnyIndex = _ROOT) -> QModelIndex:
        pnode = self.node(parent)
        if row < 0 or column < 0 or column >= len(COLUMNS) or row >= len(pnode.children):
            return QModelIndex()
        return self.createIndex(row, column, pnode.children[row])

    def parent(self, index: AnyIndex = _ROOT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        node = index.internalPointer()
        pnode = node.parent
        if pnode is None or pnode is self._root:
            return QModelIndex()
        return self.createIndex(self._row_of[id(pnode)], 0, pnode)

    def rowCount(self, parent: AnyIndex = _ROOT) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent: AnyIndex = _ROOT) -> int:
        return len(COLUMNS)

    def hasChildren(self, parent: AnyIndex = _ROOT) -> bool:
        return self.rowCount(parent) > 0

    def index_for_path(self, path: str) -> QModelIndex:
        """Index of the node whose dotted path is ``path`` (for selection from plots)."""
        node = self._root.find(path)
        if node is None or node is self._root:
            return QModelIndex()
        return self.createIndex(self._row_of[id(node)], 0, node)

    # ---- data ----------------------------------------------------------------------------
    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        name = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            return _HEADER_TIPS.get(name)
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        f = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        node = index.internalPointer()
        if index.column() == COL["encoding"] and node.tensor is not None and \
                not is_integer_dtype(node.tensor.dtype):
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = index.internalPointer()
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, col)
        if role == Qt.ItemDataRole.EditRole:
            if col == "encoding" and node.tensor is not None:
                return self._doc.plan.entry(node.tensor.name).encoding
            return self._display(node, col)
        if role == PathRole:
            return node.path
        if role == NodeRole:
            return node
        if role == SortRole:
            return self._sort_key(node, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node, col)
        if role == Qt.ItemDataRole.ForegroundRole and node.tensor is not None:
            entry = self._doc.plan.entry(node.tensor.name)
            if col == "encoding" and entry.fallback_from:
                return QBrush(QColor(214, 120, 0))
        if (role == Qt.ItemDataRole.FontRole and col == "encoding" and node.tensor is not None
                and node.tensor.name in (self._doc.recipe.overrides or {})):
            f = QFont()  # bold: chosen by hand, not by a rule or the preset
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (
                "parameters", "size", "bpw", "error", "output error"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, node, col: str) -> Any:
        t = node.tensor
        nbytes, bpw, worst = self._agg.get(id(node), (0, 0.0, None))
        if col == "name":
            return node.name or "(model)"
        if col == "parameters":
            return human_count(t.params if t is not None else node.params)
        if col == "size":
            return human_bytes(nbytes)
        if col == "bpw":
            return f"{bpw:.2f}"
        if col == "error":
            if t is None and id(node) in self._unmeasured:
                # "exact" or a worst error would claim more than was measured
                return NOT_MEASURED if worst is None or worst == 0 else f"≥ {worst:.2e}"
            if worst is None:
                return ""
            return "exact" if worst == 0 else f"{worst:.2e}"
        if col == "output error":
            return self._display_output(node)
        if col == "gguf name":
            return t.gguf_name or "" if t is not None else ""
        if t is None:
            if col == "encoding":  # a group: what its tensors get, by count
                encs = sorted(self._mix.get(id(node), {}).items(), key=lambda kv: -kv[1])
                if len(encs) <= 3:
                    return ", ".join(k for k, _ in encs)
                return f"{encs[0][0]}, {encs[1][0]} + {len(encs) - 2} more"
            return ""
        if col == "shape":
            return " × ".join(str(s) for s in t.shape)
        if col == "dtype":
            return t.dtype
        if col == "encoding":
            if is_integer_dtype(t.dtype):
                return f"{t.dtype} (kept)"  # integer data is stored as it is
            entry = self._doc.plan.entry(t.name)
            return f"{entry.encoding} ⟵ {entry.fallback_from}" if entry.fallback_from \
                else entry.encoding
        return ""

    def _display_output(self, node) -> str:
        worst = self._out.get(id(node))
        t = node.tensor
        if t is not None:
            oe = self._doc.output_error(t.name)
            if oe is None:
                return NOT_MEASURED if id(node) in self._out_stale else ""
            if oe.get("out_err") is None:
                return NO_BLOCK
        elif id(node) in self._out_stale:
            return NOT_MEASURED if worst is None else f"≥ {worst:.2e}"
        if worst is None:
            return ""
        return "exact" if worst == 0 else f"{worst:.2e}"

    def _sort_key(self, node, col: str) -> Any:
        nbytes, bpw, worst = self._agg.get(id(node), (0, 0.0, None))
        t = node.tensor
        if col == "parameters":
            return t.params if t is not None else node.params
        if col == "size":
            return nbytes
        if col == "bpw":
            return bpw
        if col == "error":
            return -1.0 if worst is None else worst
        if col == "output error":
            v = self._out.get(id(node))
            return -1.0 if v is None else v
        return self._display(node, col) or ""

    def _tooltip(self, node, col: str) -> str | None:
        t = node.tensor
        if t is None and col == "error" and id(node) in self._unmeasured:
            return ("some quantized tensors below have no measurement for their encoding yet "
                    "(Run ▸ Quantize or What-if); the value is the worst of those measured")
        if col == "output error":
            return self._output_tooltip(node)
        if t is None:
            if col == "size":
                nbytes = self._agg.get(id(node), (0, 0.0, None))[0]
                return f"{human_bytes(node.nbytes)} before, {human_bytes(nbytes)} planned"
            return node.path or None
        entry = self._doc.plan.entry(t.name)
        if col == "encoding":
            lines = [f"{entry.encoding} (from {entry.origin})"]
            if entry.fallback_from:
                lines.append(f"asked for {entry.fallback_from}: {entry.reason}")
            return "\n".join(lines)
        if col == "size":
            return f"{human_bytes(t.nbytes)} before, {human_bytes(entry.nbytes)} planned"
        if col == "error":
            err = self._doc.error(t.name)
            if not err:
                return "not measured for this encoding yet (Run ▸ Quantize or What-if)"
            return "\n".join(f"{k}: {v:.4g}" for k, v in err.items())
        if col == "name":
            extra = f"\nGGUF: {t.gguf_name}" if t.gguf_name else ""
            return f"{t.name}\nrole: {t.role}{extra}"
        return None

    def _output_tooltip(self, node) -> str | None:
        doc, t = self._doc, node.tensor
        src = doc.measurements.output_source
        if t is None:
            if id(node) in self._out_stale:
                return ("some tensors below were measured, but not at the encoding the plan now "
                        "gives them; the value is the worst of those measured")
            return f"worst below, measured on {src}" if src else None
        oe = doc.output_error(t.name)
        enc = doc.plan.entry(t.name).encoding
        if oe is None:
            if id(node) in self._out_stale:
                return (f"not measured at {enc} (the plan changed since): Run ▸ What-if with "
                        "output error")
            return ("not measured: Run ▸ What-if with output error (on the calibration file) "
                    "or Optimize with the kl objective")
        lines = [f"{enc} alone, on {src}:"]
        if oe.get("out_err") is None:
            lines.append("no block output (embedding or output head)")
        else:
            lines.append(f"block output error: {oe['out_err']:.4g}")
        lines.append(f"output KL: {oe['kl']:.4g}")
        return "\n".join(lines)

    def setData(self, index: AnyIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        node = index.internalPointer()
        if COLUMNS[index.column()] != "encoding" or node.tensor is None:
            return False
        enc = value or None
        overrides = self._doc.recipe.overrides or {}
        if overrides.get(node.tensor.name) == enc:
            return False  # nothing would change: no empty undo step
        # The window turns this into an undoable command; the change arrives via the document.
        self.assign_requested.emit([node.tensor.name], enc)
        return True
