"""Exports: a project's events, in ``seq`` order, optionally with start <= ts < end, as a
stream of Arrow record batches and of CSV, JSON lines or Parquet bytes. Columns are the
stored event fields (``ts`` and ``recorded_at`` as UTC timestamps, ``metadata`` as JSON
text, ``leaf_hash`` as hex), so a third party can recompute each leaf hash from an export.

Memory stays bounded whatever the size of the log: the log's seq space is read one
window of ``EXPORT_WINDOW`` seqs at a time (one DuckDB query each, over only the segments
whose seq range meets the window, so each sort is of one window), its rows are fetched
``BATCH_ROWS`` at a time and each batch is encoded and handed on before the next is read.
The stream has a DuckDB cursor of its own, closed when the stream ends or is closed (a
client that goes away mid-export); it holds no lock, so writers never wait for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ledger.model.dates import utc_days
from ledger.model.dimensions import column_name, quote_ident, where_sql
from ledger.model.schema import ROW_FIELDS
from projections.events import ENTRY_KINDS
from projections.snapshot import (
    Snapshot,
    names_leaf_hash,
    own_cursor,
    scans,
    source_sql,
    tenant_tail,
)

MAX_EXPORT_ROWS = 5_000_000
EXPORT_WINDOW = 16_384  # seqs read (and sorted) by one query
BATCH_ROWS = 4_096  # rows fetched, encoded and sent at a time
JSONL_ROWS = 512  # rows made Python objects at a time (kilobytes each)
PARQUET_ROW_GROUP = 131_072  # rows of one row group of a Parquet export

_COLUMNS = ", ".join(
    "lower(hex(leaf_hash)) AS leaf_hash" if c == "leaf_hash"
    else "cost_nanos / 1e9 AS cost, cost_nanos" if c == "cost_nanos" else c
    for c in ROW_FIELDS)


def export_batches(snapshot: Snapshot, tenant: str, *, start: datetime | None = None,
                   end: datetime | None = None, limit: int = MAX_EXPORT_ROWS,
                   window: int = EXPORT_WINDOW, columns: str = _COLUMNS,
                   kinds: str = ENTRY_KINDS,
                   tables: dict[str, pa.Table] | None = None,
                   where: dict[str, str] | None = None) -> Iterator[pa.RecordBatch]:
    """The tenant's events (at most ``limit`` rows) in ``seq`` order, a batch at a time.
    The first batch always comes (empty when there is nothing to export): it carries the
    schema. ``columns`` is the SQL select list over the stored event columns (another
    shape of row, e.g. ``projections.focus``), ``kinds`` the predicate on the entries
    exported and ``tables`` Arrow tables it may read, registered under their names.
    ``where``: only events whose metadata matches (``ledger.model.dimensions``; read from
    the declared columns where segments have them)."""
    clauses, params = [kinds], []
    keys = tuple(where or ())
    if where:
        clauses.append(where_sql(where, {k: quote_ident(column_name(k)) for k in keys}))
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start.astimezone(UTC))
    if end is not None:
        clauses.append("ts < ?")
        params.append(end.astimezone(UTC))
    first_day, last_day = utc_days(start, end)
    tail = tenant_tail(snapshot, tenant, leaves=names_leaf_hash(columns))
    tail_seqs = (None if tail is None else
                 (pc.min(tail.column("seq")).as_py(), pc.max(tail.column("seq")).as_py()))
    where = " AND ".join(clauses)
    left = limit
    with own_cursor() as cur:
        if tail is not None:
            cur.register("export_tail", tail)
        for name, table in (tables or {}).items():
            cur.register(name, table)
        yield _empty_batch(cur, columns)
        for lo in range(0, snapshot.sizes.get(tenant, 0), window):
            hi = lo + window  # this window: lo <= seq < hi
            files = snapshot.files(tenant, first_day=first_day, last_day=last_day,
                                   seq_lo=lo, seq_hi=hi - 1)
            in_tail = tail_seqs is not None and tail_seqs[0] < hi and tail_seqs[1] >= lo
            if not files and not in_tail:
                continue
            with scans(cur, snapshot) as scan:
                src = source_sql(files, "export_tail" if in_tail else None, keys=keys,
                                 mixed=tenant in snapshot.dimensioned, scan=scan)
                reader = cur.sql(
                    f"SELECT {columns} FROM ({src}) WHERE {where} AND seq >= {lo} "
                    f"AND seq < {hi} ORDER BY seq", params=params).to_arrow_reader(BATCH_ROWS)
                for batch in reader:
                    if left <= 0:
                        return
                    if batch.num_rows > left:
                        batch = batch.slice(0, left)
                    left -= batch.num_rows
                    yield batch


def _empty_batch(cur: Any, columns: str) -> pa.RecordBatch:
    """No rows, with the schema of an export's batches."""
    from ledger.storage.segments import rows_to_table

    cur.register("export_empty", rows_to_table([]))
    try:
        table = cur.sql(f"SELECT {columns} FROM export_empty").to_arrow_table()
    finally:
        cur.unregister("export_empty")
    return pa.RecordBatch.from_pylist([], schema=table.schema)


def export_chunks(batches: Iterator[pa.RecordBatch], format: str) -> Iterator[bytes]:
    """``batches`` (``export_batches``) encoded as ``format`` (csv, jsonl or parquet),
    a chunk of bytes per batch (Parquet: per row group); closing the stream closes
    ``batches``."""
    encode = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet}[format]
    with contextlib.closing(batches):  # type: ignore[type-var]
        yield from (chunk for chunk in encode(batches) if chunk)


def _jsonl(batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    for batch in batches:
        out = bytearray()
        # Rows as Python dicts cost a kilobyte each: a few at a time. Each line is copied
        # out at once: orjson's answer sits in a larger allocation (several kilobytes),
        # and keeping thousands of them alive cost ~10 KB per event.
        for start in range(0, batch.num_rows, JSONL_ROWS):
            for row in batch.slice(start, JSONL_ROWS).to_pylist():
                for key in ("ts", "recorded_at"):
                    if row[key] is not None:
                        row[key] = row[key].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                out += orjson.dumps(row)
                out += b"\n"
        yield bytes(out)


class _Pending:
    """A write-only file whose bytes are taken out as they are written (what an Arrow
    writer writes into while the export streams)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self.parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        """Nothing to do: the stream takes the parts as they are written."""

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _csv(batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    first = next(batches)
    sink = _Pending()
    with pacsv.CSVWriter(sink, first.schema) as writer:  # the header, then the rows
        writer.write_batch(first)
        yield sink.take()
        for batch in batches:
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()


def _parquet(batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    first = next(batches)
    sink = _Pending()
    with pq.ParquetWriter(sink, first.schema, compression="zstd") as writer:
        yield sink.take()  # the file's magic: the answer starts at once
        group, rows = [first], first.num_rows
        for batch in batches:
            group.append(batch)
            rows += batch.num_rows
            if rows >= PARQUET_ROW_GROUP:
                writer.write_table(pa.Table.from_batches(group))
                group, rows = [], 0
                yield sink.take()
        if rows:
            writer.write_table(pa.Table.from_batches(group, schema=first.schema))
    yield sink.take()
