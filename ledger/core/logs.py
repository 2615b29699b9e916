"""``Logs``: each project's log as the writer knows it: its size (the next ``seq``), the
seqs of its receipt entries, and its Merkle tree on disk (``tree/tenant=<t>``)."""

from __future__ import annotations

from collections.abc import Callable

from ledger.storage.layout import DataDir
from ledger.tlog.tiles import TreeStore

TreeFill = Callable[[str, TreeStore, int], None]  # (tenant, tree, size): append the missing


class Logs:
    """Sizes, receipt seqs and trees of every project. Callers hold the write lock. A
    tree found longer than its log (a crash after the tree was written and before the
    journal) is cut to the log; then ``fill`` (recovery's) checks it against the replayed
    journal and catches it up."""

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
        if size:  # checks what it has against the journal, and appends the missing
            self._fill(tenant, tree, size)
        self.trees[tenant] = tree
        return tree

    def leaf_hashes(self, tenant: str, start: int, end: int) -> bytes:
        """The tenant's leaf hashes ``[start, end)``, packed, from its tree (opened: any
        project with events has it); safe without the write lock, as a tree's entries
        never change once written."""
        tree = self.trees.get(tenant)
        if tree is None:
            raise LookupError(f"project {tenant!r} has no open tree")
        return tree.leaf_hash_buffer(start, end)

    def open_trees(self) -> None:
        """Open (and catch up) the tree of every project with entries."""
        for tenant in self.sizes:
            self.tree(tenant)

    def close(self) -> None:
        for tree in self.trees.values():
            tree.sync()
            tree.close()


__all__ = ["Logs", "TreeFill"]
