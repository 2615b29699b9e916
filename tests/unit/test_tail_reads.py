"""Reads over the unsealed tail answer exactly as reads over sealed segments: the same
events appended to a ledger that never seals, one that seals everything and one that
sealed half give the same uncertified pages and totals, previews, receipt logs and event
listings; and the tail keeps its events columnar (no per-event Python objects beyond one
small open part)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.core.tail import OPEN_PART_ROWS
from ledger.model.event import format_ts, leaf_hash_of, ts_to_us
from ledger.model.schema import DICTIONARY_COLUMNS, EVENT_SCHEMA
from ledger.receipts.issuance import Receipts
from projections.tailview import (
    BLOCK_SCHEMA,
    NARROW_COLUMNS,
    TAIL_SCHEMA,
    compact,
    plain,
    pylist,
    widen,
)

MODELS = (("openai", "gpt-4o-mini", "fast"), ("anthropic", "claude-3-5-haiku", "cheap"),
          ("openai", "gpt-4o", ""), ("acme", "no-such-model", "odd"))


def events(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` varied events: four models (one without a price: unpriced), five UTC days,
    conversations shared by several events, provider costs on some, metadata on some."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        provider, model, alias = MODELS[rng.randrange(len(MODELS))]
        ev: dict[str, Any] = {
            "event_id": f"e-{seed}-{i:06d}", "provider": provider, "model": model,
            "alias": alias, "input_tokens": rng.randrange(1, 5000),
            "output_tokens": rng.randrange(1, 900),
            "ts": f"2025-10-{rng.randrange(1, 6):02d}T{rng.randrange(24):02d}:"
                  f"{rng.randrange(60):02d}:00Z"}
        if rng.random() < 0.3:
            ev["cost"] = f"0.000{rng.randrange(100, 999)}"
        if rng.random() < 0.4:
            ev["conversation_id"] = f"c-{rng.randrange(40)}"
        if rng.random() < 0.5:
            ev["metadata"] = {"team": rng.choice(("a", "b"))}
        out.append(ev)
    return out


def appends(seed: int) -> list[list[dict[str, Any]]]:
    """Batches as clients send them: many small appends (the open tail part) and a few
    large ones (Arrow tables grouped by day)."""
    evs = events(3_000, seed)
    sizes = [1, 3, 2, 700, 1, 5, 300, 1, *([7] * 40), 900]
    batches, at = [], 0
    for size in sizes:
        batches.append(evs[at:at + size])
        at += size
    batches.append(evs[at:])
    return batches


def reads(ledger: Ledger, receipts: Receipts, receipt_id: str) -> dict[str, Any]:
    def uncertified(limit: int, offset: int) -> dict[str, Any]:
        return receipts.uncertified(limit=limit, offset=offset)

    stamps = {log["id"]: log["timestamp"]
              for log in receipts.uncertified(limit=1_000, offset=500)["logs"]}
    return {
        "uncertified": [uncertified(100, 0), uncertified(250, 1_000), uncertified(7, 2_990),
                        uncertified(1_000, 0)],
        "preview": receipts.preview(since_last_receipt=True),
        "preview_where": receipts.preview(since_last_receipt=True, where={"team": "a"}),
        "preview_days": receipts.preview(start_date="2025-10-02", end_date="2025-10-03"),
        "preview_conversation": receipts.preview(conversation_id="c-7"),
        "receipt_logs": [receipts.logs("default", receipt_id, limit=500, offset=o)["logs"]
                         for o in (0, 100)],
        "events": [[e.model_dump(exclude={"recorded_at"})
                    for e in ledger.events(limit=limit, offset=offset, order=order)]
                   for limit, offset, order in ((100, 0, "seq"), (50, 2_000, "seq"),
                                                (30, 10, "-seq"))],
        "count": ledger.count(),
        "timestamps": stamps,
        "events_stamped": [{"id": e.event_id, "ts": format_ts(ts_to_us(e.ts))}
                           for e in ledger.events(limit=3_000) if e.event_id in stamps],
    }


def build(path: Path, seal_at: int | None) -> dict[str, Any]:
    """Append the batches (and one receipt after the fourth) with seals after batch
    ``seal_at`` (None: never); return every read."""
    with Ledger(path, auto_seal=False, checkpoint_interval=None) as ledger:
        receipts = Receipts(ledger)
        receipt_id = ""
        for k, batch in enumerate(appends(seed=5)):
            ledger.append_many(batch)
            if k == 3:
                ids = [e["event_id"] for e in batch[::3]]
                receipt_id = receipts.generate(log_ids=ids)["receipt"]["receipt_id"]
            if seal_at is not None and k == seal_at:
                ledger.seal()
        if seal_at == -1:
            ledger.seal()
        assert (ledger.unit("default").tail.rows() == 0) == (seal_at == -1)
        return reads(ledger, receipts, receipt_id)


@pytest.mark.parametrize("seal_at", [-1, 6])
def test_reads_over_the_tail_equal_reads_over_sealed_segments(tmp_path: Path, seal_at):
    """Never sealed vs all sealed (-1) and vs half sealed (after the seventh batch)."""
    tail = build(tmp_path / "tail", None)
    other = build(tmp_path / "other", seal_at)
    for key in tail:
        assert tail[key] == other[key], key
    assert tail["uncertified"][0]["total"] == 3_000 - 234
    assert tail["preview"]["unpriced_logs"] > 0
    assert tail["preview"]["total_conversations"] == 40
    assert tail["timestamps"] == {e["id"]: e["ts"] for e in tail["events_stamped"]}


def test_a_log_is_listed_with_its_canonical_timestamp(tmp_path: Path):
    """The ``timestamp`` of a listed log is its event's ``ts`` in the canonical text
    (``format_ts``), from the tail and from segments alike."""
    with Ledger(tmp_path / "d", auto_seal=False, checkpoint_interval=None) as ledger:
        receipts = Receipts(ledger)
        stamps = ["2025-10-01T00:00:00.000000Z", "2025-10-02T23:59:59.999999Z",
                  "2025-10-03T12:34:56.000001Z"]
        ledger.append_many([{**events(1, seed=k)[0], "ts": t, "event_id": f"t{k}"}
                            for k, t in enumerate(stamps)])
        ledger.append_many([{**events(1, seed=9)[0], "ts": "2025-10-04T01:02:03.4Z"}])
        tail = [log["timestamp"] for log in receipts.uncertified()["logs"]]
        ledger.seal()
        sealed = [log["timestamp"] for log in receipts.uncertified()["logs"]]
        assert tail == sealed == [*stamps, "2025-10-04T01:02:03.400000Z"]
        assert tail == [format_ts(ts_to_us(e.ts)) for e in ledger.events()]


def test_the_tail_holds_columns_not_python_rows(tmp_path: Path):
    """Single appends gather in one open part of fewer than ``OPEN_PART_ROWS`` rows;
    every other part is an Arrow table with its seq index."""
    with Ledger(tmp_path / "d", auto_seal=False, checkpoint_interval=None) as ledger:
        for ev in events(OPEN_PART_ROWS * 2 + 10, seed=3):
            ledger.append(ev)
        parts = [p for c in ledger.unit("default").tail.chunks() for p in c.parts]
        assert [p.rows is not None for p in parts] == [False, False, True]
        assert len(parts[-1].rows or ()) == 10
        assert all(p.block is not None and len(p.block) == OPEN_PART_ROWS
                   for p in parts[:2])
        assert Receipts(ledger).uncertified(limit=5, offset=OPEN_PART_ROWS * 2 + 8)[
            "total"] == OPEN_PART_ROWS * 2 + 10


def test_reads_wholly_in_the_tail_run_no_sql(tmp_path: Path):
    """Uncertified pages and totals, a since-last preview and a receipt's logs over a
    tail-only project never start DuckDB (nor import it: an idle or tail-only server does
    without its memory)."""
    script = f"""
import sys
from ledger import Ledger
from ledger.receipts.issuance import Receipts
from tests.unit.test_tail_reads import events
with Ledger({str(tmp_path / "d")!r}, auto_seal=False, checkpoint_interval=None) as ledger:
    receipts = Receipts(ledger)
    ledger.append_many(events(600, seed=4))
    rid = receipts.generate(log_ids=["e-4-000001", "e-4-000002"])["receipt"]["receipt_id"]
    ledger.append_many(events(300, seed=6))
    assert receipts.uncertified(limit=50, offset=10)["total"] == 898
    assert receipts.preview(since_last_receipt=True)["total_logs"] == 898
    assert len(receipts.logs("default", rid)["logs"]) == 2
    assert receipts.get("default", rid)["certified_count"] == 2
    assert "duckdb" not in sys.modules, "a tail-only read imported duckdb"
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]



def test_tail_text_columns_are_dictionaries_and_segments_keep_the_stored_schema(
        tmp_path: Path):
    """The tail keeps the low-cardinality text columns (``DICTIONARY_COLUMNS``)
    dictionary-encoded and no leaf hashes (``BLOCK_SCHEMA``); a view gives its rows with
    the leaf hashes the log's tree holds (``TAIL_SCHEMA``); the segments a seal writes
    from it have the stored schema (``EVENT_SCHEMA``: plain strings) and the same rows."""
    with Ledger(tmp_path / "d", auto_seal=False, checkpoint_interval=None) as ledger:
        for batch in appends(seed=8):
            ledger.append_many(batch)
        view = ledger.snapshot().tails["default"]
        assert len(view.blocks) > 3
        assert all(widen(b.table).schema.equals(BLOCK_SCHEMA) for b in view.blocks)
        assert "leaf_hash" not in BLOCK_SCHEMA.names
        assert all(b.table.schema.field(c).type == pa.int32()  # every count fits
                   for b in view.blocks for c in NARROW_COLUMNS)
        assert {f.name for f in TAIL_SCHEMA if pa.types.is_dictionary(f.type)} == set(
            DICTIONARY_COLUMNS)
        assert view.table().schema.equals(TAIL_SCHEMA)
        before = plain(view.table()).sort_by("seq")
        assert before.schema.equals(EVENT_SCHEMA)
        size = ledger.unit("default").logs.size("default")
        tree = ledger.leaf_hash_buffer("default", 0, size)
        assert before.column("leaf_hash").to_pylist() == [
            tree[s * 32:(s + 1) * 32] for s in before.column("seq").to_pylist()]
        assert before.column("leaf_hash").to_pylist() == [  # what the events hash to
            leaf_hash_of(e.canonical_bytes()) for e in ledger.events(limit=size)]
        ledger.seal()
        files = [s.path for s in ledger.snapshot().segments["default"]]
    tables = [pq.read_table(f) for f in files]
    assert all(t.schema.remove_metadata().equals(EVENT_SCHEMA) for t in tables)
    assert pa.concat_tables(tables).sort_by("seq").equals(before)


def test_dictionary_columns_read_back_as_their_values(tmp_path: Path):
    """``pylist`` of a dictionary column (chunks with different dictionaries, nulls) is
    ``to_pylist`` of the plain column; ``compact`` then ``plain`` gives the table back,
    also one longer than a dictionary's ``CHUNK_ROWS``."""
    values = [["a", None, "b", "a"], [None, None], ["c", "a"], []]
    column = pa.chunked_array([pa.array(v, pa.string()).dictionary_encode() for v in values])
    assert pylist(column) == [x for v in values for x in v]
    assert pylist(pa.array(["x", None])) == ["x", None]
    with Ledger(tmp_path / "d", auto_seal=False, checkpoint_interval=None) as ledger:
        ledger.append_many(events(500, seed=2))
        table = plain(ledger.snapshot().tails["default"].table())
    assert compact(table).schema.equals(TAIL_SCHEMA)
    assert plain(compact(table)).equals(table)
    large = pa.concat_tables([table] * 140)  # 70,000 rows: three dictionaries of int16 codes
    encoded = compact(large)
    assert encoded.column("model").num_chunks == 3
    assert plain(encoded).equals(large)
    assert pylist(encoded.column("model")) == large.column("model").to_pylist()
    assert plain(compact(EVENT_SCHEMA.empty_table())).equals(EVENT_SCHEMA.empty_table())


def test_walking_a_receipt_gives_the_same_pages_from_the_tail_and_from_segments(
        tmp_path: Path):
    """Every page of a receipt's logs at limit=1000 (and an odd limit) is byte for byte
    the same JSON (but for the receipt's own id) whether its events are unsealed or
    sealed, and the pages together are the receipt's events in leaf order."""
    def walk(seal: bool) -> list[bytes]:
        with Ledger(tmp_path / f"d{seal}", auto_seal=False, checkpoint_interval=None
                    ) as ledger:
            receipts = Receipts(ledger)
            for batch in appends(seed=11):
                ledger.append_many(batch)
            rid = receipts.generate(since_last_receipt=True)["receipt"]["receipt_id"]
            if seal:
                ledger.seal()
            pages = [orjson.dumps({**receipts.logs("default", rid, limit=limit, offset=o),
                                   "receipt_id": None})  # ids differ between the ledgers
                     for limit in (1_000, 333) for o in range(0, 3_001, limit)]
            seqs = [log["seq"] for page in pages[:4] for log in orjson.loads(page)["logs"]]
            assert seqs == list(range(3_000))
            return pages

    assert walk(False) == walk(True)


def test_counts_past_int32_read_back_exactly_from_the_tail_and_the_segments(
        tmp_path: Path):
    """A block keeps its counts as int32 only when every one fits: a block with a count
    past 2³¹ keeps them as int64, and both read back exactly, before and after a seal."""
    big = {**events(1, seed=1)[0], "event_id": "big", "input_tokens": 2**40,
           "latency_ms": 2**33}
    with Ledger(tmp_path / "d", auto_seal=False, checkpoint_interval=None) as ledger:
        ledger.append_many(events(300, seed=12))
        ledger.append_many([big, *events(300, seed=13)])
        view = ledger.snapshot().tails["default"]
        types = [b.table.schema.field("input_tokens").type for b in view.blocks]
        assert types == [pa.int32(), pa.int64()]
        assert view.table().schema.equals(TAIL_SCHEMA)

        def read() -> tuple[Any, ...]:
            found = [e for e in ledger.events(limit=601) if e.event_id == "big"]
            receipts = Receipts(ledger)
            page = receipts.uncertified(limit=601)["logs"]  # across both blocks
            return (found[0].input_tokens, found[0].latency_ms,
                    receipts.preview(since_last_receipt=True)["total_logs"],
                    [e.model_dump() for e in ledger.events(limit=601)], page,
                    [log["input_tokens"] for log in page if log["id"] == "big"])

        unsealed = read()
        ledger.seal()
        assert read() == unsealed
        assert unsealed[:3] == (2**40, 2**33, 601)
        assert unsealed[-1] == [2**40]


def test_a_tree_that_lost_or_garbled_unsealed_leaves_is_repaired_from_the_journal(
        tmp_path: Path):
    """The tree's files are written without a sync, and the tail reads its leaf hashes
    there: after a crash, leaves the tree lost or garbled are put right from the
    journal before anything reads them, so listings, the seal and the audit see the
    hashes the events have."""
    path = tmp_path / "d"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", f"""
import os
from ledger import Ledger
from tests.unit.test_tail_reads import events
from ledger.receipts.issuance import Receipts
ledger = Ledger({str(path)!r}, auto_seal=False, checkpoint_interval=None)
ledger.append_many(events(700, seed=21))
Receipts(ledger).generate(log_ids=["e-21-000003"])  # a receipt entry: seq 700
for e in events(30, seed=22):
    ledger.append(e)
os._exit(0)  # a crash: the journal has every entry, nothing sealed
"""], cwd=root, check=True, timeout=120)
    level0 = path / "projects" / "default" / "tree" / "level-0.bin"
    data = bytearray(level0.read_bytes())
    assert len(data) == 731 * 32
    data[32 * 300 + 7] ^= 0x40  # a garbled leaf, and the last 100 lost
    level0.write_bytes(bytes(data[:32 * 631]))
    with Ledger(path, auto_seal=False, checkpoint_interval=None) as ledger:
        listed = ledger.events(limit=730)
        assert [bytes.fromhex(e.leaf_hash) for e in listed] == [
            leaf_hash_of(e.canonical_bytes()) for e in listed]
        ledger.seal()
        assert [e.model_dump() for e in ledger.events(limit=730)] == [
            e.model_dump() for e in listed]
    report = verify_directory(path)
    assert report.ok, report
