"""The persistent RFC 9162 Merkle tree of one log, stored as C2SP tlog-tiles levels.

This module owns the on-disk tree: the leaf hashes and the interior hashes maintained at
append time, and proof generation over them (through ``ledger.tlog.merkle``, whose
:class:`~ledger.tlog.merkle.HashSource` protocol :class:`TreeStore` implements).

Layout (tile height 8, as in C2SP tlog-tiles): ``level-L.bin`` in the store's directory is
a flat file of 32-byte hashes; entry i of level L is the hash of the complete subtree over
leaves [i·256^L, (i+1)·256^L). Level 0 holds the leaf hashes and level L+1 always holds
exactly floor(len(level L) / 256) entries. Entries never change once written, so every
historical root and proof can be computed from the current files.

The files are derived data (rebuildable from the leaf hashes): ``append`` does not fsync,
and opening a store repairs whatever a crash left behind. Not safe for concurrent writers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ledger.storage.durable import open_private, private_dir
from ledger.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof,
    fold_right,
    inclusion_proof,
    parent_hashes,
    perfect_subtrees,
    root_from_leaf_hashes,
)

__all__ = ["TILE_HEIGHT", "TILE_WIDTH", "TreeStore"]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_REPAIR_CHUNK = 1024  # tiles rebuilt per read while repairing


def level_file(directory: Path, level: int) -> Path:
    """The file of one level of the tree kept in ``directory``."""
    return Path(directory) / f"level-{level}.bin"


def _tile_hashes(hashes: list[bytes]) -> list[bytes]:
    """Hashes of the consecutive full tiles in ``hashes`` (length a multiple of 256)."""
    for _ in range(TILE_HEIGHT):
        hashes = parent_hashes(hashes)
    return hashes


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class TreeStore:
    """One log's Merkle tree on disk; see the module docstring for the layout."""

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)
        private_dir(self._dir)
        self._fds: list[int] = []
        self._counts: list[int] = []  # entries per level
        self._tails: list[list[bytes]] = []  # entries of each level after its last full tile
        self._root: bytes | None = None
        self._repair()

    # --- opening and crash repair ---------------------------------------------------

    def _path(self, level: int) -> Path:
        return level_file(self._dir, level)

    def _open_level(self, level: int) -> None:
        fd = open_private(self._path(level), os.O_RDWR)
        size = os.fstat(fd).st_size
        count = size // HASH_SIZE
        if size % HASH_SIZE:
            os.ftruncate(fd, count * HASH_SIZE)  # drop a torn trailing hash
        self._fds.append(fd)
        self._counts.append(count)

    def _repair(self) -> None:
        """Open every level, making level L+1 exactly floor(len(level L) / 256) long."""
        suffixes = (p.stem.removeprefix("level-") for p in self._dir.glob("level-*.bin"))
        top = max((int(s) for s in suffixes if s.isdigit()), default=0)
        self._open_level(0)
        level = 0
        while self._counts[level] >= TILE_WIDTH or level < top:
            self._open_level(level + 1)
            want = self._counts[level] // TILE_WIDTH
            if self._counts[level + 1] > want:
                self._resize(level + 1, want)
            for first in range(self._counts[level + 1], want, _REPAIR_CHUNK):
                count = min(_REPAIR_CHUNK, want - first)
                below = self._read(level, first * TILE_WIDTH, count * TILE_WIDTH)
                self._write(level + 1, _tile_hashes(below))
            level += 1
        self._tails = [self._read_tail(level) for level in range(len(self._fds))]

    def _read_tail(self, level: int) -> list[bytes]:
        full = self._counts[level] // TILE_WIDTH * TILE_WIDTH
        return self._read(level, full, self._counts[level] - full)

    # --- raw level access -----------------------------------------------------------

    def _read(self, level: int, index: int, count: int) -> list[bytes]:
        data = os.pread(self._fds[level], count * HASH_SIZE, index * HASH_SIZE)
        if len(data) != count * HASH_SIZE:
            raise OSError(f"short read from {self._path(level)}")
        return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]

    def _write(self, level: int, hashes: list[bytes]) -> None:
        _pwrite_all(self._fds[level], b"".join(hashes), self._counts[level] * HASH_SIZE)
        self._counts[level] += len(hashes)

    def _resize(self, level: int, count: int) -> None:
        os.ftruncate(self._fds[level], count * HASH_SIZE)
        self._counts[level] = count

    # --- public API -----------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._counts[0]

    def append(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append leaf hashes, writing each level once and hashing only completed tiles."""
        if not all(len(h) == HASH_SIZE for h in leaf_hashes):
            raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
        new = list(leaf_hashes)
        level = 0
        while new:
            if level == len(self._fds):
                self._open_level(level)
                self._tails.append([])
            self._write(level, new)
            pending = self._tails[level]
            pending.extend(new)
            if len(pending) < TILE_WIDTH:  # no tile completed: nothing above changes
                break
            full = len(pending) // TILE_WIDTH * TILE_WIDTH
            self._tails[level] = pending[full:]
            new = _tile_hashes(pending[:full])
            level += 1
        self._root = None

    def truncate(self, size: int) -> None:
        """Drop the leaves at index ``size`` and beyond (and the tiles that covered them)."""
        if not 0 <= size <= self.size:
            raise ValueError(f"cannot truncate a tree of size {self.size} to {size}")
        for level in range(len(self._fds)):
            self._resize(level, size >> (TILE_HEIGHT * level))
            self._tails[level] = self._read_tail(level)
        self._root = None

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of size {self.size}")
        return self._read(0, index, 1)[0]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        if not 0 <= start <= end <= self.size:
            raise IndexError(f"bad range [{start}, {end}) for a tree of size {self.size}")
        return self._read(0, start, end - start)

    def leaf_hash_buffer(self, start: int, end: int) -> bytes:
        """Leaf hashes [start, end) packed into one bytes object (one read)."""
        if not 0 <= start <= end <= self.size:
            raise IndexError(f"bad range [{start}, {end}) for a tree of size {self.size}")
        data = os.pread(self._fds[0], (end - start) * HASH_SIZE, start * HASH_SIZE)
        if len(data) != (end - start) * HASH_SIZE:
            raise OSError(f"short read from {self._path(0)}")
        return data

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) from the stored levels (the HashSource protocol)."""
        if not 0 <= start < end <= self.size:
            raise ValueError(f"bad range [{start}, {end}) for a tree of size {self.size}")
        return fold_right([self._perfect_hash(s, e) for s, e in perfect_subtrees(start, end)])

    def _perfect_hash(self, start: int, end: int) -> bytes:
        """Hash of a complete subtree: one stored entry, or up to 128 entries of a level.

        Ranges that are not aligned (never part of an RFC 9162 tree) hash their leaves.
        """
        width = end - start
        if start % width:
            return root_from_leaf_hashes(self.leaf_hashes(start, end))
        level, rest = divmod(width.bit_length() - 1, TILE_HEIGHT)
        index = start >> (TILE_HEIGHT * level)
        return root_from_leaf_hashes(self._read(level, index, 1 << rest))

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all of them)."""
        if size is None or size == self.size:
            if self._root is None:
                self._root = self.subtree_hash(0, self.size) if self.size else EMPTY_ROOT
            return self._root
        if not 0 <= size <= self.size:
            raise ValueError(f"no root for size {size} in a tree of size {self.size}")
        return self.subtree_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if size > self.size:
            raise ValueError(f"size {size} is beyond the tree size {self.size}")
        return inclusion_proof(self, index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if new_size > self.size:
            raise ValueError(f"size {new_size} is beyond the tree size {self.size}")
        return consistency_proof(self, old_size, new_size)

    def sync(self) -> None:
        """fsync every level file and the directory."""
        for fd in self._fds:
            os.fsync(fd)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> TreeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
