"""The persistent tile-layout tree (ledger.tlog.tiles.TreeStore)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.tlog import tiles
from ledger.tlog.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.tlog.tiles import TreeStore

# 256^2 leaves fill one level-2 entry; a few more leave partial tiles on every level.
BIG = 65_536 + 3 * 256 + 5


def make_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct leaf hashes."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def level_entries(directory: Path, level: int) -> list[bytes]:
    data = (directory / f"level-{level}.bin").read_bytes()
    return [data[i : i + 32] for i in range(0, len(data), 32)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TreeStore]:
    with TreeStore(tmp_path / "tree") as s:
        yield s


@pytest.fixture(scope="module")
def big_leaves() -> list[bytes]:
    return make_leaves(BIG)


@pytest.fixture(scope="module")
def big_store(
    tmp_path_factory: pytest.TempPathFactory, big_leaves: list[bytes]
) -> Iterator[TreeStore]:
    with TreeStore(tmp_path_factory.mktemp("big") / "tree") as s:
        for i in range(0, BIG, 10_000):
            s.append(big_leaves[i : i + 10_000])
        yield s


@pytest.fixture(scope="module")
def big_memory_tree(big_leaves: list[bytes]) -> MemoryTree:
    return MemoryTree(big_leaves)


def filled(directory: Path, leaves: list[bytes]) -> Path:
    with TreeStore(directory) as s:
        s.append(leaves)
    return directory


# --- basics ----------------------------------------------------------------------------


def test_new_store_is_empty(store: TreeStore) -> None:
    assert store.size == 0
    assert store.root() == EMPTY_ROOT


def test_leaf_hashes_read_back_as_appended(store: TreeStore) -> None:
    leaves = make_leaves(300)
    store.append(leaves)
    assert store.leaf_hashes(0, 300) == leaves
    assert store.leaf_hash(257) == leaves[257]
    assert store.leaf_hashes(5, 5) == []


def test_leaf_hash_beyond_the_tree_is_rejected(store: TreeStore) -> None:
    store.append(make_leaves(3))
    with pytest.raises(IndexError):
        store.leaf_hash(3)


def test_append_rejects_hashes_that_are_not_32_bytes_and_writes_nothing(
    store: TreeStore,
) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        store.append([leaf_hash(b"a"), b"short"])
    assert store.size == 0


def test_appending_nothing_changes_nothing(store: TreeStore) -> None:
    store.append(make_leaves(3))
    root = store.root()
    store.append([])
    assert (store.size, store.root()) == (3, root)


# --- roots -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=8), st.binary(max_size=4))
def test_roots_do_not_depend_on_how_appends_are_batched(
    batch_sizes: list[int], salt: bytes
) -> None:
    leaves = make_leaves(sum(batch_sizes), salt)
    with tempfile.TemporaryDirectory() as d, TreeStore(Path(d)) as s:
        start = 0
        for n in batch_sizes:
            s.append(leaves[start : start + n])
            start += n
            assert s.root() == root_from_leaf_hashes(leaves[:start])


def test_every_historical_root_is_available(store: TreeStore) -> None:
    leaves = make_leaves(600)
    store.append(leaves)
    for size in range(601):
        assert store.root(size) == root_from_leaf_hashes(leaves[:size])


def test_historical_roots_across_all_levels(big_store: TreeStore, big_leaves: list[bytes]) -> None:
    for size in (1, 255, 256, 257, 65_535, 65_536, 65_537, 65_536 + 256, BIG - 1, BIG):
        assert big_store.root(size) == root_from_leaf_hashes(big_leaves[:size])


def test_root_of_a_size_beyond_the_tree_is_rejected(store: TreeStore) -> None:
    store.append(make_leaves(3))
    with pytest.raises(ValueError):
        store.root(4)


# --- level files -----------------------------------------------------------------------


def test_level_files_hold_the_hashes_of_complete_tiles(
    big_store: TreeStore, big_leaves: list[bytes]
) -> None:
    directory = big_store.directory
    level1 = level_entries(directory, 1)
    assert len(level_entries(directory, 0)) == BIG
    assert len(level1) == BIG // 256
    assert all(
        h == root_from_leaf_hashes(big_leaves[256 * i : 256 * (i + 1)])
        for i, h in enumerate(level1)
    )
    assert level_entries(directory, 2) == [root_from_leaf_hashes(big_leaves[:65_536])]


def test_append_writes_each_level_once_per_call(
    store: TreeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd: int, data: bytes, offset: int) -> int:
        writes.append(fd)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(tiles.os, "pwrite", counting_pwrite)
    store.append(make_leaves(BIG))
    assert len(writes) == 3  # level 0, level 1, level 2


# --- proofs ----------------------------------------------------------------------------


@st.composite
def leaves_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(1, 600))
    return make_leaves(size, draw(st.binary(max_size=4))), draw(st.integers(0, size - 1))


@settings(max_examples=50, deadline=None)
@given(leaves_and_index(), st.data())
def test_inclusion_proofs_equal_the_memory_trees_and_verify(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    size = data.draw(st.integers(index + 1, len(leaves)))
    with tempfile.TemporaryDirectory() as d, TreeStore(Path(d)) as s:
        s.append(leaves)
        proof = s.inclusion_proof(index, size)
        assert proof == inclusion_proof(MemoryTree(leaves), index, size)
        verify_inclusion(leaves[index], index, size, proof, s.root(size))


@settings(max_examples=50, deadline=None)
@given(leaves_and_index(), st.data())
def test_consistency_proofs_equal_the_memory_trees_and_verify(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    old = index + 1
    new = data.draw(st.integers(old, len(leaves)))
    with tempfile.TemporaryDirectory() as d, TreeStore(Path(d)) as s:
        s.append(leaves)
        proof = s.consistency_proof(old, new)
        assert proof == consistency_proof(MemoryTree(leaves), old, new)
        verify_consistency(old, new, s.root(old), s.root(new), proof)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_subtree_hash_of_any_range_equals_the_memory_trees(data: st.DataObject) -> None:
    leaves = make_leaves(data.draw(st.integers(1, 600)))
    start = data.draw(st.integers(0, len(leaves) - 1))
    end = data.draw(st.integers(start + 1, len(leaves)))
    with tempfile.TemporaryDirectory() as d, TreeStore(Path(d)) as s:
        s.append(leaves)
        assert s.subtree_hash(start, end) == MemoryTree(leaves).subtree_hash(start, end)


@pytest.mark.parametrize("index", [0, 255, 256, 65_535, 65_536, BIG - 1])
def test_inclusion_proofs_across_all_levels(
    big_store: TreeStore, big_memory_tree: MemoryTree, big_leaves: list[bytes], index: int
) -> None:
    proof = big_store.inclusion_proof(index, BIG)
    assert proof == inclusion_proof(big_memory_tree, index, BIG)
    verify_inclusion(big_leaves[index], index, BIG, proof, big_store.root())


@pytest.mark.parametrize("old", [1, 256, 300, 65_536, 65_537, BIG - 1])
def test_consistency_proofs_across_all_levels(
    big_store: TreeStore, big_memory_tree: MemoryTree, old: int
) -> None:
    proof = big_store.consistency_proof(old, BIG)
    assert proof == consistency_proof(big_memory_tree, old, BIG)
    verify_consistency(old, BIG, big_store.root(old), big_store.root(), proof)


def test_proofs_for_a_size_beyond_the_tree_are_rejected(store: TreeStore) -> None:
    store.append(make_leaves(3))
    with pytest.raises(ValueError):
        store.inclusion_proof(0, 4)
    with pytest.raises(ValueError):
        store.consistency_proof(1, 4)


# --- persistence and crash repair --------------------------------------------------------


def test_reopening_keeps_leaves_and_roots(tmp_path: Path) -> None:
    leaves = make_leaves(700)
    filled(tmp_path, leaves[:500])
    with TreeStore(tmp_path) as s:
        assert s.size == 500
        assert s.root() == root_from_leaf_hashes(leaves[:500])
        s.append(leaves[500:])
        s.sync()
    with TreeStore(tmp_path) as s:
        assert s.root() == root_from_leaf_hashes(leaves)
        assert s.root(300) == root_from_leaf_hashes(leaves[:300])


def test_reopen_drops_a_torn_trailing_hash(tmp_path: Path) -> None:
    leaves = make_leaves(600)
    filled(tmp_path, leaves)
    for level in (0, 1):
        with (tmp_path / f"level-{level}.bin").open("ab") as f:
            f.write(b"\xff" * 7)
    with TreeStore(tmp_path) as s:
        assert s.size == 600
        assert s.root() == root_from_leaf_hashes(leaves)
    assert len(level_entries(tmp_path, 1)) == 2


def test_reopen_drops_extra_upper_level_hashes(tmp_path: Path) -> None:
    leaves = make_leaves(600)
    filled(tmp_path, leaves)
    with (tmp_path / "level-1.bin").open("ab") as f:
        f.write(b"\xaa" * 64)
    with TreeStore(tmp_path) as s:
        assert s.root() == root_from_leaf_hashes(leaves)
    assert len(level_entries(tmp_path, 1)) == 2


def test_reopen_rebuilds_a_truncated_upper_level(tmp_path: Path) -> None:
    leaves = make_leaves(BIG)
    filled(tmp_path, leaves)
    want = {level: level_entries(tmp_path, level) for level in (1, 2)}
    os.truncate(tmp_path / "level-1.bin", 3 * 32)
    (tmp_path / "level-2.bin").unlink()
    with TreeStore(tmp_path) as s:
        assert s.root() == root_from_leaf_hashes(leaves)
        assert s.root(65_600) == root_from_leaf_hashes(leaves[:65_600])
    assert {level: level_entries(tmp_path, level) for level in (1, 2)} == want


def test_reopen_completes_an_append_cut_short_after_the_leaf_write(tmp_path: Path) -> None:
    leaves = make_leaves(1000)
    filled(tmp_path, leaves[:100])
    with (tmp_path / "level-0.bin").open("ab") as f:  # the crash left level 1 behind
        f.write(b"".join(leaves[100:]))
    with TreeStore(tmp_path) as s:
        assert s.size == 1000
        assert s.root() == root_from_leaf_hashes(leaves)
        s.append(make_leaves(24, b"more"))
        assert s.root() == root_from_leaf_hashes(leaves + make_leaves(24, b"more"))
    assert len(level_entries(tmp_path, 1)) == 1024 // 256


def test_reopen_empties_a_stray_level_above_the_tree(tmp_path: Path) -> None:
    leaves = make_leaves(10)
    filled(tmp_path, leaves)
    (tmp_path / "level-3.bin").write_bytes(b"\x01" * 64)
    with TreeStore(tmp_path) as s:
        assert s.root() == root_from_leaf_hashes(leaves)
    assert level_entries(tmp_path, 3) == []


# --- truncation ---------------------------------------------------------------------------


def test_truncate_drops_leaves_and_the_tiles_that_covered_them(tmp_path: Path) -> None:
    leaves = make_leaves(BIG)
    filled(tmp_path, leaves)
    with TreeStore(tmp_path) as s:
        s.truncate(300)
        assert s.size == 300
        assert s.root() == root_from_leaf_hashes(leaves[:300])
    assert [len(level_entries(tmp_path, level)) for level in (0, 1, 2)] == [300, 1, 0]


def test_appending_after_truncate_matches_a_fresh_build(tmp_path: Path) -> None:
    leaves, replacement = make_leaves(1000), make_leaves(500, b"new")
    with TreeStore(tmp_path / "a") as s:
        s.append(leaves)
        s.truncate(555)
        s.append(replacement)
        root = s.root()
    assert root == root_from_leaf_hashes(leaves[:555] + replacement)
    filled(tmp_path / "b", leaves[:555] + replacement)
    for level in (0, 1):
        assert level_entries(tmp_path / "a", level) == level_entries(tmp_path / "b", level)


def test_truncate_to_zero_leaves_the_empty_tree(store: TreeStore) -> None:
    store.append(make_leaves(300))
    store.truncate(0)
    assert (store.size, store.root()) == (0, EMPTY_ROOT)


def test_truncate_cannot_grow_the_tree(store: TreeStore) -> None:
    store.append(make_leaves(3))
    with pytest.raises(ValueError):
        store.truncate(4)
