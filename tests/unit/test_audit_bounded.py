"""A full verify in bounded memory finds exactly what sorting the whole log in memory
found: the streamed roots, frontier and tile hashes equal the in-memory ones at every
size and block boundary; the spilled log comes back in seq order whatever order its
segments and receipt entries arrived in (and in stable seq order when seqs repeat);
damage to the tree files at a block boundary, an event id recorded in two segments, and
seqs repeated or out of order within a segment are reported as before."""

from __future__ import annotations

import random
from hashlib import sha256
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.core import audit, audit_log
from ledger.core.audit import AuditReport, verify_directory
from ledger.core.audit_log import Gathered
from ledger.tlog.merkle import perfect_subtrees, root_from_leaf_hashes, roots_at_sizes
from ledger.tlog.stream import LeafStream
from tests.conftest import usage
from tests.support.tamper import rewrite_segment


def _leaves(n: int, seed: int = 0) -> list[bytes]:
    return [sha256(f"{seed}/{i}".encode()).digest() for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 700), block_height=st.integers(0, 6), every=st.integers(1, 4),
       data=st.data())
def test_streamed_roots_frontier_and_tiles_equal_the_in_memory_tree(
        n: int, block_height: int, every: int, data: st.DataObject) -> None:
    """Any number of leaves (powers of two or not), fed in pieces of any length, with
    blocks of any power of two: the roots at chosen sizes equal ``roots_at_sizes``
    (every size at or next to a block boundary included), the frontier is the log's
    perfect subtrees, and every complete aligned subtree of a height that is a multiple
    of ``every`` is reported once, in order."""
    block = 1 << block_height
    leaves = _leaves(n, seed=n)
    near_boundaries = {s for b in range(0, n + block, block) for s in (b - 1, b, b + 1)
                       if 0 <= s <= n}
    sizes = near_boundaries | set(data.draw(st.lists(st.integers(0, n), max_size=10)))
    stream = LeafStream(sizes, every=every, block_leaves=block)
    packed, at, nodes = b"".join(leaves), 0, []
    while at < len(packed):
        step = 32 * data.draw(st.integers(1, 3 * block + 1))
        nodes += stream.feed(packed[at:at + step])
        at += step
    more, frontier = stream.finish()
    nodes += more
    assert stream.roots == roots_at_sizes(leaves, sizes)
    assert frontier == [((e - s).bit_length() - 1, root_from_leaf_hashes(leaves[s:e]))
                        for s, e in perfect_subtrees(0, n)]
    got: dict[int, list[tuple[int, bytes]]] = {}
    for height, first, hashes in nodes:
        got.setdefault(height, []).extend(
            (first + i, hashes[32 * i:32 * i + 32]) for i in range(len(hashes) // 32))
    for height in range(every, 11, every):
        assert got.pop(height, []) == [
            (i, root_from_leaf_hashes(leaves[i << height:(i + 1) << height]))
            for i in range(n >> height)]
    assert not got


def test_a_size_beyond_the_fed_leaves_is_refused() -> None:
    stream = LeafStream({3})
    stream.feed(b"".join(_leaves(2)))
    with pytest.raises(ValueError):
        stream.finish()


def _reference_order(chunks: list[tuple[np.ndarray, list[bytes]]]
                     ) -> tuple[np.ndarray, bytes]:
    """Sorting everything in memory (what the audit did before): all seqs, stably."""
    seqs = pa.chunked_array([pa.array(s, pa.int64()) for s, _ in chunks], pa.int64())
    order = pc.sort_indices(seqs).to_numpy()
    hashes = [h for _, hs in chunks for h in hs]
    return seqs.to_numpy()[order], b"".join(hashes[i] for i in order)


@pytest.mark.parametrize("window", [256, 1000, 1 << 24])
@pytest.mark.parametrize("case", ["shuffled", "interleaved", "repeats", "gap", "not-from-0"])
def test_the_spilled_log_comes_back_in_seq_order(case: str, window: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks in any arrival order (events in shuffled segments and rows, receipt
    entries whose seqs fall between them) come back in seq order, seq i at position i,
    put there in windows of any size; with seqs repeated, missing or not from 0, in the
    stable order sorting everything gives, with the sorted seqs."""
    monkeypatch.setattr(audit_log, "SCATTER_LEAVES", window)
    monkeypatch.setattr(audit_log, "READ_LEAVES", 100)
    rng = random.Random(case)
    n = 3000
    seqs = np.arange(n, dtype=np.int64)
    if case == "repeats":
        seqs[1500] = seqs[1499]
        seqs[10] = 2999
    elif case == "gap":
        seqs[2000:] += 7
    elif case == "not-from-0":
        seqs += 5
    hashes = _leaves(n)
    receipts = set(rng.sample(range(n), 40)) if case == "interleaved" else set()
    events = [i for i in range(n) if i not in receipts]
    cuts = sorted(rng.sample(range(1, len(events)), 9))
    parts = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    if case != "interleaved":
        rng.shuffle(parts)
        rng.shuffle(parts[0])  # one segment's rows out of seq order
    parts.append(sorted(receipts))
    chunks = [(seqs[p], [hashes[i] for i in p]) for p in parts if p]
    gathered = Gathered()
    try:
        log = gathered.log("acme")
        for s, hs in chunks:
            log.add(pa.array(s, pa.int64()), pa.array(hs, pa.binary(32)))
        ordered = log.ordered()
        want_seqs, want_leaves = _reference_order(chunks)
        assert ordered.n == n
        assert ordered.leaves.read(0, n) == want_leaves
        assert b"".join(ordered.leaves.gather(np.arange(0, n, 7))) == b"".join(
            want_leaves[32 * i:32 * i + 32] for i in range(0, n, 7))
        if case in ("shuffled", "interleaved"):
            assert ordered.seqs is None
            assert list(ordered.positions(np.array([0, 5, n - 1]))) == [0, 5, n - 1]
            assert ordered.positions(np.array([n])) is None
        else:
            assert list(ordered.seqs) == list(want_seqs)
    finally:
        gathered.close()


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    """acme: 600 events in three sealed segments (two full tiles of level 1)."""
    path = tmp_path / "data"
    with Ledger(path, pricer=None) as led:
        for batch in range(3):
            led.append_many([usage(event_id=f"e{batch}-{i}", input_tokens=100 + i,
                                   ts="2025-10-01T12:00:00Z") for i in range(200)],
                            tenant="acme")
            led.flush()
    return path


def _text(report: AuditReport) -> str:
    return "\n".join(str(p) for p in report.problems)


def _segments(path: Path) -> list[Path]:
    """acme's event segments in seq order."""
    return sorted((path / "events" / "tenant=acme").rglob("*.parquet"),
                  key=lambda p: pq.read_table(p, columns=["seq"])["seq"][0].as_py())


def _set(table: pa.Table, name: str, values: list) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, pa.array(values, table.schema.field(i).type))


@pytest.mark.parametrize("block", [64, 128, 1 << 16])
@pytest.mark.parametrize("leaf", [127, 128, 255, 256, 599])
def test_a_stored_leaf_hash_damaged_at_a_block_boundary_is_found(
        sealed: Path, monkeypatch: pytest.MonkeyPatch, block: int, leaf: int) -> None:
    """The log is read and compared in blocks; a damaged leaf of the tree at either
    side of a block boundary is found, at its index."""
    monkeypatch.setattr(audit, "BLOCK_LEAVES", block)
    level0 = sealed / "projects" / "acme" / "tree" / "level-0.bin"
    data = bytearray(level0.read_bytes())
    data[32 * leaf + 31] ^= 1
    level0.write_bytes(bytes(data))
    report = verify_directory(sealed)
    assert [(p.kind, p.where) for p in report.problems] == [
        ("tree", f"project acme tree leaf {leaf}")], _text(report)


@pytest.mark.parametrize("block", [64, 256, 1 << 16])
@pytest.mark.parametrize("tile", [0, 1])
def test_a_stored_tile_hash_damaged_at_a_block_boundary_is_found(
        sealed: Path, monkeypatch: pytest.MonkeyPatch, block: int, tile: int) -> None:
    monkeypatch.setattr(audit, "BLOCK_LEAVES", block)
    level1 = sealed / "projects" / "acme" / "tree" / "level-1.bin"
    data = bytearray(level1.read_bytes())
    assert len(data) == 64  # 600 leaves: two full tiles
    data[32 * tile] ^= 1
    level1.write_bytes(bytes(data))
    report = verify_directory(sealed)
    assert [(p.kind, p.where) for p in report.problems] == [
        ("tree", f"project acme tree level 1 tile hash {tile}")], _text(report)


def test_a_tree_longer_than_the_log_is_reported(sealed: Path) -> None:
    level0 = sealed / "projects" / "acme" / "tree" / "level-0.bin"
    level0.write_bytes(level0.read_bytes() + sha256(b"extra").digest())
    report = verify_directory(sealed)
    assert [p.message for p in report.problems] == [
        "the tree holds 601 leaves but the log has 600 events"]


def test_an_event_id_recorded_in_two_segments_is_reported_in_order_of_appearance(
        sealed: Path) -> None:
    """Event ids repeated across segments are found (by DuckDB over the spilled ids),
    named in the order they first appear."""
    third = _segments(sealed)[2]
    table = pq.read_table(third)
    ids = table.column("event_id").to_pylist()
    ids[5], ids[190] = "e0-7", "e0-3"
    rewrite_segment(sealed, third, _set(table, "event_id", ids))
    report = verify_directory(sealed)
    dup = [p for p in report.problems if p.kind == "event-id-duplicate"]
    assert [(p.where, p.message) for p in dup] == [
        ("project acme", "event ids recorded twice: ['e0-3', 'e0-7']")], _text(report)


@pytest.mark.parametrize("jobs", [1, 2])
def test_rows_out_of_seq_order_within_a_segment_verify_unchanged(sealed: Path,
                                                                 jobs: int) -> None:
    """A segment whose rows are not in seq order is still the same log: nothing to
    report, the same root (the leaves are read back in seq order)."""
    before = verify_directory(sealed)
    segment = _segments(sealed)[1]
    table = pq.read_table(segment)
    order = list(range(table.num_rows))
    random.Random(3).shuffle(order)
    rewrite_segment(sealed, segment, table.take(order))
    after = verify_directory(sealed, jobs=jobs)
    assert after.ok, _text(after)
    assert after.tenants == before.tenants
    assert after.frontiers == before.frontiers


def test_a_repeated_seq_is_reported_with_the_gap_it_leaves(sealed: Path) -> None:
    """A seq rewritten to its neighbour's: the repeat and the gap it leaves, named."""
    segment = _segments(sealed)[1]
    table = pq.read_table(segment)
    seqs = table.column("seq").to_pylist()
    seqs[seqs.index(250)] = 249
    rewrite_segment(sealed, segment, _set(table, "seq", seqs))
    report = verify_directory(sealed)
    found = {(p.kind, p.message) for p in report.problems if p.kind.startswith("seq")}
    assert found == {
        ("seq-duplicate", "seq 249 appears more than once (1 repeats)"),
        ("seq-gap", "the log has a gap after seq 249: seqs up to 251 are missing (events "
                    "deleted or a segment removed)")}, _text(report)


@pytest.mark.parametrize("runs", [
    [[0, 99]], [[10, 19], [40, 40], [3, 5]], [[0, 299]], [[5, 9], [7, 12]], [[-2, 3]],
    [[250, 320]], [[0, 9], [150, 150]], [], [[20, 29], [30, 30]]],
    ids=["whole", "unsorted", "all", "overlapping", "negative", "beyond", "a-receipt",
         "empty", "adjacent"])
@pytest.mark.parametrize("claimed", ["right", "wrong"])
def test_receipts_checked_run_by_run_find_what_expanding_every_seq_finds(
        tmp_path: Path, runs: list[list[int]], claimed: str) -> None:
    """A receipt's membership is checked on its runs (the certified leaf hashes read run
    by run, never one seq per certified event in memory) with the same findings as
    expanding every seq: certified count, entries that are not older events, seqs
    missing from the log, the Merkle root."""
    from ledger.core.audit_log import OrderedLog
    from ledger.storage.layout import DataDir
    from ledger.storage.receipt_entries import seqs_of
    from ledger.tlog.merkle import tree_levels_from_buffer

    n = 300
    leaves = _leaves(n)
    members = (sorted(seqs_of(np.array(runs, np.int64))) if runs and all(
        b >= a >= 0 for a, b in runs) else [])
    certified = b"".join(leaves[m] for m in members if m < n)
    receipt = {"receipt_id": "r1", "certified_count": len(members) + (claimed == "wrong"),
               "merkle_root": tree_levels_from_buffer(certified)[0].hex()}
    gathered = Gathered()
    try:
        log = gathered.log("acme")
        log.add(pa.array(range(n), pa.int64()), pa.array(leaves, pa.binary(32)))
        ordered = log.ordered()
        found = []
        for seqs in (None, np.arange(n, dtype=np.int64)):  # by runs, then every seq
            tenant_log = audit._TenantLog(
                receipts=[(400, orjson.dumps(receipt), "r"), (150, b"{}", "other")],
                members={400: [np.array(runs, np.int64).reshape(-1, 2)]})
            report = AuditReport()
            audit._check_receipts(DataDir(tmp_path), "acme", tenant_log,
                                  OrderedLog(n, ordered.leaves, seqs), report)
            found.append([(p.kind, p.message) for p in report.problems
                          if "r1" in p.message])
        assert found[0] == found[1]
        if claimed == "wrong":
            assert found[0], "a wrong certified_count is found"
    finally:
        gathered.close()
