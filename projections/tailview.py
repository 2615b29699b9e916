"""One project's unsealed events as reads see them, indexed by ``seq``.

The tail is held in blocks (one per tail part, ``ledger.core.tail``): an Arrow table of
``EVENT_SCHEMA`` rows with, beside it, its seqs in ascending order, where each seq's row
is (``order``; None when the rows already are in seq order) and running totals of cost
and unpriced events in that order. Blocks of one project hold disjoint, ascending seq
ranges, so the events with seqs in ``[lo, hi]`` are found by two binary searches and
sliced without a scan, and the totals over any set of seq runs come from the running
sums: a page or a since-last total costs O(page + log n) whatever the tail's size.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ledger.model.schema import EVENT_SCHEMA

MAX_CUT_BLOCKS = 64  # blocks a summary may read rows of before SQL is the better way


@dataclass(frozen=True, slots=True)
class TailBlock:
    """The rows of one tail part and their seq index (module docstring)."""

    table: pa.Table
    seqs: np.ndarray  # ascending
    order: np.ndarray | None  # row of the i-th smallest seq; None: rows in seq order
    cost: np.ndarray  # cost[i]: sum of cost_nanos of the i smallest seqs (len rows + 1)
    unpriced: np.ndarray  # unpriced[i]: how many of them are unpriced (len rows + 1)
    groups: pa.Table  # the block's totals by (model, alias, provider, day): ``GROUP_COLUMNS``
    conversations: pa.Array  # the block's distinct conversation ids

    @classmethod
    def of(cls, table: pa.Table) -> TailBlock:
        seqs = _int64(table.column("seq"))
        order = None
        if len(seqs) > 1 and bool((np.diff(seqs) <= 0).any()):
            order = np.argsort(seqs, kind="stable")
            seqs = seqs[order]
        cost = _int64(pc.fill_null(table.column("cost_nanos"), 0))
        unpriced = _int64(pc.equal(table.column("cost_source"), "unpriced").cast(pa.int64()))
        if order is not None:
            cost, unpriced = cost[order], unpriced[order]
        return cls(table, seqs, order,
                   np.concatenate(([0], np.cumsum(cost, dtype=np.int64))),
                   np.concatenate(([0], np.cumsum(unpriced, dtype=np.int64))),
                   group_totals(table), pc.unique(table.column("conversation_id").drop_null()))

    def __len__(self) -> int:
        return len(self.seqs)

    def rows(self, a: int, b: int) -> pa.Table:
        """Rows at positions ``[a, b)`` in seq order."""
        if self.order is None:
            return self.table.slice(a, b - a)
        return self.table.take(pa.array(self.order[a:b]))

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """Positions ``[a, b)`` (seq order) of the seqs in ``[lo, hi]``."""
        return (int(np.searchsorted(self.seqs, lo, side="left")),
                int(np.searchsorted(self.seqs, hi, side="right")))


GROUP_KEYS = ["model", "alias", "provider", "d"]
GROUP_COLUMNS = [*GROUP_KEYS, "calls", "input_tokens", "output_tokens", "cost_nanos",
                 "unpriced", "first_ts_us", "last_ts_us"]
_SUMMED = ("calls", "input_tokens", "output_tokens", "cost_nanos", "unpriced")


def group_totals(table: pa.Table) -> pa.Table:
    """Events' totals by (model, alias, provider, UTC day number ``d``): ``GROUP_COLUMNS``,
    what ``projections.receipts.summary`` folds (a table of such totals may be passed
    again: sums of sums, the least first and the greatest last time)."""
    if "calls" in table.column_names:
        grouped = table.group_by(GROUP_KEYS).aggregate(
            [(c, "sum") for c in _SUMMED] + [("first_ts_us", "min"), ("last_ts_us", "max")])
    else:
        ts = table.column("ts").cast(pa.int64())
        events = pa.table({
            "model": table.column("model"), "alias": table.column("alias"),
            "provider": table.column("provider"), "d": pc.divide(ts, DAY_US),
            "input_tokens": table.column("input_tokens"),
            "output_tokens": table.column("output_tokens"),
            "cost_nanos": table.column("cost_nanos"),
            "unpriced": pc.equal(table.column("cost_source"), "unpriced").cast(pa.int64()),
            "ts_us": ts})
        grouped = events.group_by(GROUP_KEYS).aggregate(
            [("ts_us", "count", pc.CountOptions(mode="all"))]
            + [(c, "sum") for c in _SUMMED[1:]] + [("ts_us", "min"), ("ts_us", "max")])
    names = [*[f"{c}_sum" for c in _SUMMED[1:]]]
    columns = {c: grouped.column(c) for c in GROUP_KEYS}
    columns["calls"] = grouped.column("calls_sum" if "calls_sum" in grouped.column_names
                                      else "ts_us_count")
    for c, name in zip(_SUMMED[1:], names, strict=True):
        columns[c] = pc.fill_null(grouped.column(name), 0).cast(pa.int64())
    columns["first_ts_us"] = grouped.column("first_ts_us_min" if "calls" in table.column_names
                                            else "ts_us_min")
    columns["last_ts_us"] = grouped.column("last_ts_us_max" if "calls" in table.column_names
                                           else "ts_us_max")
    return pa.table({c: columns[c] for c in GROUP_COLUMNS})


DAY_US = 86_400_000_000


def _int64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


class TailView:
    """The first ``count`` blocks of a project's growing block list, read-only: what a
    snapshot sees. ``firsts`` holds each block's smallest seq, ``before`` the cost,
    unpriced count and rows of all blocks ahead of each (running, one longer than the
    blocks); the lists only grow, so a view of their first ``count`` items never
    changes."""

    def __init__(self, blocks: Sequence[TailBlock], firsts: Sequence[int],
                 before: Sequence[tuple[int, int, int]], count: int) -> None:
        self._blocks = blocks
        self._firsts = firsts
        self._before = before
        self._count = count

    @classmethod
    def of(cls, blocks: Sequence[TailBlock]) -> TailView:
        """A view of ``blocks`` (ascending, disjoint seq ranges)."""
        firsts = [int(b.seqs[0]) for b in blocks]
        before = [(0, 0, 0)]
        for b in blocks:
            c, u, r = before[-1]
            before.append((c + int(b.cost[-1]), u + int(b.unpriced[-1]), r + len(b)))
        return cls(list(blocks), firsts, before, len(blocks))

    @property
    def blocks(self) -> Sequence[TailBlock]:
        return self._blocks[:self._count]

    @property
    def rows(self) -> int:
        return self._before[self._count][2]

    def table(self) -> pa.Table:
        """Every event of the view (in block order; rows of a block in any order)."""
        tables = [b.table for b in self.blocks]
        return pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()

    def _blocks_between(self, lo: int, hi: int) -> range:
        first = max(bisect.bisect_right(self._firsts, lo, 0, self._count) - 1, 0)
        end = bisect.bisect_right(self._firsts, hi, 0, self._count)
        return range(first, end)

    def between(self, lo: int | None, hi: int | None, *, ordered: bool = False
                ) -> pa.Table | None:
        """The events with ``lo <= seq <= hi`` (None: unbounded), or None if there are
        none; ``ordered``: in seq order (else a block wholly in range comes as it is
        stored, uncopied)."""
        if self._count == 0:
            return None
        lo = int(self._firsts[0]) if lo is None else lo
        hi = int(self._blocks[self._count - 1].seqs[-1]) if hi is None else hi
        tables = []
        for i in self._blocks_between(lo, hi):
            block = self._blocks[i]
            a, b = block.span(lo, hi)
            if b > a:
                whole = (a, b) == (0, len(block)) and not ordered
                tables.append(block.table if whole else block.rows(a, b))
        return pa.concat_tables(tables) if tables else None

    def totals(self, intervals: np.ndarray) -> tuple[int, int, int]:
        """``(cost_nanos, unpriced, events)`` of the events whose seqs fall in the
        inclusive ``intervals``: O(log n) per interval."""
        cost = unpriced = events = 0
        for lo, hi in np.asarray(intervals, dtype=np.int64).reshape(-1, 2).tolist():
            c0, u0, r0 = self._upto(lo)
            c1, u1, r1 = self._upto(hi + 1)
            cost, unpriced, events = cost + c1 - c0, unpriced + u1 - u0, events + r1 - r0
        return cost, unpriced, events

    def _upto(self, seq: int) -> tuple[int, int, int]:
        """Cost, unpriced count and rows of the events with seqs below ``seq``."""
        i = bisect.bisect_right(self._firsts, seq, 0, self._count) - 1
        if i < 0:
            return 0, 0, 0
        block = self._blocks[i]
        k = int(np.searchsorted(block.seqs, seq, side="left"))
        c, u, r = self._before[i]
        return c + int(block.cost[k]), u + int(block.unpriced[k]), r + k

    def summary(self, intervals: np.ndarray) -> tuple[list[tuple], pa.ChunkedArray] | None:
        """Totals by (model, alias, provider, day) of the events whose seqs fall in the
        inclusive ``intervals`` (rows of ``GROUP_COLUMNS``) and their distinct
        conversation ids: whole blocks from their stored totals, the ends of runs from
        their rows. None when the runs cut too many blocks to be worth it."""
        groups: list[pa.Table] = []
        conversations: list[pa.Array] = []
        cut = 0
        for lo, hi in np.asarray(intervals, dtype=np.int64).reshape(-1, 2).tolist():
            for i in self._blocks_between(lo, hi):
                block = self._blocks[i]
                a, b = block.span(lo, hi)
                if b <= a:
                    continue
                if (a, b) == (0, len(block)):
                    groups.append(block.groups)
                    conversations.append(block.conversations)
                    continue
                cut += 1
                if cut > MAX_CUT_BLOCKS:
                    return None
                rows = block.rows(a, b)
                groups.append(group_totals(rows))
                conversations.append(rows.column("conversation_id").combine_chunks())
        if not groups:
            return [], pa.chunked_array([], pa.string())
        merged = group_totals(pa.concat_tables(groups)) if len(groups) > 1 else groups[0]
        rows = list(zip(*(merged.column(c).to_pylist() for c in GROUP_COLUMNS), strict=True))
        return rows, pa.chunked_array(conversations, pa.string())

    def seq_bounds(self) -> tuple[int, int] | None:
        """The smallest and the largest seq in the view."""
        if self._count == 0:
            return None
        return int(self._firsts[0]), int(self._blocks[self._count - 1].seqs[-1])


EMPTY = TailView([], [], [(0, 0, 0)], 0)

__all__ = ["EMPTY", "GROUP_COLUMNS", "TailBlock", "TailView", "group_totals"]
