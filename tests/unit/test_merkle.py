"""RFC 9162 §2.1 hashing, proofs and verification (ledger.tlog.merkle)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.tlog import merkle
from ledger.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    pair_hashes_python,
    parent_hashes_python,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    roots_at_sizes,
    verify_append_only,
    verify_consistency,
    verify_inclusion,
)
from tests.support.paths import VECTORS

TD_MERKLE = VECTORS / "transparency-dev-merkle" / "testdata"


# --- reference definitions, written straight from RFC 9162 §2.1 ----------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 0:
        return sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return node_hash(ref_mth(leaves[:k]), ref_mth(leaves[k:]))


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], complete), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def make_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct leaf hashes."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def flip_bit(h: bytes, bit: int) -> bytes:
    i, b = divmod(bit % (8 * len(h)), 8)
    return h[:i] + bytes([h[i] ^ (1 << b)]) + h[i + 1 :]


# --- strategies ------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=600)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(sizes)
    return make_leaves(size, draw(st.binary(max_size=4))), draw(st.integers(0, size - 1))


@st.composite
def tree_and_old_size(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=2, max_value=600))
    return make_leaves(size, draw(st.binary(max_size=4))), draw(st.integers(1, size - 1))


# --- public test vectors ---------------------------------------------------------------


def _vector_files(kind: str) -> list[Path | None]:
    # A missing vector directory must fail the suite, so it becomes one failing case.
    return sorted((TD_MERKLE / kind).rglob("*.json")) or [None]


def _vector_id(path: Path | None) -> str:
    return "MISSING" if path is None else "/".join(path.parts[-2:])


def _load_vector(path: Path | None) -> dict:
    assert path is not None, f"no test vectors under {TD_MERKLE}"
    return json.loads(path.read_text())


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_every_transparency_dev_vector_file_is_present() -> None:
    assert len(_vector_files("inclusion")) == 98
    assert len(_vector_files("consistency")) == 98


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_vector_id)
def test_transparency_dev_inclusion_vector(path: Path | None) -> None:
    v = _load_vector(path)
    proof = [_b64(p) for p in v["proof"] or []]
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], proof, _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=_vector_id)
def test_transparency_dev_consistency_vector(path: Path | None) -> None:
    v = _load_vector(path)
    proof = [_b64(p) for p in v["proof"] or []]
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), proof)
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_rfc6962_reference_tree_roots_for_sizes_0_to_8() -> None:
    ref = json.loads((VECTORS / "rfc6962-reference-tree.json").read_text())
    leaves = [leaf_hash(bytes.fromhex(d)) for d in ref["leaf_inputs_hex"]]
    assert [h.hex() for h in leaves] == ref["leaf_hashes_hex"]
    roots = {int(n): bytes.fromhex(r) for n, r in ref["root_hashes_by_tree_size_hex"].items()}
    assert sorted(roots) == list(range(9))
    for n, want in roots.items():
        assert root_from_leaf_hashes(leaves[:n]) == want
        assert MemoryTree(leaves[:n]).root() == want


def test_rekor_v2_inclusion_proof_verifies() -> None:
    v = json.loads((VECTORS / "sigstore-rekor-v2" / "rekor2-checkpoint-cosigned.json").read_text())
    leaf = leaf_hash(_b64(v["leaf_data_b64"]))
    assert leaf.hex() == v["leaf_hash_hex"]
    path = [_b64(p) for p in v["inclusion_path_b64"]]
    verify_inclusion(leaf, v["leaf_index"], v["tree_size"], path, _b64(v["root_hash_b64"]))


# --- hashing ----------------------------------------------------------------------------


def test_leaf_hash_is_sha256_of_0x00_and_data() -> None:
    assert leaf_hash(b"abc") == sha256(b"\x00abc").digest()


def test_node_hash_is_sha256_of_0x01_left_right() -> None:
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == sha256(b"\x01" + left + right).digest()


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert sha256(b"").digest() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MemoryTree([]).root() == EMPTY_ROOT
    assert HASH_SIZE == 32


def test_single_leaf_root_is_its_leaf_hash() -> None:
    assert root_from_leaf_hashes([leaf_hash(b"x")]) == leaf_hash(b"x")


@given(sizes, st.binary(max_size=4))
def test_root_splits_at_the_largest_power_of_two_below_the_size(size: int, salt: bytes) -> None:
    leaves = make_leaves(size, salt)
    assert root_from_leaf_hashes(leaves) == ref_mth(leaves)
    assert MemoryTree(leaves).root() == ref_mth(leaves)


@given(st.lists(st.binary(min_size=0, max_size=40), max_size=9))
def test_the_c_parent_hashes_equal_the_python_ones(level: list[bytes]) -> None:
    if merkle._native is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    assert merkle._native.parent_hashes(level) == parent_hashes_python(level)
    assert merkle._native.parent_hashes([bytearray(h) for h in level[:2]]) == (
        parent_hashes_python(level[:2]))
    with pytest.raises(TypeError):
        merkle._native.parent_hashes([1, 2])


@given(st.integers(min_value=0, max_value=40), st.binary(max_size=4))
def test_the_c_pair_hashes_equal_the_python_ones(pairs: int, salt: bytes) -> None:
    """Over a packed level: the node hash of each adjacent pair, as parent_hashes has it."""
    if merkle._native is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    level = make_leaves(2 * pairs, salt)
    packed = b"".join(level)
    assert merkle._native.pair_hashes(packed) == pair_hashes_python(packed) == b"".join(
        parent_hashes_python(level))
    assert merkle._native.pair_hashes(memoryview(packed)[64:]) == pair_hashes_python(
        packed[64:])
    with pytest.raises(ValueError, match="multiple of 64"):
        merkle._native.pair_hashes(packed + b"x")


def test_root_rejects_hashes_that_are_not_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        root_from_leaf_hashes([leaf_hash(b"a"), b"short"])


@given(sizes, st.data())
def test_memory_tree_hashes_any_range_like_the_rfc(size: int, data: st.DataObject) -> None:
    leaves = make_leaves(size)
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start + 1, size))
    assert MemoryTree(leaves).subtree_hash(start, end) == ref_mth(leaves[start:end])


# --- proof generation -------------------------------------------------------------------


@given(tree_and_index())
def test_inclusion_proof_is_the_rfc_path(case: tuple[list[bytes], int]) -> None:
    leaves, index = case
    assert inclusion_proof(MemoryTree(leaves), index, len(leaves)) == ref_path(index, leaves)


@given(tree_and_old_size())
def test_consistency_proof_is_the_rfc_subproof(case: tuple[list[bytes], int]) -> None:
    leaves, old = case
    got = consistency_proof(MemoryTree(leaves), old, len(leaves))
    assert got == ref_subproof(old, leaves, True)


@given(tree_and_index())
def test_inclusion_proof_for_an_older_size_uses_only_that_prefix(
    case: tuple[list[bytes], int],
) -> None:
    leaves, index = case
    size = index + 1 + (len(leaves) - index - 1) // 2
    assert inclusion_proof(MemoryTree(leaves), index, size) == ref_path(index, leaves[:size])


def test_consistency_proof_between_equal_sizes_is_empty() -> None:
    assert consistency_proof(MemoryTree(make_leaves(5)), 5, 5) == []


def test_consistency_proof_from_the_empty_tree_is_empty() -> None:
    assert consistency_proof(MemoryTree(make_leaves(5)), 0, 5) == []


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0)])
def test_inclusion_proof_rejects_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_proof(MemoryTree(make_leaves(4)), index, size)


@pytest.mark.parametrize(("old", "new"), [(3, 2), (-1, 2)])
def test_consistency_proof_rejects_shrinking_sizes(old: int, new: int) -> None:
    with pytest.raises(ValueError):
        consistency_proof(MemoryTree(make_leaves(4)), old, new)


# --- inclusion verification ---------------------------------------------------------------


@given(tree_and_index())
def test_generated_inclusion_proofs_verify(case: tuple[list[bytes], int]) -> None:
    leaves, index = case
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, index, tree.size)
    verify_inclusion(leaves[index], index, tree.size, proof, tree.root())
    assert root_from_inclusion_proof(leaves[index], index, tree.size, proof) == tree.root()


@given(tree_and_index(), st.data())
def test_inclusion_fails_after_any_bit_flip_in_the_proof(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, index, tree.size)
    if not proof:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    proof[i] = flip_bit(proof[i], data.draw(st.integers(0, 255)))
    with pytest.raises(ProofError, match="expected root"):
        verify_inclusion(leaves[index], index, tree.size, proof, tree.root())


@given(tree_and_index(), st.data())
def test_inclusion_fails_for_another_index(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    tree = MemoryTree(leaves)
    other = data.draw(st.integers(0, tree.size).filter(lambda i: i != index))
    proof = inclusion_proof(tree, index, tree.size)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], other, tree.size, proof, tree.root())


@given(tree_and_index(), st.data())
def test_inclusion_fails_against_another_sizes_root(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    # A proof does not carry its tree size; what binds it is the root signed with that size.
    leaves, index = case
    tree = MemoryTree(leaves)
    size = data.draw(st.integers(index + 1, tree.size))
    other = data.draw(st.integers(index + 1, tree.size).filter(lambda s: s != size))
    proof = inclusion_proof(tree, index, size)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, other, proof, tree.subtree_hash(0, other))


def test_inclusion_proof_alone_does_not_fix_the_tree_size() -> None:
    # Why the test above pairs the wrong size with its own root: leaf 0 of a 3-leaf tree
    # and of a 4-leaf tree have the same path shape, so only the roots tell them apart.
    leaves = make_leaves(4)
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, 0, 3)
    verify_inclusion(leaves[0], 0, 4, proof, tree.subtree_hash(0, 3))
    with pytest.raises(ProofError):
        verify_inclusion(leaves[0], 0, 4, proof, tree.root())


@given(tree_and_index())
def test_inclusion_fails_with_a_truncated_proof(case: tuple[list[bytes], int]) -> None:
    leaves, index = case
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, index, tree.size)
    if not proof:
        return
    with pytest.raises(ProofError, match="too short"):
        verify_inclusion(leaves[index], index, tree.size, proof[:-1], tree.root())


@given(tree_and_index(), st.binary(min_size=32, max_size=32))
def test_inclusion_fails_with_an_extended_proof(
    case: tuple[list[bytes], int], extra: bytes
) -> None:
    leaves, index = case
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, index, tree.size)
    with pytest.raises(ProofError, match="too long"):
        verify_inclusion(leaves[index], index, tree.size, [*proof, extra], tree.root())


@given(tree_and_index(), st.integers(0, 255))
def test_inclusion_fails_against_a_wrong_root(case: tuple[list[bytes], int], bit: int) -> None:
    leaves, index = case
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, index, tree.size)
    with pytest.raises(ProofError, match="expected root"):
        verify_inclusion(leaves[index], index, tree.size, proof, flip_bit(tree.root(), bit))


def test_inclusion_rejects_an_index_at_or_beyond_the_size() -> None:
    leaves = make_leaves(4)
    with pytest.raises(ProofError, match="not in a tree of size 4"):
        verify_inclusion(leaves[0], 4, 4, [], root_from_leaf_hashes(leaves))


def test_inclusion_rejects_a_leaf_hash_that_is_not_32_bytes() -> None:
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(b"x" * 31, 0, 1, [], leaf_hash(b"x"))


def test_inclusion_rejects_a_proof_element_that_is_not_32_bytes() -> None:
    leaves = make_leaves(2)
    with pytest.raises(ProofError, match="proof element 0 is 33 bytes"):
        verify_inclusion(leaves[0], 0, 2, [leaves[1] + b"\x00"], root_from_leaf_hashes(leaves))


def test_inclusion_rejects_a_root_that_is_not_32_bytes() -> None:
    with pytest.raises(ProofError, match="root is 0 bytes"):
        verify_inclusion(leaf_hash(b""), 0, 1, [], b"")


# --- consistency verification -----------------------------------------------------------


@given(tree_and_old_size())
def test_generated_consistency_proofs_verify(case: tuple[list[bytes], int]) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = consistency_proof(tree, old, tree.size)
    verify_consistency(old, tree.size, tree.subtree_hash(0, old), tree.root(), proof)


@given(tree_and_old_size(), st.data())
def test_consistency_fails_after_any_bit_flip_in_the_proof(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = consistency_proof(tree, old, tree.size)
    i = data.draw(st.integers(0, len(proof) - 1))
    proof[i] = flip_bit(proof[i], data.draw(st.integers(0, 255)))
    with pytest.raises(ProofError, match=r"lead to the (old|new) root"):
        verify_consistency(old, tree.size, tree.subtree_hash(0, old), tree.root(), proof)


@given(tree_and_old_size(), st.data())
def test_consistency_fails_for_another_old_size(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = consistency_proof(tree, old, tree.size)
    other = data.draw(st.integers(1, tree.size - 1).filter(lambda s: s != old))
    with pytest.raises(ProofError):
        verify_consistency(other, tree.size, tree.subtree_hash(0, other), tree.root(), proof)


@given(tree_and_old_size(), st.data())
def test_consistency_fails_for_another_new_size(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    new = data.draw(st.integers(old + 1, tree.size))
    other = data.draw(st.integers(old + 1, tree.size).filter(lambda s: s != new))
    proof = consistency_proof(tree, old, new)
    old_root = tree.subtree_hash(0, old)
    with pytest.raises(ProofError):
        verify_consistency(old, other, old_root, tree.subtree_hash(0, other), proof)


@given(tree_and_old_size())
def test_consistency_fails_with_a_truncated_proof(case: tuple[list[bytes], int]) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = consistency_proof(tree, old, tree.size)
    with pytest.raises(ProofError, match=r"too short|proof is empty"):
        verify_consistency(old, tree.size, tree.subtree_hash(0, old), tree.root(), proof[:-1])


@given(tree_and_old_size(), st.binary(min_size=32, max_size=32))
def test_consistency_fails_with_an_extended_proof(
    case: tuple[list[bytes], int], extra: bytes
) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = [*consistency_proof(tree, old, tree.size), extra]
    with pytest.raises(ProofError, match="too long"):
        verify_consistency(old, tree.size, tree.subtree_hash(0, old), tree.root(), proof)


@given(tree_and_old_size(), st.integers(0, 255), st.booleans())
def test_consistency_fails_against_a_wrong_root(
    case: tuple[list[bytes], int], bit: int, flip_old: bool
) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = consistency_proof(tree, old, tree.size)
    old_root, new_root = tree.subtree_hash(0, old), tree.root()
    if flip_old:
        old_root = flip_bit(old_root, bit)
    else:
        new_root = flip_bit(new_root, bit)
    with pytest.raises(ProofError, match=r"lead to the (old|new) root"):
        verify_consistency(old, tree.size, old_root, new_root, proof)


def test_consistency_between_equal_sizes_needs_equal_roots_and_no_proof() -> None:
    root = root_from_leaf_hashes(make_leaves(3))
    verify_consistency(3, 3, root, root, [])
    with pytest.raises(ProofError, match="roots differ"):
        verify_consistency(3, 3, root, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="proof has 1 elements"):
        verify_consistency(3, 3, root, root, [root])


def test_consistency_rejects_an_old_size_larger_than_the_new() -> None:
    with pytest.raises(ProofError, match="larger than new size"):
        verify_consistency(3, 2, EMPTY_ROOT, EMPTY_ROOT, [])


def test_strict_consistency_rejects_the_empty_old_tree() -> None:
    new_root = root_from_leaf_hashes(make_leaves(3))
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 3, EMPTY_ROOT, new_root, [])


def test_consistency_rejects_an_empty_proof_between_different_sizes() -> None:
    leaves = make_leaves(3)
    with pytest.raises(ProofError, match="proof is empty"):
        verify_consistency(
            2, 3, root_from_leaf_hashes(leaves[:2]), root_from_leaf_hashes(leaves), []
        )


def test_consistency_rejects_a_proof_element_that_is_not_32_bytes() -> None:
    leaves = make_leaves(3)
    old, new = root_from_leaf_hashes(leaves[:2]), root_from_leaf_hashes(leaves)
    with pytest.raises(ProofError, match="proof element 0 is 31 bytes"):
        verify_consistency(2, 3, old, new, [leaves[2][:31]])


def test_consistency_rejects_roots_that_are_not_32_bytes() -> None:
    leaves = make_leaves(3)
    old, new = root_from_leaf_hashes(leaves[:2]), root_from_leaf_hashes(leaves)
    with pytest.raises(ProofError, match="old root is 3 bytes"):
        verify_consistency(2, 3, b"old", new, [leaves[2]])
    with pytest.raises(ProofError, match="new root is 3 bytes"):
        verify_consistency(2, 3, old, b"new", [leaves[2]])


# --- append-only verification (C2SP tlog-witness) -----------------------------------------


def test_append_only_accepts_growth_from_the_empty_tree_with_an_empty_proof() -> None:
    verify_append_only(0, 3, EMPTY_ROOT, root_from_leaf_hashes(make_leaves(3)), [])
    verify_append_only(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])


def test_append_only_from_the_empty_tree_rejects_a_proof() -> None:
    with pytest.raises(ProofError, match="proof has 1 elements"):
        verify_append_only(0, 1, EMPTY_ROOT, leaf_hash(b""), [EMPTY_ROOT])


def test_append_only_from_the_empty_tree_needs_the_empty_root() -> None:
    with pytest.raises(ProofError, match="empty-tree root"):
        verify_append_only(0, 1, leaf_hash(b""), leaf_hash(b""), [])


def test_append_only_to_the_empty_tree_needs_the_empty_root() -> None:
    with pytest.raises(ProofError, match="new size is 0"):
        verify_append_only(0, 0, EMPTY_ROOT, leaf_hash(b""), [])


def test_append_only_from_the_empty_tree_needs_a_32_byte_new_root() -> None:
    with pytest.raises(ProofError, match="new root is 12 bytes"):
        verify_append_only(0, 1, EMPTY_ROOT, b"don't care 2", [])


@settings(max_examples=25)
@given(tree_and_old_size())
def test_append_only_delegates_to_strict_consistency(case: tuple[list[bytes], int]) -> None:
    leaves, old = case
    tree = MemoryTree(leaves)
    proof = consistency_proof(tree, old, tree.size)
    verify_append_only(old, tree.size, tree.subtree_hash(0, old), tree.root(), proof)
    with pytest.raises(ProofError):
        verify_append_only(old, tree.size, tree.subtree_hash(0, old), tree.root(), proof[1:])


@given(n=st.integers(min_value=0, max_value=300), data=st.data())
def test_roots_at_sizes_equal_the_reference_root_of_each_prefix(n: int, data) -> None:
    leaves = [sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    sizes = data.draw(st.lists(st.integers(min_value=0, max_value=n), max_size=8))
    got = roots_at_sizes(leaves, sizes)
    assert got == {s: ref_mth(leaves[:s]) for s in sizes}


def test_roots_at_sizes_rejects_a_size_beyond_the_leaves() -> None:
    with pytest.raises(ValueError):
        roots_at_sizes([sha256(b"x").digest()], [2])
