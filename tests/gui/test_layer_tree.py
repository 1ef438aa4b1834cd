"""The layer tree model over a 10,000-tensor checkpoint: structure, speed, filtering."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

pytestmark = pytest.mark.gui

N_LAYERS, PER_LAYER = 400, 25


@pytest.fixture(scope="module")
def big_tree_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "wide.safetensors"
    t = {}
    for i in range(N_LAYERS):
        for j in range(PER_LAYER):
            t[f"model.layers.{i}.part.{j}.weight"] = np.full((2, 32), i + j / 100, np.float32)
    save_file(t, str(path))
    return path


def _walk(model, parent, out):
    for r in range(model.rowCount(parent)):
        idx = model.index(r, 0, parent)
        assert model.parent(idx) == parent  # the parent/child round trip Qt relies on
        node = idx.internalPointer()
        if node.tensor is not None:
            out.append(node.tensor.name)
        _walk(model, idx, out)


def test_ten_thousand_tensors(qtbot, big_tree_path):
    from PySide6.QtWidgets import QTreeView

    from qtstudio.formats import open_model
    from qtstudio.gui.document import PlanDocument
    from qtstudio.gui.filter_proxy import LayerFilterProxy
    from qtstudio.gui.tree_model import COL, LayerTreeModel

    model = open_model(big_tree_path)
    assert len(model.tensors) == N_LAYERS * PER_LAYER
    doc = PlanDocument(model)
    t0 = time.perf_counter()
    tm = LayerTreeModel(doc)
    proxy = LayerFilterProxy()
    proxy.setSourceModel(tm)
    view = QTreeView()
    qtbot.addWidget(view)
    view.setUniformRowHeights(True)
    view.setModel(proxy)
    view.show()
    view.expandAll()
    qtbot.wait(1)
    build = time.perf_counter() - t0
    assert build < 5.0, f"building and expanding the tree took {build:.2f} s"

    names: list[str] = []
    from PySide6.QtCore import QModelIndex

    _walk(tm, QModelIndex(), names)
    assert sorted(names) == sorted(t.name for t in model.tensors)

    # group rows aggregate: layer 7 holds 25 tensors of 64 float32 values
    layer7 = tm.index_for_path("model.layers.7")
    assert tm.data(tm.index(layer7.row(), COL["parameters"], layer7.parent())) == "1.60K"
    assert tm.data(tm.index(layer7.row(), COL["size"], layer7.parent())) == "6.25 KiB"

    # a plan change reaches the rows without rebuilding the model, and quickly
    from qtstudio.core.recipe import Recipe

    t0 = time.perf_counter()
    doc.set_recipe(Recipe(default_encoding="Q8_0"))
    qtbot.wait(1)
    assert time.perf_counter() - t0 < 3.0
    leaf = tm.index_for_path("model.layers.7.part.3.weight")
    assert tm.data(tm.index(leaf.row(), COL["encoding"], leaf.parent())) == "Q8_0"
    assert tm.data(tm.index(leaf.row(), COL["bpw"], leaf.parent())) == "8.50"

    # filtering: substring and regex agree with Python's own matching over the names
    for text, regex in (("part.13.", False), (r"layers\.(12|399)\.part\.[0-4]\.", True)):
        t0 = time.perf_counter()
        assert proxy.set_pattern(text, regex=regex) is None
        view.expandAll()
        qtbot.wait(1)
        assert time.perf_counter() - t0 < 3.0
        rx = re.compile(text if regex else re.escape(text), re.I)
        expected = sorted(n for n in names if rx.search(n))
        assert proxy.matching_tensor_count() == len(expected)
        shown = _visible_tensors(proxy)
        assert sorted(shown) == expected
    assert "invalid regular expression" in proxy.set_pattern("layers.(", regex=True)
    proxy.set_pattern("", regex=False)
    assert len(_visible_tensors(proxy)) == len(names)
    tm.detach()


def _visible_tensors(proxy):
    from PySide6.QtCore import QModelIndex

    from qtstudio.gui.tree_model import NodeRole

    out, stack = [], [QModelIndex()]
    while stack:
        parent = stack.pop()
        for r in range(proxy.rowCount(parent)):
            idx = proxy.index(r, 0, parent)
            node = idx.data(NodeRole)
            if node.tensor is not None:
                out.append(node.tensor.name)
            stack.append(idx)
    return out
