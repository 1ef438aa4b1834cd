"""The model tree: a hierarchy built from dotted tensor names, with aggregated sizes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tensor_info import TensorInfo


@dataclass(eq=False)
class TreeNode:
    """One segment of a dotted name. Leaves carry a tensor; every node sums its subtree."""

    name: str
    path: str
    parent: TreeNode | None = None
    children: list[TreeNode] = field(default_factory=list)
    tensor: TensorInfo | None = None
    params: int = 0
    nbytes: int = 0
    _index: dict[str, TreeNode] = field(default_factory=dict, repr=False)

    def child(self, segment: str) -> TreeNode | None:
        return self._index.get(segment)

    def _add_child(self, segment: str) -> TreeNode:
        node = self._index.get(segment)
        if node is None:
            path = f"{self.path}.{segment}" if self.path else segment
            node = TreeNode(segment, path, parent=self)
            self.children.append(node)
            self._index[segment] = node
        return node

    def iter_tensors(self) -> Iterator[TensorInfo]:
        """Tensors under this node, in tree order (file order within a node)."""
        if self.tensor is not None:
            yield self.tensor
        for c in self.children:
            yield from c.iter_tensors()

    def walk(self) -> Iterator[TreeNode]:
        yield self
        for c in self.children:
            yield from c.walk()

    def find(self, path: str) -> TreeNode | None:
        node: TreeNode | None = self
        for seg in path.split(".") if path else []:
            node = node.child(seg) if node else None
        return node

    @property
    def is_leaf(self) -> bool:
        return self.tensor is not None and not self.children

    def __repr__(self) -> str:
        return f"TreeNode({self.path or '<root>'!r}, params={self.params}, nbytes={self.nbytes})"


def build_tree(tensors: Iterable[TensorInfo]) -> TreeNode:
    """Group tensors by dotted-name prefix; sums flow up to the root."""
    root = TreeNode("", "")
    for t in tensors:
        node = root
        for seg in t.name.split("."):
            node = node._add_child(seg)
        # A name that is also a prefix of others ("a.b" and "a.b.c") keeps both: the tensor sits
        # on the inner node beside its children.
        node.tensor = t
        walk: TreeNode | None = node
        while walk is not None:
            walk.params += t.params
            walk.nbytes += t.nbytes
            walk = walk.parent
    # Repeated blocks read best in numeric order (checkpoints often store 0, 1, 10, 11, ..., 2).
    # Compared as digit strings (length first), never converted: a segment may hold thousands
    # of digits in a damaged file.
    for node in root.walk():
        if len(node.children) > 1 and all(_is_number(c.name) for c in node.children):
            node.children.sort(key=lambda c: _number_key(c.name))
    return root


def _is_number(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def _number_key(segment: str) -> tuple[int, str, str]:
    digits = segment.lstrip("0")
    return len(digits), digits, segment
