"""The unsealed tail: events, pairings and receipt entries written to the journal and not
yet sealed into segments, held per journal file (``TailChunk``) in parts of one project
(``TailPart``), with the Arrow table of all their rows that reads see (``Tail.table``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ledger.model.event import format_ts
from ledger.model.schema import ROW_INDEX
from ledger.storage.receipt_entries import ReceiptEntry
from ledger.storage.segments import rows_to_table

DAY_US = 86_400_000_000
OPEN_PART_ROWS = 65_536  # rows an open tail part takes before a new part starts
MAX_TAIL_TABLES = 32  # tables of parts kept apart before they are joined into one
_TS_AT = ROW_INDEX["ts"]  # where ``ts`` (µs) is in a row tuple


def day_of(ts_us: int) -> str:
    """The UTC day (``YYYY-MM-DD``) of a time in microseconds."""
    return format_ts(ts_us - ts_us % DAY_US)[:10]


def day_runs(days: np.ndarray) -> list[tuple[str, int, int]]:
    """``(YYYY-MM-DD, first, count)`` of each run of equal day numbers (days since the
    epoch, already grouped)."""
    if not len(days):
        return []
    starts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
    return [(day_of(int(days[a]) * DAY_US), a, b - a) for a, b in itertools.pairwise(starts)]


@dataclass(slots=True)
class TailPart:
    """Events of one tenant appended (or replayed) together, not yet sealed, with each
    event's idempotency digest (None for a generated id). A large batch arrives as an
    Arrow table (``EVENT_SCHEMA``) with its rows grouped by UTC day, in ``seq`` order
    within a day, and ``days`` saying where each day's run starts and how long it is (so
    a seal writes each day's segment from slices, with no copy); small appends gather as
    row tuples (``ROW_FIELDS`` order) in one open part, made a table when one is needed."""

    tenant: str
    digests: list[bytes | None]
    built: pa.Table | None = None
    days: list[tuple[str, int, int]] | None = None  # (YYYY-MM-DD, first row, rows)
    rows: list[tuple[Any, ...]] | None = None

    @property
    def table(self) -> pa.Table:
        if self.built is None:
            rows = self.rows or []
            order = sorted(range(len(rows)), key=lambda k: rows[k][_TS_AT] // DAY_US)
            rows = [rows[k] for k in order]
            self.digests = [self.digests[k] for k in order]
            self.built = rows_to_table(rows)
            self.days = day_runs(np.array([r[_TS_AT] // DAY_US for r in rows],
                                          dtype=np.int64))
            self.rows = None
        return self.built

    def day_slices(self) -> list[tuple[str, pa.Table]]:
        table = self.table
        assert self.days is not None
        return [(date, table.slice(first, count)) for date, first, count in self.days]

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else self.table.num_rows


@dataclass(slots=True)
class TailChunk:
    """Events (and pairings) written to one journal file and not yet sealed."""

    journal: int
    parts: list[TailPart] = field(default_factory=list)
    events: int = 0
    pairs: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[ReceiptEntry] = field(default_factory=list)

    def add(self, part: TailPart) -> None:
        self.parts.append(part)
        self.events += len(part)

    def add_rows(self, tenant: str, rows: list[tuple[Any, ...]],
                 digests: list[bytes | None]) -> None:
        """Rows of a small append: into the open part of the same tenant, if there is one."""
        last = self.parts[-1] if self.parts else None
        if (last is not None and last.tenant == tenant and last.rows is not None
                and len(last.rows) < OPEN_PART_ROWS):
            last.rows.extend(rows)
            last.digests.extend(digests)
            self.events += len(rows)
        else:
            self.add(TailPart(tenant, list(digests), rows=list(rows)))

    def __bool__(self) -> bool:
        return bool(self.parts or self.pairs or self.receipts)


class Tail:
    """The chunks of closed journal files waiting for a seal (``frozen``) and the chunk of
    the journal file being written (``active``). Callers hold the write lock."""

    def __init__(self, frozen: list[TailChunk], active: TailChunk) -> None:
        self.frozen = frozen
        self.active = active
        self._tables: list[pa.Table] = []  # the parts' rows already made tables, in order
        self._built: list[tuple[TailChunk, int]] = []  # (chunk, its parts in _tables)

    def chunks(self) -> list[TailChunk]:
        return [*self.frozen, self.active]

    def rows(self) -> int:
        """Events not yet sealed."""
        return self.active.events + sum(c.events for c in self.frozen)

    def freeze(self, next_journal: int) -> None:
        """The active chunk's journal file was closed: it waits for a seal, and appends
        go to a new chunk of journal file ``next_journal``."""
        self.frozen.append(self.active)
        self.active = TailChunk(journal=next_journal)

    def drop(self, sealed: list[TailChunk]) -> None:
        """Forget chunks a seal committed."""
        self.frozen = [c for c in self.frozen if c not in sealed]

    def receipt_entries(self) -> list[ReceiptEntry]:
        return [e for c in self.chunks() for e in c.receipts]

    def table(self) -> pa.Table:
        """Every unsealed event as one table (``EVENT_SCHEMA`` plus ``tenant``); the parts
        made tables before are kept, so each read converts only what is new."""
        chunks = self.chunks()
        built = {id(c): n for c, n in self._built}
        if any(id(c) not in {id(x) for x in chunks} for c, _ in self._built):
            self._tables, self._built, built = [], [], {}
        new_built = []
        for chunk in chunks:
            for part in chunk.parts[built.get(id(chunk), 0):]:
                t = part.table
                self._tables.append(t.append_column(
                    "tenant", pa.repeat(pa.scalar(part.tenant, pa.string()), t.num_rows)))
            new_built.append((chunk, len(chunk.parts)))
        self._built = new_built
        if len(self._tables) > MAX_TAIL_TABLES:
            self._tables = [pa.concat_tables(self._tables).combine_chunks()]
        if not self._tables:
            empty = rows_to_table([])
            return empty.append_column("tenant", pa.array([], pa.string()))
        return pa.concat_tables(self._tables)


__all__ = ["DAY_US", "Tail", "TailChunk", "TailPart", "day_of", "day_runs"]
