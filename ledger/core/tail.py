"""The unsealed tail: events, pairings and receipt entries written to the journal and not
yet sealed into segments, held per journal file (``TailChunk``) in parts of one project
(``TailPart``), and each project's seq-indexed read view of them (``Tail.views``,
``projections.tailview``).

Parts are columnar once closed: a large batch arrives as an Arrow table; small appends
gather as row tuples in one open part of at most ``OPEN_PART_ROWS`` rows, which is made a
table as soon as it is full (or a read needs it), so no per-event Python object outlives
a few hundred appends and a read after a burst of writes converts at most one open
part. A closed part keeps no leaf hashes: the log's tree has them (``Tail.leaves``), but
for a replayed part, until the tree has been caught up from it (``replayed_leaves``)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ledger.model.event import format_ts
from ledger.model.schema import ROW_INDEX
from ledger.storage.receipt_entries import ReceiptEntry
from ledger.storage.segments import rows_to_table
from projections.tailview import (
    TAIL_SCHEMA,
    LeafSource,
    TailBlock,
    TailView,
    compact,
    widen,
    with_leaves,
)

DAY_US = 86_400_000_000
OPEN_PART_ROWS = 1_024  # rows an open tail part takes before it is made a table
_TS_AT = ROW_INDEX["ts"]  # where ``ts`` (µs) is in a row tuple
_SEQ_AT = ROW_INDEX["seq"]
_LEAF_AT = ROW_INDEX["leaf_hash"]
LeafReader = Callable[[str, int, int], bytes]  # (tenant, start, end): its leaf hashes


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
    Arrow table (``EVENT_SCHEMA``; ``TAIL_SCHEMA`` once closed) with its rows grouped by
    UTC day, in ``seq`` order within a day, and ``days`` saying where each day's run
    starts and how long it is (so a seal writes each day's segment from slices, with no
    copy); small appends gather as
    row tuples (``ROW_FIELDS`` order) in one open part until it is closed (``close``).
    A closed part keeps its digests as an Arrow array and its seq index (``block``), and
    no leaf hashes; a replayed part keeps its own (``replayed_leaves``: its seqs,
    ascending, and their hashes, packed) until the tree is caught up
    (``Tail.forget_replayed_leaves``)."""

    tenant: str
    digests: list[bytes | None] | pa.Array
    built: pa.Table | None = None
    days: list[tuple[str, int, int]] | None = None  # (YYYY-MM-DD, first row, rows)
    rows: list[tuple[Any, ...]] | None = None
    block: TailBlock | None = None
    replayed_leaves: tuple[np.ndarray, bytes] | None = None

    @classmethod
    def replayed(cls, tenant: str, digests: list[bytes | None],
                 rows: list[tuple[Any, ...]]) -> TailPart:
        """A part of rows read back from the journal (in seq order; receipt entries may
        sit between them), keeping their leaf hashes for the tree's catch-up."""
        leaves = (np.array([r[_SEQ_AT] for r in rows], dtype=np.int64),
                  b"".join(r[_LEAF_AT] for r in rows))
        return cls(tenant, digests, rows=rows, replayed_leaves=leaves if rows else None)

    @property
    def table(self) -> pa.Table:
        return self.close().table

    def close(self) -> TailBlock:
        """Make the part columnar (a table grouped by day, its digests an array, its seq
        index): it takes no more rows. Returns its index."""
        if self.built is None:
            rows = self.rows or []
            order = sorted(range(len(rows)), key=lambda k: rows[k][_TS_AT] // DAY_US)
            rows = [rows[k] for k in order]
            self.digests = [self.digests[k] for k in order]
            self.built = rows_to_table(rows)
            self.days = day_runs(np.array([r[_TS_AT] // DAY_US for r in rows],
                                          dtype=np.int64))
            self.rows = None
        if self.block is None:
            if not isinstance(self.digests, pa.Array):
                self.digests = pa.array(self.digests, pa.binary())
            self.block = TailBlock.of(compact(self.built))
            self.built = self.block.table  # the rows kept are the block's
        return self.block

    def digest_list(self) -> list[bytes | None]:
        """The digests in the table's row order."""
        self.close()
        assert isinstance(self.digests, pa.Array)
        return self.digests.to_pylist()

    def day_slices(self, leaves: LeafSource) -> list[tuple[str, pa.Table]]:
        """Each UTC day's rows (``TAIL_SCHEMA``, their leaf hashes read from ``leaves``:
        ``projections.tailview.plain`` gives the stored schema)."""
        table = with_leaves(widen(self.table), leaves)  # one read of the part's seq range
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
        if part.rows is None or len(part.rows) >= OPEN_PART_ROWS:
            part.close()
        self.parts.append(part)
        self.events += len(part)

    def add_rows(self, tenant: str, rows: list[tuple[Any, ...]],
                 digests: list[bytes | None]) -> None:
        """Rows of a small append: into the open part of the same tenant, if there is one;
        a part that fills up is closed at once."""
        last = self.parts[-1] if self.parts else None
        if last is not None and last.tenant == tenant and last.rows is not None:
            assert isinstance(last.digests, list)
            last.rows.extend(rows)
            last.digests.extend(digests)
            self.events += len(rows)
            if len(last.rows) >= OPEN_PART_ROWS:
                last.close()
        else:
            self.add(TailPart(tenant, list(digests), rows=list(rows)))

    def __bool__(self) -> bool:
        return bool(self.parts or self.pairs or self.receipts)


@dataclass(slots=True)
class _Blocks:
    """One project's closed parts in seq order, as ``TailView`` reads them; the lists
    only grow (a seal starts new ones), so a view of a prefix never changes."""

    blocks: list[TailBlock] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)
    before: list[tuple[int, int, int]] = field(default_factory=lambda: [(0, 0, 0)])

    def append(self, block: TailBlock) -> None:
        c, u, r = self.before[-1]
        self.blocks.append(block)
        self.firsts.append(block.first)
        self.before.append((c + int(block.cost[-1]), u + int(block.unpriced[-1]),
                            r + len(block)))

    def view(self, leaves: LeafSource | None) -> TailView:
        return TailView(self.blocks, self.firsts, self.before, len(self.blocks), leaves)


class Tail:
    """The chunks of closed journal files waiting for a seal (``frozen``) and the chunk of
    the journal file being written (``active``). Callers hold the write lock. ``leaves``
    reads a project's leaf hashes from its tree (the views' ``LeafSource``)."""

    def __init__(self, frozen: list[TailChunk], active: TailChunk,
                 leaves: LeafReader | None = None) -> None:
        self.frozen = frozen
        self.active = active
        self.leaves = leaves
        self._projects: dict[str, _Blocks] = {}
        self._seen: list[tuple[TailChunk, int]] = []  # (chunk, its parts in _projects)

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
        self._projects, self._seen = {}, []  # rebuilt from the parts left on next read

    def leaf_source(self, tenant: str) -> LeafSource | None:
        """Where the views of ``tenant`` read its leaf hashes."""
        return None if self.leaves is None else functools.partial(self.leaves, tenant)

    def forget_replayed_leaves(self) -> None:
        """The trees hold every replayed part's leaf hashes: the parts let them go."""
        for chunk in self.chunks():
            for part in chunk.parts:
                part.replayed_leaves = None

    def receipt_entries(self) -> list[ReceiptEntry]:
        return [e for c in self.chunks() for e in c.receipts]

    def views(self) -> dict[str, TailView]:
        """Each project's unsealed events, seq-indexed (``projections.tailview``). The
        parts indexed before are kept: each call closes and indexes only new parts."""
        seen = dict((id(c), n) for c, n in self._seen)
        self._seen = []
        for chunk in self.chunks():
            for part in chunk.parts[seen.get(id(chunk), 0):]:
                block = part.close()
                if len(block):
                    self._projects.setdefault(part.tenant, _Blocks()).append(block)
            self._seen.append((chunk, len(chunk.parts)))
        return {tenant: blocks.view(self.leaf_source(tenant))
                for tenant, blocks in self._projects.items()}

    def table(self) -> pa.Table:
        """Every unsealed event as one table (``TAIL_SCHEMA`` plus ``tenant``)."""
        tables = [view.table().append_column(
            "tenant", pa.repeat(pa.scalar(tenant, pa.string()), view.rows))
            for tenant, view in sorted(self.views().items())]
        if not tables:
            empty = TAIL_SCHEMA.empty_table()
            return empty.append_column("tenant", pa.array([], pa.string()))
        return pa.concat_tables(tables)


__all__ = ["DAY_US", "OPEN_PART_ROWS", "Tail", "TailChunk", "TailPart", "day_of",
           "day_runs"]
