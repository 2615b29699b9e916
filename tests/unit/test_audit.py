"""Tampering with a data directory is reported by the audit (`llmring ledger verify`),
naming what is wrong and where."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ledger import Ledger
from ledger.core.audit import AuditReport, verify_directory
from tests.conftest import usage


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    """A directory with two projects, several days and a few segments each, all sealed."""
    path = tmp_path / "data"
    with Ledger(path, pricer=None) as led:
        for batch in range(3):
            led.append_many([usage(event_id=f"e{batch}-{i}", input_tokens=100 + i,
                                   ts=f"2025-10-0{1 + i % 3}T12:00:00Z")
                             for i in range(30)], tenant="acme")
            led.append_many([usage(event_id=f"o{batch}-{i}") for i in range(5)],
                            tenant="other")
            led.flush()
    return path


def _kinds(report: AuditReport) -> set[str]:
    return {p.kind for p in report.problems}


def _text(report: AuditReport) -> str:
    return "\n".join(str(p) for p in report.problems)


def _segments(path: Path, tenant: str = "acme") -> list[Path]:
    return sorted((path / "events" / f"tenant={tenant}").rglob("*.parquet"))


def _manifest(path: Path) -> Path:
    return path / "projects" / "acme" / "manifest.jsonl"  # acme's own manifest


def _manifest_records(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in _manifest(path).read_bytes().splitlines()]


def _write_manifest(path: Path, records: list[dict]) -> None:
    _manifest(path).write_bytes(
        b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records))


def test_an_untouched_directory_verifies(sealed: Path) -> None:
    report = verify_directory(sealed)
    assert report.ok, _text(report)
    assert report.events_checked == 105


def test_a_flipped_byte_in_a_segment_is_reported_naming_the_file(sealed: Path) -> None:
    segment = _segments(sealed)[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    report = verify_directory(sealed)
    assert not report.ok
    assert str(segment.relative_to(sealed)) in _text(report)


def test_a_deleted_segment_is_reported(sealed: Path) -> None:
    segment = _segments(sealed)[0]
    segment.unlink()
    report = verify_directory(sealed)
    assert not report.ok
    assert str(segment.relative_to(sealed)) in _text(report)


def test_an_edited_manifest_record_breaks_the_hash_chain(sealed: Path) -> None:
    records = _manifest_records(sealed)
    records[0]["at"] = "2020-01-01T00:00:00.000000Z"
    _write_manifest(sealed, records)
    report = verify_directory(sealed)
    assert "manifest" in _kinds(report)


def test_a_removed_manifest_record_is_reported(sealed: Path) -> None:
    records = _manifest_records(sealed)
    del records[1]
    _write_manifest(sealed, records)
    report = verify_directory(sealed)
    assert "manifest" in _kinds(report)


def test_a_cost_rewritten_in_a_segment_and_its_manifest_hash_is_caught_by_the_leaf_hash(
        sealed: Path) -> None:
    segment = _segments(sealed)[0]
    table = pq.read_table(segment)
    cost = table.column("cost_nanos")
    table = table.set_column(table.schema.get_field_index("cost_nanos"), "cost_nanos",
                             pc.multiply(cost, pa.scalar(2, cost.type)))
    pq.write_table(table, segment, compression="zstd")
    # Make the manifest agree with the new file, re-chaining every record after it.
    rel = str(segment.relative_to(sealed))
    digest = hashlib.sha256(segment.read_bytes()).hexdigest()
    records = _manifest_records(sealed)
    for r in records:
        for seg in r.get("add", []):
            if seg["path"] == rel:
                seg["sha256"] = digest
    prev = None
    for r in records:
        if prev is not None:
            r["prev"] = prev
        prev = hashlib.sha256(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)).hexdigest()
    _write_manifest(sealed, records)
    report = verify_directory(sealed)
    assert not report.ok
    assert "leaf" in _text(report).lower()


def test_an_altered_leaf_hash_in_the_tree_files_is_reported(sealed: Path) -> None:
    level0 = sealed / "projects" / "acme" / "tree" / "level-0.bin"
    data = bytearray(level0.read_bytes())
    data[32 * 5] ^= 0x80
    level0.write_bytes(bytes(data))
    report = verify_directory(sealed)
    assert "tree" in _kinds(report)
    assert "tree leaf 5" in _text(report)


def _checkpointed(tmp_path: Path) -> Path:
    path = tmp_path / "cp"
    with Ledger(path, pricer=None) as led:  # closing seals and checkpoints the logs
        led.append_many([usage(event_id=f"c{i}", ts="2025-10-01T12:00:00Z")
                         for i in range(20)], tenant="acme")
    with Ledger(path, pricer=None) as led:
        led.append_many([usage(event_id=f"d{i}", ts="2025-10-02T12:00:00Z")
                         for i in range(5)], tenant="acme")
    return path


def test_signed_checkpoints_that_match_the_log_verify(tmp_path: Path) -> None:
    report = verify_directory(_checkpointed(tmp_path))
    assert report.ok, _text(report)


def test_two_events_reordered_consistently_contradict_the_signed_checkpoints(
        tmp_path: Path) -> None:
    path = _checkpointed(tmp_path)
    segment = _segments(path)[0]
    table = pq.read_table(segment)
    seqs = table.column("seq").to_pylist()
    seqs[0], seqs[1] = seqs[1], seqs[0]  # swap two events' places in the log
    table = table.set_column(table.schema.get_field_index("seq"), "seq",
                             pa.array(seqs, table.schema.field("seq").type))
    pq.write_table(table, segment, compression="zstd")
    _rechain(path, segment)
    for level in (path / "projects" / "acme" / "tree").glob("level-*"):
        level.unlink()  # the operator also rebuilds the derived tree
    report = verify_directory(path)
    assert "checkpoint" in _kinds(report)
    assert "history was rewritten" in _text(report)


def test_a_deleted_log_is_caught_by_its_signed_checkpoint(tmp_path: Path) -> None:
    path = _checkpointed(tmp_path)
    records = _manifest_records(path)
    for r in records:
        r["add"] = [s for s in r["add"] if s["tenant"] != "acme"]
        r["remove"] = [s for s in r["remove"] if s["tenant"] != "acme"]
    _rewrite_chain(path, records)
    report = verify_directory(path)
    assert "checkpoint" in _kinds(report)
    assert "no entry of that log" in _text(report)


def test_a_forged_checkpoint_line_is_reported(tmp_path: Path) -> None:
    path = _checkpointed(tmp_path)
    cfile = next((path / "checkpoints").glob("*.jsonl"))
    line = orjson.loads(cfile.read_bytes().splitlines()[0])
    line["note"] = line["note"].replace("\n20\n", "\n19\n")
    cfile.write_bytes(cfile.read_bytes() + orjson.dumps(line) + b"\n")
    report = verify_directory(path)
    assert "checkpoint" in _kinds(report)


def _rewrite_chain(path: Path, records: list[dict]) -> None:
    prev = None
    for r in records:
        if prev is not None:
            r["prev"] = prev
        prev = hashlib.sha256(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)).hexdigest()
    _write_manifest(path, records)


def _rechain(path: Path, segment: Path) -> None:
    rel = str(segment.relative_to(path))
    digest = hashlib.sha256(segment.read_bytes()).hexdigest()
    records = _manifest_records(path)
    for r in records:
        for seg in r.get("add", []):
            if seg["path"] == rel:
                seg["sha256"] = digest
    _rewrite_chain(path, records)


def test_a_receipt_removed_with_its_manifest_records_is_reported(tmp_path: Path) -> None:
    from ledger.receipts.issuance import Receipts

    path = tmp_path / "rc"
    with Ledger(path, pricer=None) as led:
        led.append_many([usage(event_id=f"r{i}") for i in range(5)], tenant="acme")
        Receipts(led).generate("acme", since_last_receipt=True)
        led.append_many([usage(event_id=f"s{i}") for i in range(3)], tenant="acme")
    # The operator deletes the receipt and its membership, and rewrites the manifest so
    # that the chain of hashes is whole again.
    records = _manifest_records(path)
    gone = []
    for r in records:
        gone += [s["path"] for s in r["add"] if s["kind"] in ("receipts", "membership")]
        r["add"] = [s for s in r["add"] if s["kind"] not in ("receipts", "membership")]
    for rel in gone:
        (path / rel).unlink()
    _rewrite_chain(path, records)
    report = verify_directory(path)
    assert not report.ok
    assert {"seq-gap", "checkpoint"} & _kinds(report), _text(report)


def test_a_log_truncated_and_regrown_with_other_events_is_a_fork(tmp_path: Path) -> None:
    import shutil

    honest = _checkpointed(tmp_path)  # checkpoints signed at sizes 20 and 25
    # The operator rebuilds the log from scratch with other events, keeping the key, the
    # origin and the checkpoints already published.
    regrown = tmp_path / "regrown"
    regrown.mkdir()
    for name in ("keys", "checkpoints"):
        shutil.copytree(honest / name, regrown / name)
    shutil.copy(honest / "config.json", regrown / "config.json")
    with Ledger(regrown, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=f"z{i}", ts="2025-10-03T12:00:00Z")
                         for i in range(25)], tenant="acme")
    report = verify_directory(regrown)
    assert "checkpoint" in _kinds(report)
    assert "history was rewritten" in _text(report)
