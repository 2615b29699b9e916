"""Tiered compaction: after seals, segments of one size tier merge COMPACT_MIN_FILES at a
time, so each row is rewritten O(log n) times over the life of the log."""

from __future__ import annotations

import math
from pathlib import Path

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.core.sealer import COMPACT_MIN_FILES, size_tier
from tests.conftest import usage


def test_size_tiers_are_powers_of_the_merge_width() -> None:
    f = COMPACT_MIN_FILES
    assert [size_tier(r) for r in (1, f - 1, f, f * f - 1, f * f, f ** 3)] == [0, 0, 1, 1, 2, 3]


def test_each_row_is_rewritten_a_logarithmic_number_of_times(tmp_path: Path) -> None:
    """Many small seals into one (project, day): the rows compaction writes stay within
    rows × (log_F(rows) + 1), where merging every small file each time (the former rule)
    rewrote each row about once per COMPACT_MIN_FILES seals; every event stays, once."""
    seals, per = 100, 2
    with Ledger(tmp_path / "d", pricer=None) as led:
        for b in range(seals):
            led.append_many([usage(event_id=f"e{b}-{i}", ts="2025-10-01T12:00:00Z")
                             for i in range(per)], tenant="a")
            led.flush()
        rows = seals * per
        rewritten = led.sealer.rows_rewritten
        assert 0 < rewritten <= rows * (math.log(rows, COMPACT_MIN_FILES) + 1)
        tiers: dict[int, int] = {}
        for s in led.manifest.state.segments("a"):
            tiers[size_tier(s.rows)] = tiers.get(size_tier(s.rows), 0) + 1
        assert all(n < COMPACT_MIN_FILES for n in tiers.values())  # nothing left to merge
        assert sorted(e.event_id for e in led.events("a", limit=rows)) == sorted(
            f"e{b}-{i}" for b in range(seals) for i in range(per))
    assert verify_directory(tmp_path / "d").ok
