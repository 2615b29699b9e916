"""Manifest checkpoints: opening reads the live set from the last checkpoint record, not
the history; a walk of the whole chain still checks every checkpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.core.idempotency import Idempotency
from ledger.errors import ManifestError
from ledger.model.event import canonical_json
from ledger.storage import manifest as mf
from ledger.storage.manifest import Manifest, Segment, check_chain, read_lines
from tests.conftest import usage

AT = "2025-10-01T00:00:00Z"


def _seg(i: int) -> Segment:
    return Segment(f"events/tenant=a/date=2025-10-01/seg-{i:06d}.parquet", f"{i:064x}", 10,
                   100, "a", "2025-10-01", "events", 10 * i, 10 * i + 9)


def _history(path: Path, records: int, every: int) -> Manifest:
    """A manifest of ``records`` seals and compactions; the live set stays small."""
    m = Manifest(path, checkpoint_every=every)
    live: list[Segment] = []
    for i in range(records):
        if len(live) == 4:
            merged = _seg(100_000 + i)
            m.append("compact", AT, add=[merged], remove=live)
            live = [merged]
        else:
            live.append(_seg(i))
            m.append("seal", AT, add=[live[-1]], journal=i)
    return m


def test_open_reads_only_from_the_last_checkpoint(tmp_path: Path) -> None:
    """The lines before the last checkpoint are never read at open: garbling them does not
    change what opens (the full walk, as `ledger verify` does it, reports them)."""
    path = tmp_path / "manifest.jsonl"
    m = _history(path, 200, every=16)
    expected = dict(m.state.live)
    count, head, sealed = m.state.count, m.state.head, m.state.sealed_journal
    m.close()
    lines = path.read_bytes().split(b"\n")
    assert sum(b'"op":"checkpoint"' in line for line in lines) >= 200 // 17
    lines[3] = b"x" * len(lines[3])  # old history, before every checkpoint
    path.write_bytes(b"\n".join(lines))

    again = Manifest(path, checkpoint_every=16)
    assert (again.state.live, again.state.count, again.state.head,
            again.state.sealed_journal) == (expected, count, head, sealed)
    assert len(again.state.records) <= 17  # the checkpoint and the records after it
    again.append("seal", AT, add=[_seg(999)], journal=999)
    again.close()
    _, problems = check_chain(read_lines(path)[0])
    assert [p.line for p in problems] == [4, 5]  # the garbled line and the link after it


@pytest.mark.parametrize("block", [7, 64, 1000, 1 << 20])
def test_reading_backwards_in_any_block_size_finds_the_last_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    path = tmp_path / "manifest.jsonl"
    m = _history(path, 60, every=16)
    live, count = dict(m.state.live), m.state.count
    m.close()
    monkeypatch.setattr(mf, "_READ_BLOCK", block)
    again = Manifest(path, checkpoint_every=16)
    assert (again.state.live, again.state.count) == (live, count)
    assert again.state.records[0]["op"] == "checkpoint"


def test_checkpoint_holds_the_live_set_and_a_full_walk_checks_it(tmp_path: Path) -> None:
    """A checkpoint whose live set differs from what the records before it add up to is
    reported by the full walk, even with the hash chain re-linked around it."""
    path = tmp_path / "manifest.jsonl"
    _history(path, 40, every=16).close()
    lines = read_lines(path)[0]
    state, problems = check_chain(lines)
    assert problems == [] and state.count == len(lines)
    at = next(i for i, line in enumerate(lines) if b'"op":"checkpoint"' in line)
    record = orjson.loads(lines[at])
    record["live"] = record["live"][1:]  # hide a segment from every later open
    lines[at] = canonical_json(record, reference=True)
    for i in range(at + 1, len(lines)):  # re-link the chain after it
        r = orjson.loads(lines[i])
        r["prev"] = hashlib.sha256(lines[i - 1]).hexdigest()
        lines[i] = canonical_json(r, reference=True)
    _, problems = check_chain(lines)
    assert [(p.line, "live set differs" in p.message) for p in problems] == [(at + 1, True)]


def test_a_manifest_without_checkpoints_opens_and_gains_one(tmp_path: Path) -> None:
    """A manifest written before checkpoints existed opens by the whole walk; the next
    append past the interval writes a checkpoint."""
    path = tmp_path / "manifest.jsonl"
    _history(path, 30, every=10_000).close()
    m = Manifest(path, checkpoint_every=10)
    assert m.state.count == 30 and m.state.base == 0
    m.append("seal", AT, add=[_seg(500)], journal=500)
    assert m.state.records[0]["op"] == "checkpoint" and m.state.base == 31
    live = dict(m.state.live)
    m.close()
    assert Manifest(path, checkpoint_every=10).state.live == live
    assert check_chain(read_lines(path)[0])[1] == []


def test_a_torn_line_after_a_checkpoint_is_cut_and_a_broken_link_refused(
        tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    m = _history(path, 40, every=16)
    count = m.state.count
    m.close()
    good = path.read_bytes()
    path.write_bytes(good + b'{"n":42,"prev":"ab')
    assert Manifest(path, checkpoint_every=16).state.count == count
    assert path.read_bytes() == good
    lines = good.split(b"\n")
    record = orjson.loads(lines[-2])
    record["prev"] = "f" * 64
    lines[-2] = canonical_json(record, reference=True)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ManifestError, match="hash chain broken"):
        Manifest(path, checkpoint_every=16)


def test_ledger_reopens_from_a_checkpoint_without_reindexing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seals and compactions past checkpoints: the reopened ledger has the same segments,
    finds sealed ids without re-indexing, and the directory verifies."""
    monkeypatch.setattr(mf, "CHECKPOINT_EVERY", 4)
    path = tmp_path / "d"
    with Ledger(path, pricer=None) as led:
        for b in range(12):
            led.append_many([usage(event_id=f"b{b}-{i}", ts="2025-10-01T12:00:00Z")
                             for i in range(3)], tenant="a")
            led.flush()
        led.compact()
        live = dict(led.manifest.state.live)
        count = led.manifest.state.count
    assert count > 13
    calls: list[str] = []
    real = Idempotency.index_segment
    monkeypatch.setattr(Idempotency, "index_segment",
                        lambda self, seg: (calls.append(seg.path), real(self, seg)))
    with Ledger(path, pricer=None) as led:
        assert led.manifest.state.live == live and led.manifest.state.base > 0
        assert not led.append(usage(event_id="b4-1", ts="2025-10-01T12:00:00Z"),
                              tenant="a").created
        assert led.size("a") == 36
    assert calls == []
    assert verify_directory(path).ok


@pytest.mark.parametrize("line", [
    b'{"a": 1}', b'{"b":1,"a":2}', b'{"a":1.0}', b'{"a":1e2}', b'{"a":9007199254740993}',
    '{"a":"\u00e9"}'.encode(), b'{"a":"\\u00e9"}', b'{"a":"\\/"}'])
def test_the_fast_canonical_check_agrees_with_the_reference(line: bytes) -> None:
    """The open's fast test of RFC 8785 form decides like the reference serializer."""
    record = orjson.loads(line)
    try:
        want = canonical_json(record, reference=True) == line
    except (TypeError, ValueError):
        want = False
    assert mf._canonical(record, line) is want
