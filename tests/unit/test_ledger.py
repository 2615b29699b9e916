"""The embedded ledger: sequencing, idempotency, pairing, atomic batches, reads, seals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from ledger import EventValidationError, IdConflictError, Ledger, LedgerLockedError
from ledger.core.audit import verify_directory
from ledger.core.idempotency import Idempotency
from ledger.tlog.merkle import root_from_leaf_hashes, verify_inclusion
from projections.rollups import RollupError, rollup
from tests.conftest import usage
from tests.support.unclean import stop_uncleanly


def test_seqs_are_gap_free_per_project(ledger: Ledger) -> None:
    a = [ledger.append(usage(), tenant="a").seq for _ in range(3)]
    b = [ledger.append(usage(), tenant="b").seq for _ in range(2)]
    assert (a, b) == ([0, 1, 2], [0, 1])


def test_identical_repeat_returns_the_original_acknowledgement(ledger: Ledger) -> None:
    first = ledger.append(usage(event_id="call-1"), tenant="a")
    again = ledger.append(usage(event_id="call-1"), tenant="a")
    assert (again.event_id, again.seq, again.ts_us, again.cost_nanos) == (
        first.event_id, first.seq, first.ts_us, first.cost_nanos)
    assert again.created is False and ledger.size("a") == 1


def test_blind_retry_without_ts_is_the_same_call(ledger: Ledger) -> None:
    first = ledger.append(usage(event_id="r1"), tenant="a")
    assert ledger.append(usage(event_id="r1"), tenant="a").ts_us == first.ts_us
    assert ledger.size("a") == 1


def test_repeat_is_recognised_after_seal_and_reopen(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None) as led:
        first = led.append(usage(event_id="k"), tenant="a")
        led.flush()
    with Ledger(ledger_dir, pricer=None) as led:
        again = led.append(usage(event_id="k"), tenant="a")
        assert (again.seq, again.created, led.size("a")) == (first.seq, False, 1)


def test_same_id_with_different_content_is_refused_naming_it(ledger: Ledger) -> None:
    ledger.append(usage(event_id="dup"), tenant="a")
    with pytest.raises(IdConflictError, match=r"'dup'.*input_tokens"):
        ledger.append(usage(event_id="dup", input_tokens=1), tenant="a")
    assert ledger.size("a") == 1


def test_conflict_is_detected_against_sealed_events(ledger: Ledger) -> None:
    ledger.append(usage(event_id="dup", ts="2025-10-01T00:00:00Z"), tenant="a")
    ledger.flush()
    with pytest.raises(IdConflictError):
        ledger.append(usage(event_id="dup", ts="2025-10-01T00:00:00Z", model="gpt-4o"),
                      tenant="a")


def test_same_id_in_another_project_is_independent(ledger: Ledger) -> None:
    ledger.append(usage(event_id="shared"), tenant="a")
    assert ledger.append(usage(event_id="shared", model="x"), tenant="b").created


def test_a_batch_with_one_bad_event_appends_nothing(ledger: Ledger) -> None:
    with pytest.raises(EventValidationError) as info:
        ledger.append_many([usage(), usage(input_tokens=-5), usage()], tenant="a")
    assert info.value.index == 1
    assert ledger.size("a") == 0 and ledger.events("a") == []


def test_a_batch_with_a_conflicting_id_appends_nothing(ledger: Ledger) -> None:
    ledger.append(usage(event_id="x"), tenant="a")
    with pytest.raises(IdConflictError):
        ledger.append_many([usage(), usage(event_id="x", output_tokens=1)], tenant="a")
    assert ledger.size("a") == 1


def test_a_repeated_id_inside_one_batch_is_stored_once(ledger: Ledger) -> None:
    acks = ledger.append_many([usage(event_id="z"), usage(event_id="z")], tenant="a")
    assert acks[0].seq == acks[1].seq and ledger.size("a") == 1


def test_conversation_and_its_usage_log_are_one_call(ledger: Ledger) -> None:
    conv = ledger.append(usage(kind="conversation"), tenant="a")
    paired = ledger.append(usage(id_at_origin=conv.conversation_id,
                                 metadata={"conversation_id": conv.conversation_id}),
                           tenant="a")
    assert paired.event_id == conv.event_id and not paired.created
    assert ledger.size("a") == 1


def test_second_usage_log_naming_a_paired_conversation_is_a_new_call(ledger: Ledger) -> None:
    conv = ledger.append(usage(kind="conversation"), tenant="a")
    ledger.append(usage(id_at_origin=conv.conversation_id), tenant="a")
    third = ledger.append(usage(id_at_origin=conv.conversation_id), tenant="a")
    assert third.created and ledger.size("a") == 2


def test_pairing_survives_seal_and_reopen(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None) as led:
        conv = led.append(usage(kind="conversation"), tenant="a")
        led.append(usage(event_id="u1", id_at_origin=conv.conversation_id), tenant="a")
    with Ledger(ledger_dir, pricer=None) as led:
        retry = led.append(usage(event_id="u1", id_at_origin=conv.conversation_id), tenant="a")
        new = led.append(usage(id_at_origin=conv.conversation_id), tenant="a")
        assert retry.event_id == conv.event_id and new.created and led.size("a") == 2


def test_pairing_inside_one_batch(ledger: Ledger) -> None:
    acks = ledger.append_many([usage(kind="conversation", conversation_id="c9"),
                               usage(id_at_origin="c9")], tenant="a")
    assert acks[1].event_id == acks[0].event_id and ledger.size("a") == 1


def test_an_acknowledged_event_is_visible_before_sealing(ledger: Ledger) -> None:
    ack = ledger.append(usage(event_id="fresh"), tenant="a")
    assert [e.event_id for e in ledger.events("a")] == [ack.event_id]
    assert ledger.get("a", "fresh").seq == 0


def test_events_read_back_equal_what_was_written(ledger: Ledger) -> None:
    ack = ledger.append(usage(event_id="rt", metadata={"k": [1, 2.5, "é"]},
                              ts="2025-10-01T12:00:00.123456Z"), tenant="a")
    ledger.flush()
    event = ledger.get("a", "rt")
    assert event.metadata == {"k": [1, 2.5, "é"]}
    assert event.ts == datetime(2025, 10, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert bytes.fromhex(event.leaf_hash) == ledger.tree("a").leaf_hash(ack.seq)


def test_listing_is_paginated_in_both_orders(ledger: Ledger) -> None:
    ledger.append_many([usage(event_id=f"e{i}") for i in range(10)], tenant="a")
    ledger.flush()
    ledger.append_many([usage(event_id=f"e{i}") for i in range(10, 15)], tenant="a")
    assert [e.event_id for e in ledger.events("a", limit=3, offset=9)] == ["e9", "e10", "e11"]
    assert [e.event_id for e in ledger.events("a", limit=2, order="-seq")] == ["e14", "e13"]


def test_listing_by_time_range_is_start_inclusive_end_exclusive(ledger: Ledger) -> None:
    for day in (1, 2, 3):
        ledger.append(usage(event_id=f"d{day}", ts=f"2025-10-0{day}T00:00:00Z"), tenant="a")
    ledger.flush()
    got = ledger.events("a", start=datetime(2025, 10, 2, tzinfo=UTC),
                        end=datetime(2025, 10, 3, tzinfo=UTC))
    assert [e.event_id for e in got] == ["d2"]
    assert ledger.count("a", start=datetime(2025, 10, 2, tzinfo=UTC)) == 2


def test_segments_are_plain_hive_partitioned_parquet(ledger: Ledger, ledger_dir: Path) -> None:
    ledger.append(usage(ts="2025-10-01T08:00:00Z"), tenant="acme")
    ledger.append(usage(ts="2025-10-02T08:00:00Z"), tenant="acme")
    ledger.flush()
    rows = duckdb.sql(
        f"SELECT tenant, date::VARCHAR, count(*) FROM read_parquet('{ledger_dir}/events/**/*."
        "parquet', hive_partitioning = true) GROUP BY ALL ORDER BY 2").fetchall()
    assert rows == [("acme", "2025-10-01", 1), ("acme", "2025-10-02", 1)]


def test_a_second_writer_is_refused(ledger: Ledger, ledger_dir: Path) -> None:
    with pytest.raises(LedgerLockedError, match="in use by another process"):
        Ledger(ledger_dir, pricer=None)


def test_unsealed_events_survive_an_unclean_stop(ledger_dir: Path) -> None:
    led = Ledger(ledger_dir, pricer=None)
    ack = led.append(usage(event_id="keep"), tenant="a")
    stop_uncleanly(led)  # no seal, as if the process died after the acknowledgement
    with Ledger(ledger_dir, pricer=None) as again:
        assert again.get("a", "keep").seq == ack.seq


def test_compaction_merges_small_segments_and_keeps_every_event(ledger: Ledger,
                                                               ledger_dir: Path) -> None:
    for i in range(5):
        ledger.append(usage(event_id=f"c{i}", ts="2025-10-01T10:00:00Z"), tenant="a")
        ledger.flush()
    assert len(ledger.unit("a").manifest.state.segments("a")) == 5
    result = ledger.compact()
    assert (result.merged, result.written) == (5, 1)
    assert len(ledger.unit("a").manifest.state.segments("a")) == 1
    assert [e.event_id for e in ledger.events("a")] == [f"c{i}" for i in range(5)]
    assert verify_directory(ledger_dir).ok


def test_log_tree_root_covers_every_leaf_in_seq_order(ledger: Ledger) -> None:
    ledger.append_many([usage() for _ in range(300)], tenant="a")
    ledger.flush()
    ledger.append_many([usage() for _ in range(7)], tenant="a")
    leaves = [bytes.fromhex(e.leaf_hash) for e in ledger.events("a", limit=1000)]
    tree = ledger.tree("a")
    assert tree.root() == root_from_leaf_hashes(leaves)
    verify_inclusion(leaves[123], 123, 307, tree.inclusion_proof(123, 307), tree.root())


def test_rollup_groups_days_in_the_requested_time_zone(ledger: Ledger) -> None:
    ledger.append(usage(ts="2025-10-01T23:30:00Z", cost="1"), tenant="a")  # 01:30 Oct 2 Madrid
    ledger.append(usage(ts="2025-10-01T12:00:00Z", cost="2", model="gpt-4o"), tenant="a")
    ledger.flush()
    utc = {(r.key["day"]): r.cost_nanos for r in rollup(ledger.snapshot(), "a", ["day"])}
    madrid = {(r.key["model"], r.key["day"]): r.calls
              for r in rollup(ledger.snapshot(), "a", ["model", "day"], tz="Europe/Madrid")}
    assert utc == {"2025-10-01": 3_000_000_000}
    assert madrid == {("gpt-4o", "2025-10-01"): 1, ("gpt-4o-mini", "2025-10-02"): 1}


def test_rollup_counts_unpriced_calls_separately(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as led:
        led.append({"provider": "local", "model": "in-house-7b", "input_tokens": 5}, tenant="a")
        [row] = rollup(led.snapshot(), "a", ["model"])
        assert (row.calls, row.unpriced, row.cost_nanos) == (1, 1, 0)


def test_rollup_refuses_an_unknown_time_zone(ledger: Ledger) -> None:
    with pytest.raises(RollupError, match="unknown time zone"):
        rollup(ledger.snapshot(), "a", ["day"], tz="Mars/Olympus")


def _sealed_and_compacted(path: Path) -> None:
    with Ledger(path, pricer=None) as led:
        for b in range(3):
            led.append_many([usage(event_id=f"b{b}-{i}", ts="2025-10-01T12:00:00Z")
                             for i in range(10)], tenant="a")
            led.flush()
        assert led.compact().merged == 3


def test_reopening_after_compaction_does_not_reindex_the_log(
        ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sealed_and_compacted(ledger_dir)
    calls: list[str] = []
    real = Idempotency.index_segment
    monkeypatch.setattr(Idempotency, "index_segment",
                        lambda self, seg: (calls.append(seg.path), real(self, seg)))
    with Ledger(ledger_dir, pricer=None) as led:
        assert not led.append(usage(event_id="b1-3", ts="2025-10-01T12:00:00Z"),
                              tenant="a").created
    assert calls == []


def test_a_lost_index_is_rebuilt_from_compacted_segments(ledger_dir: Path) -> None:
    _sealed_and_compacted(ledger_dir)
    for p in (ledger_dir / "projects" / "a").glob("index.sqlite*"):
        p.unlink()
    with Ledger(ledger_dir, pricer=None) as led:
        ack = led.append(usage(event_id="b2-9", ts="2025-10-01T12:00:00Z"), tenant="a")
        assert not ack.created and ack.seq == 29
        assert led.size("a") == 30


def test_events_are_read_back_by_id_from_the_segments_of_their_day(tmp_path: Path) -> None:
    days = ["2025-03-01T00:00:00Z", "2025-03-01T23:59:59.999999Z", "2025-03-02T00:00:00Z",
            "2025-06-30T12:00:00Z"]
    with Ledger(tmp_path / "d") as led:
        given = led.append_many([usage(event_id=f"d{i}", ts=ts) for i, ts in enumerate(days)],
                                tenant="t")
        made = led.append_many([usage(ts=ts) for ts in days], tenant="t")  # generated ids
        tail = [led.get("t", a.event_id) for a in [*given, *made]]
        led.flush()
        assert led.unit("t").manifest.state.segments("t")
        for ack, before in zip([*given, *made], tail, strict=True):
            event = led.get("t", ack.event_id)
            assert event is not None and before is not None
            assert (event.seq, event.event_id) == (before.seq, before.event_id) == (
                ack.seq, ack.event_id)
            assert led.event_of(ack) == event
