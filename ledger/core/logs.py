"""``Logs``: each project's log as the writer knows it: its size (the next ``seq``), the
seqs of its receipt entries, and its Merkle tree on disk (``tree/tenant=<t>``)."""

from __future__ import annotations

from collections.abc import Callable

from ledger.storage.layout import DataDir
from ledger.tlog.tiles import TreeStore

TreeFill = Callable[[str, TreeStore, int], None]  # (tenant, tree, size): append the missing


class Logs:
    """Sizes, receipt seqs and trees of every project. Callers hold the write lock. A
    tree found shorter than its log is caught up by ``fill`` (recovery's), one longer (a
    crash after the tree was written and before the journal) is cut to the log."""

    def __init__(self, layout: DataDir, sizes: dict[str, int],
                 receipt_seqs: dict[str, list[int]], fill: TreeFill) -> None:
        self.layout = layout
        self.sizes = sizes
        self.receipt_seqs = receipt_seqs
        self._fill = fill
        self.trees: dict[str, TreeStore] = {}

    def size(self, tenant: str) -> int:
        return self.sizes.get(tenant, 0)

    def tree(self, tenant: str) -> TreeStore:
        tree = self.trees.get(tenant)
        if tree is not None:
            return tree
        tree = TreeStore(self.layout.tree(tenant))
        size = self.sizes.get(tenant, 0)
        if tree.size > size:
            tree.truncate(size)
        elif tree.size < size:
            self._fill(tenant, tree, size)
        self.trees[tenant] = tree
        return tree

    def open_trees(self) -> None:
        """Open (and catch up) the tree of every project with entries."""
        for tenant in self.sizes:
            self.tree(tenant)

    def close(self) -> None:
        for tree in self.trees.values():
            tree.sync()
            tree.close()


__all__ = ["Logs", "TreeFill"]
