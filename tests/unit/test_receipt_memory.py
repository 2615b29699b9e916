"""Receipts and proofs stream the tree: the memory a receipt takes to build is bounded
by the hashing window, not by the number of events it certifies."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.receipts import issuance
from ledger.receipts.issuance import Receipts
from ledger.receipts.verification import verify_receipt
from ledger.tlog import merkle
from ledger.tlog.merkle import (
    root_from_leaf_hashes,
    tree_levels_from_buffer,
    tree_levels_from_chunks,
)
from tests.conftest import usage


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 63, 64, 65, 200, 256, 257, 1000])
def test_streamed_tree_equals_the_whole_tree(count: int) -> None:
    """In pieces of any length and chunks of any power of two, the root and the kept
    level's complete entries are those of the tree over all leaves at once."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(count)]
    packed = b"".join(leaves)
    want_root, want_level = tree_levels_from_buffer(packed, keep=3)
    complete = (count >> 3) * 32
    for chunk in (8, 16, 64):
        pieces = [packed[i:i + 96] for i in range(0, len(packed), 96)]  # 3 leaves each
        root, level = tree_levels_from_chunks(pieces, keep=3, chunk_leaves=chunk)
        assert root == want_root == root_from_leaf_hashes(leaves)
        assert level[:complete] == want_level[:complete]


def _peak_of_receipt(tmp_path: Path, events: int, where: dict | None) -> int:
    with Ledger(tmp_path / f"d{events}", pricer=None) as led:
        for start in range(0, events, 5000):
            led.append_many([usage(ts="2025-10-01T12:00:00Z",
                                   metadata={"team": "a" if i % 1000 < 700 else "b"})
                             for i in range(start, min(events, start + 5000))], tenant="t")
        led.flush()
        receipts = Receipts(led)
        tracemalloc.start()
        try:
            if where is None:
                out = receipts.generate("t", since_last_receipt=True)
            else:
                out = receipts.generate("t", start_date="2025-10-01", end_date="2025-10-01",
                                        where=where)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert verify_receipt(out["receipt"], receipts.public_keys()).valid
        bundle_event = led.events("t", limit=1)[0].event_id
        if where is None:
            assert receipts.prove("t", out["receipt"]["receipt_id"], bundle_event)
    return peak


@pytest.mark.parametrize("where", [None, {"team": "a"}], ids=["since-last", "filtered"])
def test_receipt_memory_does_not_grow_with_the_certified_events(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: dict | None) -> None:
    """Ten times the events, with a small hashing window: the traced peak stays within
    twice the smaller one (holding the leaf hashes, as before, grew it ~10×). What may
    grow is the membership: one [lo, hi] run per stretch of consecutive certified seqs
    (here one per 1000 events when filtered)."""
    monkeypatch.setattr(issuance, "LEAF_WINDOW", 512)
    monkeypatch.setattr(merkle, "STREAM_CHUNK", 512)
    small = _peak_of_receipt(tmp_path, 3_000, where)
    large = _peak_of_receipt(tmp_path, 30_000, where)
    assert large < 2 * small, (small, large)
