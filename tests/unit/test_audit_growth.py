"""The audit at scale: a full verify over several processes finds exactly what one
process finds; `--since-checkpoint` checks only what is new since the last passing
verify, chained to it, and a full verify still checks everything."""

from __future__ import annotations

import hashlib
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
from ledger.core.audit import verify_directory
from ledger.receipts.issuance import Receipts
from tests.conftest import usage
from tests.support.tamper import rewrite_segment


def _grow(path: Path, batch: int, tenants: tuple[str, ...] = ("acme", "other")) -> None:
    """One more sealed batch per project (30 events over three days) and a receipt."""
    with Ledger(path, pricer=None) as led:
        for tenant in tenants:
            led.append_many([usage(event_id=f"{tenant}{batch}-{i}", input_tokens=10 + i,
                                   ts=f"2025-10-0{1 + i % 3}T12:00:00Z")
                             for i in range(30)], tenant=tenant)
        led.flush()
        Receipts(led).generate("acme", since_last_receipt=True)


def _manifest(path: Path, tenant: str = "acme") -> Path:
    """The project's manifest (each project's unit has its own)."""
    return path / "projects" / tenant / "manifest.jsonl"


def _segments_added_by(path: Path, record: int) -> list[Path]:
    """The event segments acme's manifest records add from ``record`` on."""
    lines = _manifest(path).read_bytes().splitlines()
    return [path / d["path"] for r in map(orjson.loads, lines[record:])
            for d in r["add"] if d["kind"] == "events"]


def _rewrite_cost(path: Path, segment: Path) -> None:
    """Double the costs in a segment and make the manifest agree (the chain re-linked):
    only recomputing the leaf hashes finds it."""
    table = pq.read_table(segment)
    cost = table.column("cost_nanos")
    table = table.set_column(table.schema.get_field_index("cost_nanos"), "cost_nanos",
                             pc.multiply(cost, pa.scalar(2, cost.type)))
    rewrite_segment(path, segment, table)


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
    records = len(_manifest(path).read_bytes().splitlines())
    _grow(path, 1)
    _rewrite_cost(path, _segments_added_by(path, records)[0])
    report = verify_directory(path, since_checkpoint=True)
    assert "leaf-hash" in {p.kind for p in report.problems}


def test_since_checkpoint_finds_new_tree_leaves_that_differ(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _grow(path, 0)
    assert verify_directory(path).ok
    _grow(path, 1)
    level0 = path / "projects" / "other" / "tree" / "level-0.bin"
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
    manifest = _manifest(path)
    lines = manifest.read_bytes().split(b"\n")
    last = state["units"]["acme"]["manifest"]["count"] - 1
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


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=300),
       st.lists(st.integers(min_value=0, max_value=600), max_size=6))
def test_roots_extended_from_a_frontier_equal_the_roots_over_every_leaf(
        size: int, new: int, picks: list[int]) -> None:
    """``_extend`` (level by level from the recorded perfect subtrees) gives the roots
    and the frontier RFC 9162 gives over all the leaves."""
    from ledger.core.audit_since import _extend
    from ledger.tlog.merkle import perfect_subtrees, root_from_leaf_hashes, roots_at_sizes

    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size + new)]

    def frontier(n: int) -> list[tuple[int, bytes]]:
        return [((e - s).bit_length() - 1, root_from_leaf_hashes(leaves[s:e]))
                for s, e in perfect_subtrees(0, n)]

    n = size + new
    sizes = {size + p % (new + 1) for p in picks} | {n}
    packed = np.frombuffer(b"".join(leaves[size:]), np.uint8).reshape(-1, 32)
    roots, after = _extend(frontier(size), size, packed, sizes)
    assert roots == roots_at_sizes(leaves, sizes)
    assert after == frontier(n)


def _segment_table(tmp_path: Path) -> tuple[pa.Table, str]:
    """The rows of one sealed event segment of 60 events (metadata on some)."""
    path = tmp_path / "seg"
    with Ledger(path, pricer=None) as led:
        led.append_many([usage(event_id=f"e-{i}", input_tokens=10 + i,
                               ts="2025-10-01T12:00:00Z",
                               **({"metadata": {"team": f"t{i % 3}"}} if i % 2 else {}))
                         for i in range(60)], tenant="acme")
    (segment,) = _segments_added_by(path, 0)
    return pq.read_table(segment), "acme"


def _both_ways(table: pa.Table, tenant: str) -> tuple[dict, dict]:
    from ledger.core.audit import AuditReport, _check_leaves, _check_leaves_one_by_one

    bulk, rows = AuditReport(), AuditReport()
    _check_leaves(table, tenant, "seg", bulk)
    _check_leaves_one_by_one(table, tenant, "seg", rows)
    rows.events_checked += table.num_rows
    return bulk.as_dict(), rows.as_dict()


def test_the_bulk_leaf_check_reports_exactly_what_the_row_by_row_check_reports(
        tmp_path: Path) -> None:
    """Every event's leaf hash is recomputed in bulk; the rows that differ are then
    checked one by one, so the findings are the row-by-row check's, each in its place."""
    table, tenant = _segment_table(tmp_path)
    bulk, rows = _both_ways(table, tenant)
    assert bulk == rows and bulk["ok"] and bulk["events_checked"] == 60

    def put(t: pa.Table, name: str, values: list) -> pa.Table:
        i = t.schema.get_field_index(name)
        return t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))

    cost = table.column("cost_nanos").to_pylist()
    meta = table.column("metadata").to_pylist()
    leaf = table.column("leaf_hash").to_pylist()
    tampered = put(table, "cost_nanos", [c * 2 if i in (3, 40) else c
                                         for i, c in enumerate(cost)])
    tampered = put(tampered, "metadata", [m.replace("t", "T") if i == 5 and m else m
                                          for i, m in enumerate(meta)])
    tampered = put(tampered, "leaf_hash", [None if i == 7 else h for i, h in enumerate(leaf)])
    bulk, rows = _both_ways(tampered, tenant)
    assert bulk == rows
    assert [p["where"].split()[2] for p in bulk["problems"]] == ["3", "5", "7", "40"]

    every = put(table, "input_tokens", [t + 1 for t in table.column("input_tokens").to_pylist()])
    bulk, rows = _both_ways(every, tenant)  # past 20 differing rows: one summary
    assert bulk == rows and bulk["problems"][-1]["message"].startswith("40 more events")

    strings = table.set_column(table.schema.get_field_index("input_tokens"), "input_tokens",
                               table.column("input_tokens").cast(pa.string()))
    bulk, rows = _both_ways(strings, tenant)  # not the stored types: row by row throughout
    assert bulk == rows and not bulk["ok"]


def _checkpoints_file(path: Path, tenant: str = "acme") -> Path:
    (found,) = [p for p in (path / "checkpoints").glob("*.jsonl")
                if p.name.endswith(f"%2F{tenant}.jsonl")]
    return found


def test_since_checkpoint_reads_only_the_checkpoints_signed_since(tmp_path: Path) -> None:
    """Each checkpoints file is read from the last line checked: an incremental verify
    costs the new checkpoints, not the history's; a new line that is not a validly
    signed checkpoint is found, named by its line number in the file."""
    path = tmp_path / "d"
    _grow(path, 0)
    full = verify_directory(path)
    assert full.ok and full.checkpoints_checked > 0
    counted = sum(len(p.read_bytes().splitlines()) for p in (path / "checkpoints").iterdir())
    _grow(path, 1)
    grown = sum(len(p.read_bytes().splitlines()) for p in (path / "checkpoints").iterdir())
    since = verify_directory(path, since_checkpoint=True)
    assert since.ok and grown > counted
    assert since.checkpoints_checked == grown - counted
    assert verify_directory(path, since_checkpoint=True).checkpoints_checked == 0

    cpfile = _checkpoints_file(path)
    lines = cpfile.read_bytes().splitlines()
    forged = orjson.loads(lines[-1])
    forged["note"] = forged["note"].replace("\n", "\n\n", 1)
    with open(cpfile, "ab") as fh:
        fh.write(orjson.dumps(forged) + b"\n")
    report = verify_directory(path, since_checkpoint=True)
    assert [(p.kind, p.where.rsplit(" ", 1)[-1]) for p in report.problems] == [
        ("checkpoint", str(len(lines) + 1))]


def test_an_altered_checkpoints_file_is_read_whole_again(tmp_path: Path) -> None:
    """If the last line checked is not there as it was, the whole file is read."""
    path = tmp_path / "d"
    _grow(path, 0)
    assert verify_directory(path).ok
    cpfile = _checkpoints_file(path)
    data = cpfile.read_bytes()
    cpfile.write_bytes(b"\n" + data)  # every line one further
    since = verify_directory(path, since_checkpoint=True)  # the other project's: none
    assert since.ok and since.checkpoints_checked == len(data.splitlines()) > 0
