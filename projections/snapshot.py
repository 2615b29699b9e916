"""Snapshots: what a query reads, and the DuckDB relation that reads it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa

_local = threading.local()
_base: duckdb.DuckDBPyConnection | None = None
_base_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class SegmentRef:
    path: str  # absolute
    date: str  # YYYY-MM-DD (UTC) of every event in the file
    seq_min: int
    seq_max: int
    rows: int


@dataclass(frozen=True)
class Snapshot:
    """Live segments per tenant, the unsealed tail (EVENT_SCHEMA + ``tenant``), and each
    tenant's log size."""

    segments: dict[str, list[SegmentRef]]
    tail: pa.Table
    sizes: dict[str, int] = field(default_factory=dict)
    # Receipt entries (``ledger.storage.receipt_entries``): sealed files per tenant and the unsealed
    # tail (with a ``tenant`` column), and each tenant's receipt-entry seqs, ascending.
    receipt_files: dict[str, list[str]] = field(default_factory=dict)
    membership_files: dict[str, list[str]] = field(default_factory=dict)
    receipt_tail: pa.Table | None = None
    membership_tail: pa.Table | None = None
    receipt_seqs: dict[str, list[int]] = field(default_factory=dict)

    def files(self, tenant: str, *, first_day: date | None = None,
              last_day: date | None = None, seq_lo: int | None = None,
              seq_hi: int | None = None) -> list[str]:
        """Segment files of ``tenant`` that can hold events in the given day / seq range."""
        out = []
        for s in self.segments.get(tenant, []):
            if first_day is not None and s.date < first_day.isoformat():
                continue
            if last_day is not None and s.date > last_day.isoformat():
                continue
            if seq_lo is not None and s.seq_max < seq_lo:
                continue
            if seq_hi is not None and s.seq_min > seq_hi:
                continue
            out.append(s.path)
        return out


def cursor() -> duckdb.DuckDBPyConnection:
    """A DuckDB cursor for this thread (cursors of one in-memory database)."""
    global _base
    cur = getattr(_local, "cursor", None)
    if cur is None:
        with _base_lock:
            if _base is None:
                _base = duckdb.connect(":memory:")
                _base.execute("SET TimeZone = 'UTC'")
            cur = _base.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        _local.cursor = cur
    return cur


@contextmanager
def own_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB cursor of its own, closed at the end: for a query whose results are read
    over time, perhaps from several threads in turn (a streamed export), which the
    thread's cursor (``cursor``) would lose to the next query run on that thread."""
    cursor()  # the database exists
    assert _base is not None
    with _base_lock:
        cur = _base.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")
        yield cur
    finally:
        cur.close()


def _literal(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def source_sql(files: list[str], tail_name: str | None) -> str:
    """SQL for the union of ``files`` and the registered tail (already tenant-filtered)."""
    parts = []
    if files:
        listed = ", ".join(_literal(f) for f in files)
        parts.append(f"SELECT * FROM read_parquet([{listed}], hive_partitioning = false)")
    if tail_name is not None:
        parts.append(f"SELECT * EXCLUDE (tenant) FROM {tail_name}")
    if not parts:
        return ""
    return " UNION ALL BY NAME ".join(parts) if len(parts) > 1 else parts[0]


def tenant_tail(snapshot: Snapshot, tenant: str) -> pa.Table | None:
    tail = snapshot.tail
    if tail.num_rows == 0:
        return None
    import pyarrow.compute as pc

    mask = pc.equal(tail.column("tenant"), tenant)
    filtered = tail.filter(mask)
    return filtered if filtered.num_rows else None


def run(snapshot: Snapshot, tenant: str, sql: str, params: list | dict | None = None, *,
        first_day: date | None = None, last_day: date | None = None,
        seq_lo: int | None = None, seq_hi: int | None = None) -> list[tuple] | None:
    """Run ``sql`` (with ``{src}`` standing for the tenant's events) over the snapshot and
    fetch every row. Returns None when the tenant has no events at all in range."""
    files = snapshot.files(tenant, first_day=first_day, last_day=last_day, seq_lo=seq_lo,
                           seq_hi=seq_hi)
    tail = tenant_tail(snapshot, tenant)
    src = source_sql(files, "ledger_tail" if tail is not None else None)
    if not src:
        return None
    cur = cursor()
    if tail is not None:
        cur.register("ledger_tail", tail)
    try:
        return cur.execute(sql.format(src=f"({src})"), params or []).fetchall()
    finally:
        if tail is not None:
            cur.unregister("ledger_tail")
