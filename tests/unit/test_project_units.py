"""Each project is its own unit (``projects/<t>/``: lock, journal, manifest, index, tree)
while its segment files stay in the one hive-partitioned dataset; cleanup of unlisted
files touches only the opener's own partitions and only names the ledger writes."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.storage.layout import DataDir
from tests.conftest import usage


def _segments(events: Path) -> set[str]:
    return {str(p.relative_to(events)) for p in events.rglob("*.parquet")}


def test_two_directories_sharing_one_events_folder_never_delete_each_others_files(
        tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    two.mkdir(mode=0o700)
    with Ledger(one, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=f"a{i}") for i in range(3)], tenant="alpha")
    os.symlink(one / "events", two / "events")  # the second directory shares the folder
    for round_ in range(3):
        with Ledger(two, pricer=None, checkpoint_interval=None) as led:
            led.append(usage(event_id=f"b{round_}"), tenant="beta")
        with Ledger(one, pricer=None, checkpoint_interval=None) as led:
            led.append(usage(event_id=f"a-more{round_}"), tenant="alpha")
            assert led.count("alpha") == 4 + round_
    assert verify_directory(one).ok and verify_directory(two).ok
    shared = _segments(one / "events")
    assert {p.split("/")[0] for p in shared} == {"tenant=alpha", "tenant=beta"}
    with Ledger(two, pricer=None, checkpoint_interval=None) as led:
        assert led.count("beta") == 3
    # Outside engines read the one folder: both directories' events.
    rows = duckdb.sql(f"SELECT tenant, count(*) FROM read_parquet('{one}/events/**/*.parquet',"
                      " hive_partitioning = true) GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [("alpha", 6), ("beta", 3)]


def test_only_leftovers_of_the_projects_own_partitions_and_names_are_removed(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        led.append(usage(event_id="x"), tenant="alpha")
    part = data / "events" / "tenant=alpha" / "date=2025-10-01"
    part.mkdir(parents=True, exist_ok=True)
    leftover = part / "seg-00000009-0123456789ab.parquet"  # an unfinished seal of its own
    temporary = part / ".seg-00000009-0123456789ab.parquet.tmp"
    foreign = part / "part-00000.parquet"  # some other tool's file
    elsewhere = data / "events" / "tenant=gamma" / "seg-00000001-0123456789ab.parquet"
    elsewhere.parent.mkdir(parents=True)
    for p in (leftover, temporary, foreign, elsewhere):
        p.write_bytes(b"not committed")
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        assert led.count("alpha") == 1
    assert not leftover.exists() and not temporary.exists()
    assert foreign.exists() and elsewhere.exists()  # not its names, not its project


def test_a_project_unit_holds_its_own_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        led.append(usage(), tenant="007")
        led.append(usage(), tenant="7")
        assert led.size("nope") == 0 and led.get("nope", "x") is None
    layout = DataDir(data)
    assert layout.project_names() == ["007", "7"]  # reads of "nope" created nothing
    for name in ("007", "7"):
        unit = layout.project(name)
        assert unit.manifest.exists() and unit.index.exists() and unit.lock.exists()
        records = unit.manifest.read_text().splitlines()
        assert records and all(f'"tenant":"{name}"' in r for r in records)
    assert not layout.manifest.exists() and not layout.journal.exists()


def test_read_commands_run_beside_a_live_writer_without_changing_anything(
        tmp_path: Path) -> None:
    """`usage report` and `usage export` open a directory another process writes
    read-only: its sealed calls, no lock, nothing changed; writes are still refused."""
    import json

    from ledger.errors import LedgerLockedError
    from tests.support.cli import llmring

    data = tmp_path / "data"
    with Ledger(data, pricer=None, checkpoint_interval=None) as writer:
        writer.append_many([usage(event_id=f"s{i}") for i in range(4)], tenant="alpha")
        writer.flush()
        writer.append(usage(event_id="unsealed"), tenant="alpha")
        writer.checkpoint("alpha")  # (as a server does: the origin and key exist)
        before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
        report = llmring(data, "--project", "alpha", "usage", "report", "--json")
        assert report.exit_code == 0, report.output
        assert json.loads(report.stdout)["total"]["calls"] == 4  # the sealed ones
        assert "sealed segments only" in report.stderr
        export = llmring(data, "--project", "alpha", "usage", "export", "--format", "jsonl")
        assert export.exit_code == 0 and len(export.stdout.splitlines()) == 4
        assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
        refused = llmring(data, "--project", "alpha", "record", "--provider", "p",
                          "--model", "m", "--cost", "0")
        assert refused.exit_code == 2 and "in use by another process" in refused.stderr
        with Ledger(data, read_only=True) as reader:
            assert reader.size("alpha") == 4
            with pytest.raises(LedgerLockedError):  # a read-only ledger takes no write
                reader.append(usage(), tenant="alpha")
        assert writer.count("alpha") == 5
