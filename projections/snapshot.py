"""Snapshots: what a query reads, and the DuckDB relation that reads it.

The events of a project that declared dimensions (``ledger.storage.dimensions``) may sit
in segments of several shapes: with or without the derived ``meta.<key>`` columns. Such
files are read in groups of one shape each (the columns a file has are read once from its
footer; segment files never change), and a query that names metadata keys (``keys``)
gets a ``meta.<key>`` column for each from every part of the source: the stored column
where a segment has it, the value extracted from the ``metadata`` JSON elsewhere (older
segments, the unsealed tail). Both give the same text (``ledger.model.dimensions``).

Segments on object storage (a snapshot with a ``filesystem``) are read by DuckDB as Arrow
datasets over that filesystem, registered on the query's cursor for the query
(``Scans``); local ones with ``read_parquet``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from ledger.model.dimensions import column_name, extract_sql, quote_ident
from projections.tailview import BLOCK_SCHEMA, LEAF, TAIL_SCHEMA, TailView

if TYPE_CHECKING:  # imported on the first query: an idle server needs neither
    import duckdb
    from pyarrow import fs as pafs

# DuckDB's buffer pool (query state, its file cache) is bounded, so a server's memory is
# too; a query that needs more spills to DuckDB's temporary directory. The limit can be
# set with LLMRING_DUCKDB_MEMORY (a DuckDB size, e.g. "512MB").
DUCKDB_CONFIG = {"memory_limit": os.environ.get("LLMRING_DUCKDB_MEMORY", "256MB")}

_local = threading.local()
_base: duckdb.DuckDBPyConnection | None = None
_base_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class SegmentRef:
    path: str  # absolute, or ``bucket/prefix/…`` on the snapshot's filesystem
    date: str  # YYYY-MM-DD (UTC) of every event in the file
    seq_min: int
    seq_max: int
    rows: int


class Releasable(Protocol):
    def release(self) -> None: ...


@dataclass(frozen=True)
class Snapshot:
    """Live segments per tenant, each tenant's unsealed events (seq-indexed,
    ``projections.tailview``), and each tenant's log size. ``lease`` keeps the files it
    names from being deleted (a compaction retires files: ``ledger.core.readers``) until
    it is released: at the end of a ``with`` block, or when the snapshot is collected."""

    segments: dict[str, list[SegmentRef]]
    tails: dict[str, TailView] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    # Receipt entries (``ledger.storage.receipt_entries``): sealed files per tenant and the unsealed
    # tail (with a ``tenant`` column), and each tenant's receipt-entry seqs, ascending.
    receipt_files: dict[str, list[str]] = field(default_factory=dict)
    membership_files: dict[str, list[str]] = field(default_factory=dict)
    receipt_tail: pa.Table | None = None
    membership_tail: pa.Table | None = None
    receipt_seqs: dict[str, list[int]] = field(default_factory=dict)
    # Projects whose segments may carry derived dimension columns.
    dimensioned: frozenset[str] = frozenset()
    # The object store the segment files are on (None: local paths).
    filesystem: pafs.FileSystem | None = None
    lease: Releasable | None = field(default=None, repr=False, compare=False)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        """Let go of the segment files now (reading this snapshot afterwards may fail)."""
        if self.lease is not None:
            self.lease.release()

    @property
    def tail(self) -> pa.Table:
        """Every unsealed event as one table (``TAIL_SCHEMA`` plus ``tenant``)."""
        tables = [view.table().append_column(
            "tenant", pa.repeat(pa.scalar(tenant, pa.string()), view.rows))
            for tenant, view in sorted(self.tails.items()) if view.rows]
        if not tables:
            empty = TAIL_SCHEMA.empty_table()
            return empty.append_column("tenant", pa.array([], pa.string()))
        return pa.concat_tables(tables)

    def tail_rows(self, tenant: str) -> int:
        """How many of the tenant's events are unsealed."""
        view = self.tails.get(tenant)
        return view.rows if view is not None else 0

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
                import duckdb

                _base = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
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


class Scans:
    """How one query on ``cur`` reads groups of segment files: ``read_parquet`` of local
    paths, or (``filesystem`` given) an Arrow dataset over the object store, registered
    on ``cur`` under a name of its own until ``close``."""

    def __init__(self, cur: duckdb.DuckDBPyConnection | None,
                 filesystem: pafs.FileSystem | None) -> None:
        self.cur = cur
        self.filesystem = filesystem
        self.names: list[str] = []

    def __call__(self, files: list[str]) -> str:
        """A SQL FROM-source reading ``files`` (of one shape)."""
        if self.filesystem is None:
            listed = ", ".join(_literal(f) for f in files)
            return f"read_parquet([{listed}], hive_partitioning = false)"
        assert self.cur is not None, "files on object storage are read on a cursor"
        import pyarrow.dataset as pads

        name = f"ledger_segments_{id(self)}_{len(self.names)}"
        self.cur.register(name, pads.dataset(files, filesystem=self.filesystem,
                                             format="parquet"))
        self.names.append(name)
        return name

    def derived_keys(self, path: str) -> tuple[str, ...]:
        return derived_keys(path, self.filesystem)

    def close(self) -> None:
        for name in self.names:
            assert self.cur is not None
            self.cur.unregister(name)
        self.names.clear()


@contextmanager
def scans(cur: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> Iterator[Scans]:
    """The ``Scans`` of a query on ``cur`` over ``snapshot``'s segment files."""
    reader = Scans(cur, snapshot.filesystem)
    try:
        yield reader
    finally:
        reader.close()


_shapes: dict[str, tuple[str, ...]] = {}
_shapes_lock = threading.Lock()


def derived_keys(path: str, filesystem: pafs.FileSystem | None = None) -> tuple[str, ...]:
    """The metadata keys whose derived columns the segment file ``path`` holds (read once
    per path from its footer: segment files never change)."""
    with _shapes_lock:
        known = _shapes.get(path)
    if known is not None:
        return known
    import pyarrow.parquet as pq

    names = pq.read_schema(path, filesystem=filesystem).names
    keys = tuple(n[len(column_name("")):] for n in names if n.startswith(column_name("")))
    with _shapes_lock:
        if len(_shapes) >= 65_536:
            _shapes.clear()
        _shapes[path] = keys
    return keys


def source_sql(files: list[str], tail_name: str | None, *, keys: tuple[str, ...] = (),
               mixed: bool = False, scan: Scans | None = None) -> str:
    """SQL for the union of ``files`` and the registered tail (already tenant-filtered).
    ``mixed``: the files may differ in their derived columns (read by shape); ``keys``:
    metadata keys given as ``meta.<key>`` columns (module docstring); ``scan``: how the
    files are read (default: local paths)."""
    parts = []
    if scan is None:
        scan = Scans(None, None)
    if files and not (mixed or keys):
        parts.append(f"SELECT * FROM {scan(files)}")
    elif files:
        shapes: dict[tuple[str, ...], list[str]] = {}
        for f in files:
            shapes.setdefault(scan.derived_keys(f) if mixed else (), []).append(f)
        for have, group in shapes.items():
            extra = "".join(f", {extract_sql(k)} AS {quote_ident(column_name(k))}"
                            for k in keys if k not in have)
            parts.append(f"SELECT *{extra} FROM {scan(group)}")
    if tail_name is not None:
        extra = "".join(f", {extract_sql(k)} AS {quote_ident(column_name(k))}" for k in keys)
        parts.append(f"SELECT *{extra} FROM {tail_name}")
    if not parts:
        return ""
    return " UNION ALL BY NAME ".join(parts) if len(parts) > 1 else parts[0]


def tenant_tail(snapshot: Snapshot, tenant: str, *, seq_lo: int | None = None,
                seq_hi: int | None = None, leaves: bool = True) -> pa.Table | None:
    """The tenant's unsealed events with ``seq_lo <= seq <= seq_hi`` (bounds optional),
    found by the tail's seq index (no scan); None if there are none. ``leaves``: with
    their ``leaf_hash`` (read from the tree); else without that column, for SQL that
    does not name it (``UNION ALL BY NAME`` leaves it null)."""
    view = snapshot.tails.get(tenant)
    if view is None or view.rows == 0:
        return None
    columns = None if leaves else BLOCK_SCHEMA.names
    if seq_lo is None and seq_hi is None:
        return view.table(columns)
    return view.between(seq_lo, seq_hi, columns=columns)


def names_leaf_hash(sql: str) -> bool:
    """Whether ``sql`` reads ``leaf_hash`` (the tail then gives it: ``tenant_tail``)."""
    return LEAF in sql


def run(snapshot: Snapshot, tenant: str, sql: str, params: list | dict | None = None, *,
        first_day: date | None = None, last_day: date | None = None,
        seq_lo: int | None = None, seq_hi: int | None = None,
        keys: tuple[str, ...] = ()) -> list[tuple] | None:
    """Run ``sql`` (with ``{src}`` standing for the tenant's events, with a ``meta.<key>``
    column for each of ``keys``) over the snapshot and fetch every row. Returns None when
    the tenant has no events at all in range."""
    files = snapshot.files(tenant, first_day=first_day, last_day=last_day, seq_lo=seq_lo,
                           seq_hi=seq_hi)
    tail = tenant_tail(snapshot, tenant, seq_lo=seq_lo, seq_hi=seq_hi,
                       leaves=names_leaf_hash(sql))
    if not files and tail is None:
        return None
    cur = cursor()
    if tail is not None:
        cur.register("ledger_tail", tail)
    try:
        with scans(cur, snapshot) as scan:
            src = source_sql(files, "ledger_tail" if tail is not None else None, keys=keys,
                             mixed=tenant in snapshot.dimensioned, scan=scan)
            return cur.execute(sql.format(src=f"({src})"), params or []).fetchall()
    finally:
        if tail is not None:
            cur.unregister("ledger_tail")
