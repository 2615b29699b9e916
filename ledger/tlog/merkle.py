"""RFC 9162 §2.1 Merkle tree hashing, proof generation and proof verification.

This module owns the byte-exact tree arithmetic of the ledger and nothing else: it does no
I/O. Persistent interior hashes live in ``ledger.tlog.tiles``, which implements the
:class:`HashSource` protocol so the proof generators here work on it unchanged.

* Hashing: ``leaf_hash(d) = SHA-256(0x00 ‖ d)``, ``node_hash(l, r) = SHA-256(0x01 ‖ l ‖ r)``,
  the empty tree hashes to ``SHA-256("")`` and an n-leaf tree splits at the largest power of
  two strictly smaller than n.
* Generation: :func:`inclusion_proof` (RFC 9162 §2.1.3.1, PATH) and
  :func:`consistency_proof` (§2.1.4.1, SUBPROOF), written against :class:`HashSource`.
  :class:`MemoryTree` is the in-memory source.
* Verification: :func:`verify_inclusion` (§2.1.3.2) and :func:`verify_consistency`
  (§2.1.4.2) raise :class:`ProofError` naming the check that failed. Every hash that takes
  part in a computation must be exactly 32 bytes, and the walk must end with ``sn == 0``,
  so proofs with missing or extra elements are rejected.

Consistency from the empty tree (the documented choice):

* :func:`verify_consistency` is strict. RFC 9162 defines consistency proofs only for
  ``0 < old_size``, so ``old_size == 0`` is an error, as in the transparency-dev/merkle
  verifier and its test vectors. When ``old_size == new_size`` nothing is computed: the
  proof must be empty and the two roots byte-identical (the transparency-dev vectors accept
  this even for roots that are not 32 bytes long, and so does this function).
* :func:`verify_append_only` is what a witness uses. It accepts ``old_size == 0`` with an
  empty proof (as C2SP tlog-witness does), provided ``old_root`` is the empty-tree root and
  ``new_root`` is a 32-byte hash, and otherwise delegates to :func:`verify_consistency`.
  :func:`consistency_proof` returns ``[]`` for ``old_size == 0`` to match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256
from typing import Protocol

from ledger.errors import ProofError
from ledger.model.native import NATIVE_MODULE as _native  # parent_hashes in C, when built

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HashSource",
    "MemoryTree",
    "ProofError",
    "consistency_proof",
    "fold_right",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "pair_hashes",
    "parent_hashes",
    "perfect_subtrees",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "roots_at_sizes",
    "tree_levels_from_buffer",
    "verify_append_only",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data): the hash of one log entry."""
    return sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an interior node."""
    return sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def parent_hashes(level: Sequence[bytes]) -> list[bytes]:
    """The next level up: adjacent pairs hashed, an odd last node moved up unchanged.

    Repeating this until one hash is left gives the RFC 9162 root. (``ledger.model._native``
    has the same loop in C; it is used when built.)
    """
    if _native is not None:
        return _native.parent_hashes(level)
    return parent_hashes_python(level)


def parent_hashes_python(level: Sequence[bytes]) -> list[bytes]:
    """``parent_hashes`` in Python (the reference the tests compare the C loop with)."""
    parents = [
        sha256(_NODE_PREFIX + left + right).digest()
        for left, right in zip(level[0::2], level[1::2], strict=False)
    ]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (iterative, one pass per tree level).

    Also gives the root of any run of sibling nodes of one level, e.g. a tile.
    """
    if not hashes:
        return EMPTY_ROOT
    if not all(len(h) == HASH_SIZE for h in hashes):
        raise ValueError(f"every hash must be {HASH_SIZE} bytes")
    level = list(hashes)
    while len(level) > 1:
        level = parent_hashes(level)
    return level[0]


def roots_at_sizes(hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """The roots of the first ``size`` leaves for every size in ``sizes`` (each at most
    ``len(hashes)``), in one pass: the leaves are folded into a stack of perfect subtrees
    (one node hash per leaf, amortized), and a root at size n is the right fold of the
    stack after leaf n, as RFC 9162's split at the largest power of two gives it."""
    wanted = sorted(set(sizes))
    if wanted and (wanted[0] < 0 or wanted[-1] > len(hashes)):
        raise ValueError(f"sizes must lie in 0..{len(hashes)}")
    out: dict[int, bytes] = {}
    pending = iter(wanted)
    nxt = next(pending, None)
    if nxt == 0:
        out[0] = EMPTY_ROOT
        nxt = next(pending, None)
    stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
    for i, h in enumerate(hashes, 1):
        if nxt is None:
            break
        node, height = h, 0
        while stack and stack[-1][0] == height:
            node = sha256(b"\x01" + stack.pop()[1] + node).digest()
            height += 1
        stack.append((height, node))
        if nxt == i:
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = sha256(b"\x01" + left + root).digest()
            out[i] = root
            nxt = next(pending, None)
    return out


_BUFFER_CHUNK = 1 << 18  # pairs hashed per list comprehension (bounds transient memory)


def pair_hashes(level: bytes | bytearray | memoryview, pairs: int) -> bytearray:
    """The node hashes of the first ``pairs`` adjacent pairs of a packed level (32-byte
    hashes), packed; in bounded chunks. (``ledger.model._native`` has the loop in C; it
    is used when built.)"""
    out = bytearray()
    view = memoryview(level)
    for first in range(0, pairs, _BUFFER_CHUNK):
        chunk = view[64 * first:64 * min(pairs, first + _BUFFER_CHUNK)]
        out += (_native.pair_hashes(chunk) if _native is not None
                else pair_hashes_python(chunk))
    view.release()
    return out


def pair_hashes_python(packed: bytes | bytearray | memoryview) -> bytes:
    """The node hash of each adjacent pair of a packed level (a whole number of pairs),
    packed: the reference the tests compare the C loop with."""
    if len(packed) % 64:
        raise ValueError("pair_hashes: the length must be a multiple of 64")
    return b"".join([sha256(_NODE_PREFIX + packed[i:i + 64]).digest()
                     for i in range(0, len(packed), 64)])


def _level_up(level: bytes | bytearray, count: int) -> bytearray:
    """The next level of a packed level (``count`` 32-byte hashes): adjacent pairs
    hashed, an odd last node moved up unchanged."""
    out = pair_hashes(level, count // 2)
    if count % 2:
        out += level[HASH_SIZE * (count - 1):HASH_SIZE * count]
    return out


def tree_levels_from_buffer(leaves: bytes, *, keep: int = 0) -> tuple[bytes, bytes]:
    """The root of the tree over packed leaf hashes (``len(leaves)`` a multiple of 32),
    and its level ``keep`` packed (entry i = MTH of leaves [i·2^keep, (i+1)·2^keep) for
    every complete aligned block; the entries after them belong to the partial tail).

    Level by level over one bytes buffer, so millions of leaves cost one ``sha256`` call
    per interior node and no per-node Python objects beyond a bounded chunk."""
    if len(leaves) % HASH_SIZE:
        raise ValueError(f"the leaf buffer's length must be a multiple of {HASH_SIZE}")
    count = len(leaves) // HASH_SIZE
    if count == 0:
        return EMPTY_ROOT, b""
    level: bytes | bytearray = leaves
    height, kept = 0, b""
    if keep == 0:
        kept = bytes(level)
    while count > 1:
        level = _level_up(level, count)
        count = (count + 1) // 2
        height += 1
        if height == keep:
            kept = bytes(level)
    return bytes(level[:HASH_SIZE]), kept


STREAM_CHUNK = 1 << 14  # leaves hashed at once by tree_levels_from_chunks (512 KiB)


def tree_levels_from_chunks(chunks: Iterable[bytes], *, keep: int = 0,
                            chunk_leaves: int | None = None) -> tuple[bytes, bytes]:
    """``tree_levels_from_buffer`` over packed leaf hashes given in pieces of any length,
    holding ``chunk_leaves`` leaves at a time: each aligned chunk of that many leaves is a
    perfect subtree, folded into a stack of perfect subtrees (as ``roots_at_sizes``), and
    the partial last chunk's MTH is folded on last, as RFC 9162's split gives the root.
    Memory: one chunk plus the kept level, whatever the number of leaves."""
    chunk_leaves = chunk_leaves or STREAM_CHUNK
    if chunk_leaves & (chunk_leaves - 1) or chunk_leaves < (1 << keep):
        raise ValueError("chunk_leaves must be a power of two of at least 2**keep")
    size = chunk_leaves * HASH_SIZE
    stack: list[tuple[int, bytes]] = []  # (chunks covered, hash), strictly decreasing
    kept = bytearray()
    buf = bytearray()

    def full(chunk: bytes) -> None:
        root, level = tree_levels_from_buffer(chunk, keep=keep)
        kept.extend(level)
        node, width = root, 1
        while stack and stack[-1][0] == width:
            node = node_hash(stack.pop()[1], node)
            width *= 2
        stack.append((width, node))

    for piece in chunks:
        if len(piece) % HASH_SIZE:
            raise ValueError(f"each piece's length must be a multiple of {HASH_SIZE}")
        buf += piece
        if len(buf) >= size:
            whole = len(buf) - len(buf) % size
            view = memoryview(buf)
            for at in range(0, whole, size):
                full(bytes(view[at:at + size]))
            view.release()
            del buf[:whole]
    parts = [h for _, h in stack]
    if buf:
        root, level = tree_levels_from_buffer(bytes(buf), keep=keep)
        kept.extend(level)
        parts.append(root)
    return (fold_right(parts) if parts else EMPTY_ROOT), bytes(kept)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split [start, end) into the perfect subtrees MTH(D[start:end]) is built from.

    The sizes are the binary digits of ``end - start``, largest first. For a node of an
    RFC 9162 tree each piece is aligned (its start is a multiple of its size).
    """
    pieces = []
    remaining = end - start
    while remaining:
        size = 1 << (remaining.bit_length() - 1)
        pieces.append((start, start + size))
        start += size
        remaining -= size
    return pieces


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """node_hash(h0, node_hash(h1, … node_hash(h[-2], h[-1]))): joins perfect subtrees."""
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


class HashSource(Protocol):
    """Anything that can hash the RFC 9162 subtree over leaves [start, end)."""

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for 0 <= start < end <= size."""
        ...


class MemoryTree:
    """An immutable in-memory tree that keeps every level of complete, aligned subtrees.

    ``levels[h][i]`` is the hash of leaves [i·2^h, (i+1)·2^h), so proofs cost O(log n).
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        if not all(len(h) == HASH_SIZE for h in leaf_hashes):
            raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
        self.levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(parent_hashes(below[: len(below) & ~1]))

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self) -> bytes:
        return self.subtree_hash(0, self.size) if self.size else EMPTY_ROOT

    def subtree_hash(self, start: int, end: int) -> bytes:
        if not 0 <= start < end <= self.size:
            raise ValueError(f"bad range [{start}, {end}) for a tree of size {self.size}")
        return fold_right([self._perfect_hash(s, e) for s, e in perfect_subtrees(start, end)])

    def _perfect_hash(self, start: int, end: int) -> bytes:
        height = (end - start).bit_length() - 1
        if start % (end - start) == 0:
            return self.levels[height][start >> height]
        return root_from_leaf_hashes(self.levels[0][start:end])


# --- proof generation (RFC 9162 §2.1.3.1 and §2.1.4.1) --------------------------------


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]): the audit path of leaf ``index``, bottom-up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append(source.subtree_hash(mid, end))
            end = mid
        else:
            path.append(source.subtree_hash(start, mid))
            start = mid
    path.reverse()
    return path


def consistency_proof(source: HashSource, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) = SUBPROOF(old_size, D[0:new_size], true).

    Empty when the sizes are equal, and (C2SP convention) when ``old_size == 0``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"need 0 <= old_size <= new_size, got {old_size}, {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end, m, whole_old_tree = 0, new_size, old_size, True
    while m < end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(source.subtree_hash(start + k, end))
            end = start + k
        else:
            proof.append(source.subtree_hash(start, start + k))
            start, m, whole_old_tree = start + k, m - k, False
    if not whole_old_tree:
        proof.append(source.subtree_hash(start, end))
    proof.reverse()
    return proof


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------------


def _require_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, want {HASH_SIZE}")


def _require_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, element in enumerate(proof):
        _require_hash(f"proof element {i}", element)


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift fn and sn equally until LSB(fn) is set or fn is 0."""
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Run RFC 9162 §2.1.3.2 steps 1–5 except the root comparison; return r."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _require_hash("leaf hash", leaf_hash)
    _require_proof_hashes(proof)
    fn, sn = index, size - 1
    r = leaf_hash
    for i, p in enumerate(proof):
        if sn == 0:
            raise ProofError(f"inclusion proof too long: element {i} is beyond the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"inclusion proof too short: {len(proof)} elements end below the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``."""
    _require_hash("root", root)
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends the tree (old_size, old_root).

    Strict RFC 9162 §2.1.4.2: ``old_size == 0`` is an error (see the module docstring).
    """
    if old_size < 0 or new_size < 0:
        raise ProofError(f"tree sizes must not be negative: {old_size}, {new_size}")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        raise ProofError("consistency with the empty tree is undefined (see verify_append_only)")
    if old_size == new_size:
        if proof:
            raise ProofError(f"sizes are equal but the proof has {len(proof)} elements")
        if old_root != new_root:
            raise ProofError("sizes are equal but the roots differ")
        return
    _require_hash("old root", old_root)
    _require_hash("new root", new_root)
    # Step 1.
    if not proof:
        raise ProofError("consistency proof is empty")
    _require_proof_hashes(proof)
    # Step 2: a power-of-two old tree is itself a node of the new tree.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Steps 3–4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # Steps 5–6.
    fr = sr = path[0]
    for i, c in enumerate(path[1:], start=1):
        if sn == 0:
            raise ProofError(f"consistency proof too long: element {i} is beyond the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    # Step 7.
    if sn != 0:
        raise ProofError(f"consistency proof too short: {len(proof)} elements end below the root")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


def verify_append_only(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Like :func:`verify_consistency`, but every tree extends the empty tree.

    With ``old_size == 0`` the proof must be empty (C2SP tlog-witness), ``old_root`` must be
    :data:`EMPTY_ROOT` and ``new_root`` a 32-byte hash (:data:`EMPTY_ROOT` if ``new_size`` is 0).
    """
    if old_size != 0:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
        return
    if new_size < 0:
        raise ProofError(f"new size must not be negative: {new_size}")
    if proof:
        raise ProofError(f"old size is 0 but the proof has {len(proof)} elements")
    if old_root != EMPTY_ROOT:
        raise ProofError("old size is 0 but the old root is not the empty-tree root")
    _require_hash("new root", new_root)
    if new_size == 0 and new_root != EMPTY_ROOT:
        raise ProofError("new size is 0 but the new root is not the empty-tree root")
