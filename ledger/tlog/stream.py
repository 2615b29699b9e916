"""RFC 9162 hashing of a whole log fed its leaf hashes in order, in bounded memory.

:class:`LeafStream` takes packed leaf hashes (32 bytes each) in seq order, in pieces of
any length, and keeps only a compact range: the stack of perfect-subtree roots covering
the leaves so far (one hash per binary digit of the count), plus one block of
``block_leaves`` leaves (default ``BLOCK_LEAVES``) being hashed. From it come

* the root at each chosen size (e.g. the signed checkpoints' sizes and the log's size),
  byte-identical to :func:`ledger.tlog.merkle.roots_at_sizes`;
* the frontier: the perfect subtrees (height, hash) of the whole log, left to right;
* optionally the hash of every complete aligned subtree whose height is a multiple of
  ``every``, in order per height (with ``every`` the tile height, entry i of tile level
  L is the subtree of height L·every over leaves [i·2^(L·every), (i+1)·2^(L·every))), so
  stored tile levels can be compared as they are produced.

Interior hashes are computed level by level over packed buffers (``merkle._level_up``,
the same pairing loop as :func:`ledger.tlog.merkle.tree_levels_from_buffer`); memory is
O(block_leaves + log n) whatever the number of leaves, and no per-leaf Python object is
made. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    _level_up,
    fold_right,
    node_hash,
    perfect_subtrees,
)

__all__ = ["BLOCK_HEIGHT", "BLOCK_LEAVES", "LeafStream"]

BLOCK_HEIGHT = 16
BLOCK_LEAVES = 1 << BLOCK_HEIGHT  # leaves hashed at once (2 MiB of leaf hashes)

Node = tuple[int, int, bytes]  # (height, index at that height, packed hashes from there)


class LeafStream:
    """A log's leaf hashes fed in order (see the module docstring)."""

    def __init__(self, sizes: Iterable[int] = (), *, every: int = 0,
                 block_leaves: int = BLOCK_LEAVES) -> None:
        if block_leaves < 1 or block_leaves & (block_leaves - 1):
            raise ValueError("block_leaves must be a power of two")
        self._block_leaves = block_leaves
        self._wanted = sorted(set(sizes))
        if self._wanted and self._wanted[0] < 0:
            raise ValueError("sizes must not be negative")
        self._every = every
        self._next = 0  # index into _wanted of the next size to give a root for
        self._stack: list[tuple[int, bytes]] = []  # (height, hash); heights decreasing
        self._done = 0  # leaves folded into the stack (a multiple of block_leaves)
        self._buf = bytearray()
        self.roots: dict[int, bytes] = {}
        self._take_sizes_up_to(0)

    @property
    def size(self) -> int:
        """The number of leaves fed so far."""
        return self._done + len(self._buf) // HASH_SIZE

    def feed(self, packed: bytes | bytearray | memoryview) -> list[Node]:
        """Add leaf hashes (a multiple of 32 bytes); return the subtrees of a height that
        is a multiple of ``every`` that they complete, as (height, first index, packed)."""
        if len(packed) % HASH_SIZE:
            raise ValueError(f"the leaf hashes' length must be a multiple of {HASH_SIZE}")
        out: list[Node] = []
        block = self._block_leaves * HASH_SIZE
        if not self._buf and len(packed) == block:
            self._block(packed, self._block_leaves, out)
            return out
        self._buf += packed
        while len(self._buf) >= block:
            self._block(bytes(self._buf[:block]), self._block_leaves, out)
            del self._buf[:block]
        return out

    def finish(self) -> tuple[list[Node], list[tuple[int, bytes]]]:
        """Hash the leaves still held: the subtrees they complete (as ``feed``) and the
        frontier (the perfect subtrees of the whole log as (height, hash), left to
        right). Every chosen size must be at most ``size``."""
        out: list[Node] = []
        if self._buf:
            self._block(bytes(self._buf), len(self._buf) // HASH_SIZE, out)
            self._buf.clear()
        if self._next < len(self._wanted):
            raise ValueError(f"sizes must lie in 0..{self._done}")
        return out, list(self._stack)

    def _take_sizes_up_to(self, size: int) -> None:
        """Roots of the chosen sizes up to ``size`` = the leaves in the stack."""
        while self._next < len(self._wanted) and self._wanted[self._next] <= size:
            s = self._wanted[self._next]
            self.roots[s] = (fold_right([h for _, h in self._stack]) if self._stack
                             else EMPTY_ROOT)
            self._next += 1

    def _block(self, leaves: bytes | bytearray | memoryview, count: int,
               out: list[Node]) -> None:
        """Fold one aligned block of ``count`` leaves (block_leaves, but the last)."""
        start = self._done
        levels = [leaves]
        width = count
        while width > 1:
            levels.append(_level_up(levels[-1], width))
            width = (width + 1) // 2

        def node(height: int, at: int) -> bytes:  # the aligned subtree at leaf ``at``
            i = (at - start) >> height
            return bytes(levels[height][HASH_SIZE * i:HASH_SIZE * (i + 1)])

        if self._every:
            for height in range(self._every, len(levels), self._every):
                whole = count >> height
                if whole:
                    out.append((height, start >> height,
                                bytes(levels[height][:HASH_SIZE * whole])))
        # roots at chosen sizes strictly inside the block: the stack, then the pieces of
        # [start, size) (all lower than any node of the stack)
        end = start + count
        while self._next < len(self._wanted) and self._wanted[self._next] < end:
            s = self._wanted[self._next]
            pieces = [node((e - b).bit_length() - 1, b) for b, e in perfect_subtrees(start, s)]
            self.roots[s] = fold_right([h for _, h in self._stack] + pieces)
            self._next += 1
        for b, e in perfect_subtrees(start, end):
            self._push((e - b).bit_length() - 1, b, node((e - b).bit_length() - 1, b), out)
        self._done = end
        self._take_sizes_up_to(end)

    def _push(self, height: int, at: int, digest: bytes, out: list[Node]) -> None:
        """Push a perfect subtree at leaf ``at``, merging equal heights (a carry); the
        merged nodes of a height that is a multiple of ``every`` are reported."""
        while self._stack and self._stack[-1][0] == height:
            digest = node_hash(self._stack.pop()[1], digest)
            height += 1
            at -= 1 << (height - 1)
            if self._every and height % self._every == 0:
                out.append((height, at >> height, digest))
        self._stack.append((height, digest))

