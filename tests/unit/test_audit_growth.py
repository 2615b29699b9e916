"""The audit at scale: a full verify over several processes finds exactly what one
process finds; `--since-checkpoint` checks only what is new since the last passing
verify, chained to it, and a full verify still checks everything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.receipts.issuance import Receipts
from tests.conftest import usage


def _grow(path: Path, batch: int, tenants: tuple[str, ...] = ("acme", "other")) -> None:
    """One more sealed batch per project (30 events over three days) and a receipt."""
    with Ledger(path, pricer=None) as led:
        for tenant in tenants:
            led.append_many([usage(event_id=f"{tenant}{batch}-{i}", input_tokens=10 + i,
                                   ts=f"2025-10-0{1 + i % 3}T12:00:00Z")
                             for i in range(30)], tenant=tenant)
        led.flush()
        Receipts(led).generate("acme", since_last_receipt=True)


def _segments_added_by(path: Path, record: int) -> list[Path]:
    lines = (path / "manifest.jsonl").read_bytes().splitlines()
    return [path / d["path"] for r in map(orjson.loads, lines[record:])
            for d in r["add"] if d["kind"] == "events"]


def _rewrite_cost(path: Path, segment: Path) -> None:
    """Double the costs in a segment and make the manifest agree (the chain re-linked):
    only recomputing the leaf hashes finds it."""
    table = pq.read_table(segment)
    cost = table.column("cost_nanos")
    table = table.set_column(table.schema.get_field_index("cost_nanos"), "cost_nanos",
                             pc.multiply(cost, pa.scalar(2, cost.type)))
    pq.write_table(table, segment, compression="zstd")
    rel = str(segment.relative_to(path))
    digest = hashlib.sha256(segment.read_bytes()).hexdigest()
    records = [orjson.loads(x) for x in (path / "manifest.jsonl").read_bytes().splitlines()]
    prev = None
    for r in records:
        for seg in r["add"]:
            if seg["path"] == rel:
                seg["sha256"] = digest
        if prev is not None:
            r["prev"] = prev
        prev = hashlib.sha256(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)).hexdigest()
    (path / "manifest.jsonl").write_bytes(
        b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records))


def test_several_processes_find_the_same_problems_as_one(tmp_path: Path) -> None:
    """On a directory tampered in several ways, the report of a verify in two worker
    processes equals that of one process, finding for finding."""
    path = tmp_path / "d"
    for batch in range(3):
        _grow(path, batch)
    assert verify_directory(path, jobs=1).ok
    segments = _segments_added_by(path, 0)
    _rewrite_cost(path, segments[1])
    data = bytearray(segments[4].read_bytes())
    data[len(data) // 2] ^= 0x01
    segments[4].write_bytes(bytes(data))
    segments[6].unlink()
    one, two = verify_directory(path, jobs=1), verify_directory(path, jobs=2)
    assert {p.kind for p in one.problems} >= {"leaf-hash", "segment-missing"}
    assert one.as_dict() == two.as_dict()


def test_since_checkpoint_checks_only_the_new_part_and_agrees_with_a_full_verify(
        tmp_path: Path) -> None:
    path = tmp_path / "d"
    _grow(path, 0)
    first = verify_directory(path)
    assert first.ok and (path / "verify-state.json").exists()
    _grow(path, 1)
    _grow(path, 2, tenants=("acme", "other", "new"))
    since = verify_directory(path, since_checkpoint=True)
    full = verify_directory(path)
    assert since.ok and full.ok, [str(p) for p in since.problems]
    assert since.tenants == full.tenants  # the same sizes and roots, from the frontier
    assert since.events_checked == full.events_checked - first.events_checked
    again = verify_directory(path, since_checkpoint=True)  # nothing new: nothing read
    assert again.ok and again.events_checked == 0 and again.tenants == full.tenants


def test_since_checkpoint_finds_tampering_in_the_new_part(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _grow(path, 0)
    assert verify_directory(path).ok
    records = len((path / "manifest.jsonl").read_bytes().splitlines())
    _grow(path, 1)
    _rewrite_cost(path, _segments_added_by(path, records)[0])
    report = verify_directory(path, since_checkpoint=True)
    assert "leaf-hash" in {p.kind for p in report.problems}


def test_since_checkpoint_finds_new_tree_leaves_that_differ(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _grow(path, 0)
    assert verify_directory(path).ok
    _grow(path, 1)
    level0 = path / "tree" / "tenant=other" / "level-0.bin"
    data = bytearray(level0.read_bytes())
    data[-5] ^= 0x01
    level0.write_bytes(bytes(data))
    report = verify_directory(path, since_checkpoint=True)
    assert [p.kind for p in report.problems] == ["tree"]


def test_older_tampering_is_left_to_a_full_verify_but_a_broken_link_is_not(
        tmp_path: Path) -> None:
    """What the last verify checked is not read again: altering it is found by a full
    verify. The new part must chain to the last checked manifest record."""
    path = tmp_path / "d"
    _grow(path, 0)
    assert verify_directory(path).ok
    _grow(path, 1)
    old = _segments_added_by(path, 0)[0]
    data = bytearray(old.read_bytes())
    data[len(data) // 2] ^= 0x01
    old.write_bytes(bytes(data))
    assert verify_directory(path, since_checkpoint=True).ok
    assert not verify_directory(path).ok  # and a failing verify records nothing
    assert verify_directory(path, since_checkpoint=True).ok

    state = orjson.loads((path / "verify-state.json").read_bytes())
    manifest = path / "manifest.jsonl"
    lines = manifest.read_bytes().split(b"\n")
    last = state["manifest"]["count"] - 1
    record = orjson.loads(lines[last])
    record["at"] = "2020-01-01T00:00:00Z"
    lines[last] = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    manifest.write_bytes(b"\n".join(lines))
    report = verify_directory(path, since_checkpoint=True)
    assert [p.kind for p in report.problems] == ["manifest"]


def test_without_a_recorded_state_since_checkpoint_checks_everything(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _grow(path, 0)
    report = verify_directory(path, since_checkpoint=True)
    assert report.ok and report.events_checked == 60
    assert any("checked everything" in n for n in report.notes)


@pytest.mark.parametrize("args", [["--since-checkpoint"], ["--jobs", "1"]])
def test_the_cli_passes_the_options(tmp_path: Path, args: list[str]) -> None:
    from click.testing import CliRunner

    from ledger.cli.main import cli

    path = tmp_path / "d"
    _grow(path, 0)
    result = CliRunner().invoke(cli, ["--data", str(path), "ledger", "verify", *args])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(cli, ["--data", str(path), "ledger", "verify", "--jobs", "0"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
