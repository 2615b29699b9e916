"""Exports: a project's events as an Arrow table (for CSV, JSON lines or Parquet), in
``seq`` order, optionally with start <= ts < end. Columns are the stored event fields
(``ts`` and ``recorded_at`` as UTC timestamps, ``metadata`` as JSON text, ``leaf_hash``
as hex), so a third party can recompute each leaf hash from an export."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from ledger.model.dates import utc_days
from ledger.model.schema import ROW_FIELDS
from projections.events import ENTRY_KINDS
from projections.snapshot import Snapshot, cursor, source_sql, tenant_tail

MAX_EXPORT_ROWS = 5_000_000

_COLUMNS = ", ".join(
    "lower(hex(leaf_hash)) AS leaf_hash" if c == "leaf_hash"
    else "cost_nanos / 1e9 AS cost, cost_nanos" if c == "cost_nanos" else c
    for c in ROW_FIELDS)


def export_table(snapshot: Snapshot, tenant: str, *, start: datetime | None = None,
                 end: datetime | None = None, limit: int = MAX_EXPORT_ROWS) -> pa.Table:
    """The tenant's events (at most ``limit`` rows) as one Arrow table."""
    clauses, params = [ENTRY_KINDS], []
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start.astimezone(UTC))
    if end is not None:
        clauses.append("ts < ?")
        params.append(end.astimezone(UTC))
    first_day, last_day = utc_days(start, end)
    files = snapshot.files(tenant, first_day=first_day, last_day=last_day)
    tail = tenant_tail(snapshot, tenant)
    src = source_sql(files, "export_tail" if tail is not None else None)
    if not src:
        return _empty()
    sql = (f"SELECT {_COLUMNS} FROM ({src}) WHERE {' AND '.join(clauses)} "
           f"ORDER BY seq LIMIT {int(limit)}")
    cur = cursor()
    if tail is not None:
        cur.register("export_tail", tail)
    try:
        return cur.sql(sql, params=params).to_arrow_table()
    finally:
        if tail is not None:
            cur.unregister("export_tail")


def _empty() -> pa.Table:
    from ledger.storage.segments import rows_to_table

    t = rows_to_table([])
    cur = cursor()
    cur.register("export_empty", t)
    try:
        return cur.sql(f"SELECT {_COLUMNS} FROM export_empty").to_arrow_table()
    finally:
        cur.unregister("export_empty")
