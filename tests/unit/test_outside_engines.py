"""Outside engines reading the data directory as-is (hive layout) see exactly the live set:
files a compaction replaced disappear as soon as no snapshot of this process names them,
recent events reach the segments on a timer, and all-digit project names stay text
through each documented reader call (docs/integrations.md)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from ledger import Ledger
from tests.conftest import usage

HIVE_STRINGS = ds.partitioning(pa.schema([("tenant", pa.string()), ("date", pa.string())]),
                               flavor="hive")


def _arrow_count(root: Path) -> int:
    """Rows of the events folder as pyarrow.dataset reads it (docs/integrations.md)."""
    return ds.dataset(root / "events", format="parquet", partitioning=HIVE_STRINGS).count_rows()


def _duckdb_count(root: Path) -> int:
    return duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{root}/events/**/*.parquet', "
        "hive_partitioning = true, hive_types = {'tenant': VARCHAR, 'date': VARCHAR})"
    ).fetchall()[0][0]


def _sealed_batches(led: Ledger, batches: int, per: int, prefix: str = "b") -> None:
    for b in range(batches):
        led.append_many([usage(event_id=f"{prefix}{b}-{i}", ts="2025-10-01T12:00:00Z")
                         for i in range(per)], tenant="a")
        led.flush()


def test_after_compaction_outside_engines_count_exactly_the_live_events(tmp_path: Path) -> None:
    """No reader holds the replaced files: they are gone when compact() returns, so
    pyarrow.dataset and DuckDB over the directory count each event once."""
    root = tmp_path / "d"
    with Ledger(root, pricer=None, seal_interval=None) as led:
        _sealed_batches(led, 4, 25)
        assert _arrow_count(root) == _duckdb_count(root) == 100
        assert led.compact().merged == 4
        files = sorted(p.relative_to(root).as_posix() for p in (root / "events").rglob("*")
                       if p.is_file())
        assert files == sorted(s.path for s in led.manifest.state.segments())
        assert _arrow_count(root) == _duckdb_count(root) == 100
        assert led.count("a") == 100


def test_a_snapshot_taken_before_compaction_reads_until_released(tmp_path: Path) -> None:
    """A snapshot keeps the files it names: it still reads every event after a compaction
    retired them; releasing it (or dropping it) deletes them."""
    from projections import events as pe

    root = tmp_path / "d"
    with Ledger(root, pricer=None, seal_interval=None) as led:
        _sealed_batches(led, 3, 10)
        old = {s.path for s in led.manifest.state.segments()}
        with led.snapshot() as before:
            led.compact()
            assert all((root / p).exists() for p in old)
            assert pe.count_events(before, "a") == 30
            assert [e.event_id for e in pe.list_events(before, "a", limit=5)] == [
                f"b0-{i}" for i in range(5)]
        assert not any((root / p).exists() for p in old)
        assert led.readers.waiting() == []
        assert _duckdb_count(root) == 30

        _sealed_batches(led, 2, 10, prefix="c")
        dropped = led.snapshot()
        led.compact()
        assert led.readers.waiting()
        del dropped
        gc.collect()
        assert led.readers.waiting() == []
        assert _arrow_count(root) == led.count("a") == 50


def test_a_snapshot_released_by_the_collector_inside_the_readers_lock_does_not_deadlock(
        tmp_path: Path) -> None:
    """A lease let go while the registry's lock is held (the collector can run a
    finalizer anywhere) is applied once the lock is free: its retired files go."""
    root = tmp_path / "d"
    with Ledger(root, pricer=None, seal_interval=None) as led:
        _sealed_batches(led, 2, 5)
        snap = led.snapshot()
        led.compact()
        waiting = led.readers.waiting()
        assert waiting
        with led.readers._lock:
            snap.release()  # queued: the lock is taken
            assert all((root / p).exists() for p in waiting)
        assert led.readers.waiting() == []
        assert not any((root / p).exists() for p in waiting)


def test_the_tail_is_sealed_once_its_oldest_event_waited_seal_interval(tmp_path: Path) -> None:
    """With a seal interval, a background seal writes recent events to segments (where
    outside engines read them) without reaching seal_rows or closing."""
    root = tmp_path / "d"
    with Ledger(root, pricer=None, seal_interval=0.2) as led:
        led.append_many([usage(ts="2025-10-01T12:00:00Z") for _ in range(3)], tenant="a")
        deadline = time.monotonic() + 10
        while led.tail.rows() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert led.tail.rows() == 0
        assert _duckdb_count(root) == 3
        led.append(usage(ts="2025-10-01T12:00:00Z"), tenant="a")  # the timer starts again
        while led.tail.rows() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _arrow_count(root) == 4


def _two_projects(root: Path) -> None:
    with Ledger(root, pricer=None, seal_interval=None) as led:
        led.append_many([usage(ts="2025-10-01T12:00:00Z") for _ in range(2)], tenant="007")
        led.append_many([usage(ts="2025-10-01T12:00:00Z") for _ in range(3)], tenant="7")


def test_all_digit_projects_stay_apart_in_pyarrow_dataset(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_projects(root)
    table = ds.dataset(root / "events", format="parquet", partitioning=HIVE_STRINGS).to_table(
        columns=["tenant", "date"])
    assert table.schema.field("tenant").type == pa.string()
    counts: dict[str, int] = {}
    for t in table.column("tenant").to_pylist():
        counts[t] = counts.get(t, 0) + 1
    assert counts == {"007": 2, "7": 3}
    assert set(table.column("date").to_pylist()) == {"2025-10-01"}


def test_all_digit_projects_stay_apart_in_duckdb(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_projects(root)
    rows = duckdb.sql(
        f"SELECT tenant, typeof(tenant), count(*) FROM read_parquet("
        f"'{root}/events/**/*.parquet', hive_partitioning = true, "
        "hive_types = {'tenant': VARCHAR, 'date': VARCHAR}) GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [("007", "VARCHAR", 2), ("7", "VARCHAR", 3)]
