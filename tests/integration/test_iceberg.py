"""The Iceberg table ``ledger.events`` (docs/integrations.md): engines read the ledger by
table name and reproduce ``llmring usage report --by model,day`` exactly; the table
follows every seal and compaction; ``ledger verify`` checks it against the manifest; a
failed publish loses nothing and is caught up on the next open.

Spark reads the table by name through Iceberg's JDBC catalog (``tests/support/
iceberg_spark.py``), and the directory as-is with the documented partition setting;
it is skipped only when no Java runtime is installed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.storage.iceberg import IDENTIFIER, catalog_properties, read_published
from ledger.storage.layout import DataDir
from tests.conftest import usage
from tests.support import serverproc
from tests.support.cli import as_json, llmring

PROJECTS = ("007", "7", "acme")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4")
FIELDS = ("model", "day", "calls", "input_tokens", "output_tokens", "cost_nanos",
          "unpriced_calls")


def _events(project: int, batch: int) -> list[dict[str, Any]]:
    return [usage(ts=f"2025-10-{1 + (i + batch) % 5:02d}T{(7 * i) % 24:02d}:30:00Z",
                  model=MODELS[(i + project) % 3], input_tokens=100 + i,
                  output_tokens=project + batch, cost=f"0.000{1 + i % 9}")
            for i in range(40 + 7 * project)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three projects (two of them all digits) over five days: sealed in several
    batches, compacted, then more seals: the table's history has adds and removals."""
    root = tmp_path_factory.mktemp("iceberg") / "data"
    with Ledger(root, pricer=None, seal_interval=None, iceberg=True) as led:
        for batch in range(4):
            for p, project in enumerate(PROJECTS):
                led.append_many(_events(p, batch), tenant=project)
            led.flush()
        assert led.compact().merged
        for p, project in enumerate(PROJECTS):
            led.append_many(_events(p, 9), tenant=project)
    return root


def _report(data: Path, project: str) -> list[tuple]:
    out = as_json(llmring(data, "--project", project, "usage", "report", "--by", "model,day",
                          "--tz", "UTC", "--json"))
    return [tuple(row[f] for f in FIELDS) for row in out["rows"]]


def _table(data: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("ledger", **catalog_properties(DataDir(data))).load_table(IDENTIFIER)


ROLLUP_SQL = """
    SELECT model, strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d') AS day, count(*),
           sum(input_tokens), sum(output_tokens), sum(cost_nanos),
           count(*) FILTER (WHERE cost_source = 'unpriced')
    FROM events WHERE tenant = ? GROUP BY ALL ORDER BY model, day"""


def test_pyiceberg_reads_the_table_by_name_and_reproduces_the_report(data: Path) -> None:
    """``catalog.load_table('ledger.events').scan()`` into DuckDB gives each project's
    model × day rollup exactly as ``usage report`` (tenant filled from the partition
    values, as text: 007 and 7 stay apart)."""
    events = _table(data).scan().to_arrow()
    con = duckdb.connect()
    con.register("events", events)
    assert con.execute("SELECT DISTINCT typeof(tenant) FROM events").fetchall() == [
        ("VARCHAR",)]
    for project in PROJECTS:
        got = [tuple(r) for r in con.execute(ROLLUP_SQL, [project]).fetchall()]
        assert got == _report(data, project), project


def test_the_table_lists_exactly_the_live_segments_and_verify_agrees(data: Path) -> None:
    """After seals and a compaction the current snapshot's files are the manifest's live
    event segments; ``ledger verify`` checks that (no problem, no note)."""
    published = read_published(DataDir(data))
    assert published is not None
    live = {f"file://{data}/{p.relative_to(data).as_posix()}"
            for p in (data / "events").rglob("*.parquet")}
    assert published.files == live
    report = verify_directory(data)
    assert report.ok, report.problems
    assert not [n for n in report.notes if "Iceberg" in n]


def test_verify_reports_a_table_that_differs_from_the_manifest(tmp_path: Path) -> None:
    """A file dropped from the table behind the ledger's back is an ``iceberg`` problem."""
    root = tmp_path / "data"
    with Ledger(root, pricer=None, seal_interval=None, iceberg=True) as led:
        for b in range(2):
            led.append_many(_events(0, b), tenant="a")
            led.flush()
    table = _table(root)
    victim = next(iter(table.scan().plan_files())).file
    with table.transaction() as tx, tx.update_snapshot().overwrite() as op:
        op.delete_data_file(victim)
    report = verify_directory(root)
    assert [p.kind for p in report.problems] == ["iceberg"]
    assert "does not list the live event segment" in report.problems[0].message


def test_a_failed_publish_loses_nothing_and_is_caught_up_on_open(tmp_path: Path) -> None:
    """With the catalog unreadable the seal still commits (the manifest is the
    authority); the next open brings the table level."""
    root = tmp_path / "data"
    layout = DataDir(root)
    with Ledger(root, pricer=None, seal_interval=None, iceberg=True) as led:
        led.append_many(_events(0, 0), tenant="a")
        led.flush()
        saved = layout.iceberg_catalog.read_bytes()
        layout.iceberg_catalog.write_bytes(b"not a database" * 100)
        led.append_many(_events(0, 1), tenant="a")
        assert led.flush().events == len(_events(0, 1))
        assert led.iceberg is not None and led.iceberg.failed is not None
        layout.iceberg_catalog.write_bytes(saved)
    behind = verify_directory(root)
    assert behind.ok and any("Iceberg" in n for n in behind.notes)
    with Ledger(root, pricer=None, seal_interval=None) as led:  # on: the table exists
        records = len(led.manifest.state.records)
        assert led.count("a") == 2 * len(_events(0, 0))
    published = read_published(layout)
    assert published is not None and published.records == records
    assert verify_directory(root).ok


def test_llmring_ledger_iceberg_creates_the_table(tmp_path: Path) -> None:
    """``llmring ledger iceberg`` turns publishing on for a directory written without it."""
    root = tmp_path / "data"
    with Ledger(root, pricer=None, seal_interval=None) as led:
        led.append_many(_events(1, 0), tenant="7")
    assert read_published(DataDir(root)) is None
    out = as_json(llmring(root, "ledger", "iceberg", "--json"))
    assert out["table"] == IDENTIFIER and out["files"] == 5
    assert _table(root).scan().to_arrow().num_rows == len(_events(1, 0))


def test_a_live_server_publishes_recent_events_within_its_seal_interval(
        tmp_path: Path) -> None:
    """``llmring serve --iceberg --seal-interval 0.5``: events written over HTTP reach
    the table, read by name by another process while the server runs."""
    import httpx

    server = serverproc.start(tmp_path / "data", projects=("007",),
                              extra=("--iceberg", "--seal-interval", "0.5"))
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("007"),
                          timeout=30) as c:
            r = c.post("/api/v1/log/batch", json={"events": _events(0, 0)[:12]})
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        rows = 0
        while time.monotonic() < deadline:
            if read_published(DataDir(server.data)) is not None:
                rows = _table(server.data).scan(row_filter="tenant == '007'").count()
                if rows:
                    break
            time.sleep(0.1)
        assert rows == 12
    finally:
        assert server.stop() == 0


# -- Spark -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spark(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support import iceberg_spark

    reason = iceberg_spark.missing()
    if reason is not None:
        pytest.skip(reason)
    session = iceberg_spark.session(data, tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()


SPARK_ROLLUP = """
    SELECT tenant, model, date_format(ts, 'yyyy-MM-dd') AS day, count(*),
           sum(input_tokens), sum(output_tokens), sum(cost_nanos),
           count(CASE WHEN cost_source = 'unpriced' THEN 1 END)
    FROM ledger.ledger.events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""


def test_spark_reads_the_table_by_name_and_reproduces_the_report(data: Path,
                                                                 spark: Any) -> None:
    """Spark with Iceberg's JDBC catalog on the directory's SQLite catalog reads
    ``ledger.events`` by name and reproduces ``usage report --by model,day`` of every
    project (tenant a string from the partition values: 007 and 7 stay apart)."""
    assert dict(spark.table("ledger.ledger.events").dtypes)["tenant"] == "string"
    rows = [tuple(r) for r in spark.sql(SPARK_ROLLUP).collect()]
    for project in PROJECTS:
        assert [r[1:] for r in rows if r[0] == project] == _report(data, project), project
    assert {r[0] for r in rows} == set(PROJECTS)


def test_spark_over_the_directory_keeps_all_digit_projects_apart(data: Path,
                                                                 spark: Any) -> None:
    """The directory read as-is after a compaction, with partition type inference off
    (docs/integrations.md): each event once, 007 and 7 apart."""
    frame = spark.read.parquet(f"file://{data}/events")
    counts = {r["tenant"]: r["count"] for r in frame.groupBy("tenant").count().collect()}
    with Ledger(data, pricer=None, seal_interval=None) as led:
        assert counts == {p: led.count(p) for p in PROJECTS}
