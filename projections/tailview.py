"""One project's unsealed events as reads see them, indexed by ``seq``.

The tail is held in blocks (one per tail part, ``ledger.core.tail``): an Arrow table of
``EVENT_SCHEMA`` rows with, beside it, its seqs in ascending order, where each seq's row
is (``order``; None when the rows already are in seq order) and running totals of cost
and unpriced events in that order. Blocks of one project hold disjoint, ascending seq
ranges, so the events with seqs in ``[lo, hi]`` are found by two binary searches and
sliced without a scan, and the totals over any set of seq runs come from the running
sums: a page or a since-last total costs O(page + log n) whatever the tail's size.

A block's table holds the low-cardinality text columns (``DICTIONARY_COLUMNS``: model,
provider, alias, kind, …) dictionary-encoded (``TAIL_SCHEMA``, ``compact``): ~95 of the
~315 bytes an event's row took as plain strings. Reads see the same values (DuckDB reads
the dictionaries as VARCHAR, ``pylist`` turns a column into Python values), and
``plain`` gives the stored schema back where a segment is written. The seq index is as
small: a block whose seqs are consecutive (every append's are) keeps only its first seq,
its ``order`` is int32 and the running unpriced counts int32.

A block keeps no leaf hashes (``BLOCK_SCHEMA``): the log's tree holds every one at its
seq (``ledger.tlog.tiles``, level 0), 32 of a row's ~200 bytes. A view reads them from
there (its ``LeafSource``) for the rows a reader takes with ``leaf_hash``
(``with_leaves``); the totals, the seq index and the pages of uncertified logs never do.
And a block keeps its token counts and latency (``NARROW_COLUMNS``) as int32 when every
value fits (another 24 bytes a row); readers get them as int64 (``widen``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ledger.lazy import lazy
from ledger.model.schema import DICTIONARY_COLUMNS, EVENT_SCHEMA
from ledger.tlog.merkle import HASH_SIZE

pc = lazy("pyarrow.compute")
# Acero's plan nodes, without ``pyarrow.acero``: that module imports ``pyarrow.dataset``
# (with Parquet, ORC, CSV and the S3, GCS and Azure file systems, ~11 MiB) for helpers a
# group-by does not use
_acero = lazy("pyarrow._acero")

MAX_CUT_BLOCKS = 64  # blocks a summary may read rows of before SQL is the better way
_ENCODED = frozenset(DICTIONARY_COLUMNS)
_CODES = pa.int16()
CHUNK_ROWS = 1 << 15  # rows of one dictionary: its codes fit in int16
TAIL_SCHEMA: pa.Schema = pa.schema([
    pa.field(f.name, pa.dictionary(_CODES, f.type) if f.name in _ENCODED else f.type)
    for f in EVENT_SCHEMA])
"""``EVENT_SCHEMA`` with ``DICTIONARY_COLUMNS`` dictionary-encoded (int16 codes, one
dictionary per ``CHUNK_ROWS`` rows at most): the tail's rows as a view gives them."""
LEAF = "leaf_hash"
BLOCK_SCHEMA: pa.Schema = TAIL_SCHEMA.remove(TAIL_SCHEMA.get_field_index(LEAF))
"""``TAIL_SCHEMA`` without ``leaf_hash``: the rows a tail block keeps (with
``NARROW_COLUMNS`` int32 where they fit)."""
NARROW_COLUMNS = ("input_tokens", "output_tokens", "cached_input_tokens",
                  "cache_write_tokens", "reasoning_tokens", "latency_ms")
_INT32 = (-(1 << 31), (1 << 31) - 1)
LeafSource = Callable[[int, int], bytes]
"""The log's leaf hashes ``[start, end)`` (seqs), packed: 32 bytes each."""


def compact(table: pa.Table) -> pa.Table:
    """Rows of ``EVENT_SCHEMA`` as ``TAIL_SCHEMA`` (one dictionary per column); a table
    without ``leaf_hash`` as ``BLOCK_SCHEMA``."""
    schema = TAIL_SCHEMA if LEAF in table.column_names else BLOCK_SCHEMA
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        column = table.column(field.name)
        if field.name in _ENCODED and not field.type.equals(column.type):
            whole = plain_column(column).combine_chunks()
            chunks = [pc.dictionary_encode(whole.slice(at, CHUNK_ROWS))
                      for at in range(0, len(whole), CHUNK_ROWS)]
            column = pa.chunked_array(
                [pa.DictionaryArray.from_arrays(c.indices.cast(_CODES), c.dictionary)
                 for c in chunks], field.type)
        columns.append(column)
    return pa.table(columns, schema=schema)


def narrow(table: pa.Table) -> pa.Table:
    """``NARROW_COLUMNS`` of ``table`` as int32 where every value fits."""
    for name in NARROW_COLUMNS:
        at = table.schema.get_field_index(name)
        column = table.column(at)
        if not pa.types.is_int64(column.type):
            continue
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None or (_INT32[0] <= low and high <= _INT32[1]):  # None: all null
            table = table.set_column(at, table.field(at).with_type(pa.int32()),
                                     column.cast(pa.int32()))
    return table


def widen(table: pa.Table) -> pa.Table:
    """A block's rows (or some of their columns) with ``TAIL_SCHEMA``'s column types."""
    for at, field in enumerate(table.schema):
        if field.name in NARROW_COLUMNS and not pa.types.is_int64(field.type):
            table = table.set_column(at, field.with_type(pa.int64()),
                                     table.column(at).cast(pa.int64()))
    return table


def leaf_hashes(seqs: np.ndarray, source: LeafSource) -> pa.Array:
    """The leaf hashes of ``seqs`` (int64, any order, from a short range: one read of
    the range), as ``binary(32)``."""
    n = len(seqs)
    if n == 0:
        return pa.array([], pa.binary(HASH_SIZE))
    lo, hi = int(seqs.min()), int(seqs.max())
    data = source(lo, hi + 1)
    if hi - lo + 1 != n or (n > 1 and not bool((np.diff(seqs) == 1).all())):
        packed = np.frombuffer(data, dtype=np.uint8).reshape(-1, HASH_SIZE)
        data = packed[seqs - lo]  # a gather of the rows' hashes, in their order
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(HASH_SIZE), n,
                                                [None, pa.py_buffer(data)])


def with_leaves(table: pa.Table, source: LeafSource) -> pa.Table:
    """Rows of one block (``BLOCK_SCHEMA``, or some of its columns with ``seq``) with
    their ``leaf_hash`` column read from ``source``, where ``TAIL_SCHEMA`` has it (after
    the columns it follows)."""
    seqs = _int64(table.column("seq"))
    column = leaf_hashes(seqs, source)
    names = table.column_names
    at = len(names)
    for k, name in enumerate(names):  # before the first column TAIL_SCHEMA has after it
        if TAIL_SCHEMA.get_field_index(name) > TAIL_SCHEMA.get_field_index(LEAF):
            at = k
            break
    return table.add_column(at, TAIL_SCHEMA.field(LEAF), column)


def plain(table: pa.Table) -> pa.Table:
    """A table with dictionary-encoded columns (``TAIL_SCHEMA``) as plain ones: the stored
    schema (``EVENT_SCHEMA``, and any further column as it is)."""
    if not any(pa.types.is_dictionary(t) for t in table.schema.types):
        return table
    return table.cast(pa.schema([
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        for f in table.schema]))


def plain_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary-encoded column decoded (Arrow groups by one dictionary only)."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def pylist(column: pa.ChunkedArray | pa.Array) -> list:
    """A column's values as Python objects; a dictionary-encoded one with its values
    made once per chunk (pyarrow's ``to_pylist`` of a dictionary array builds a scalar
    per row: ~50 times slower)."""
    if not pa.types.is_dictionary(column.type):
        return column.to_pylist()
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list = []
    for chunk in chunks:
        values = [*chunk.dictionary.to_pylist(), None]
        codes = pc.fill_null(chunk.indices, len(values) - 1).to_numpy(zero_copy_only=False)
        out.extend(map(values.__getitem__, codes.tolist()))
    return out


@dataclass(frozen=True, slots=True)
class TailBlock:
    """The rows of one tail part and their seq index (module docstring)."""

    table: pa.Table  # BLOCK_SCHEMA
    first: int  # the smallest seq
    last: int  # the greatest seq
    stored_seqs: np.ndarray | None  # ascending; None: consecutive, first..last
    order: np.ndarray | None  # row (int32) of the i-th smallest seq; None: in seq order
    cost: np.ndarray  # cost[i]: sum of cost_nanos of the i smallest seqs (len rows + 1)
    unpriced: np.ndarray  # unpriced[i] (int32): how many of them are unpriced (len rows + 1)
    groups: pa.Table  # the block's totals by (model, alias, provider, day): ``GROUP_COLUMNS``
    conversations: pa.Array  # the block's distinct conversation ids

    @classmethod
    def of(cls, table: pa.Table) -> TailBlock:
        """The block of ``table`` (``EVENT_SCHEMA``, ``TAIL_SCHEMA`` or ``BLOCK_SCHEMA``
        rows; at least one). Its leaf hashes are not kept."""
        table = compact(table)
        if LEAF in table.column_names:
            table = table.drop_columns([LEAF])
        table = narrow(table)
        seqs = _int64(table.column("seq"))
        order = None
        if len(seqs) > 1 and bool((np.diff(seqs) <= 0).any()):
            order = np.argsort(seqs, kind="stable").astype(np.int32)
            seqs = seqs[order]
        cost = _int64(pc.fill_null(table.column("cost_nanos"), 0))
        unpriced = np.asarray(pc.equal(table.column("cost_source"), "unpriced").cast(
            pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int32)
        if order is not None:
            cost, unpriced = cost[order], unpriced[order]
        first, last = int(seqs[0]), int(seqs[-1])
        consecutive = last - first + 1 == len(seqs)  # ascending and distinct: no gap
        return cls(table, first, last, None if consecutive else seqs, order,
                   _running(cost, np.int64), _running(unpriced, np.int32),
                   group_totals(table), pc.unique(table.column("conversation_id").drop_null()))

    def __len__(self) -> int:
        return len(self.cost) - 1

    @property
    def seqs(self) -> np.ndarray:
        """The block's seqs, ascending."""
        if self.stored_seqs is not None:
            return self.stored_seqs
        return np.arange(self.first, self.last + 1, dtype=np.int64)

    def position(self, seq: int, side: str = "left") -> int:
        """Where ``seq`` goes among the block's seqs (``np.searchsorted``'s ``side``)."""
        if self.stored_seqs is not None:
            return int(np.searchsorted(self.stored_seqs, seq,
                                       side="left" if side == "left" else "right"))
        at = seq - self.first + (side == "right")
        return min(max(at, 0), len(self))

    def rows(self, a: int, b: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows at positions ``[a, b)`` in seq order (of ``columns`` only, if given:
        ``BLOCK_SCHEMA``'s)."""
        table = self.table if columns is None else self.table.select(columns)
        if self.order is None:
            return table.slice(a, b - a)
        return table.take(pa.array(self.order[a:b]))

    def select(self, a: int, b: int, columns: Sequence[str] | None,
               leaves: LeafSource | None, *, ordered: bool = True,
               int64: bool = True) -> pa.Table:
        """Rows at positions ``[a, b)`` in seq order (all of them, unless ``ordered``, as
        they are stored, uncopied), of ``columns`` (None: ``TAIL_SCHEMA``'s), with
        ``leaf_hash`` read from ``leaves`` where ``columns`` names it; ``int64``: the
        counts as int64 (else as the block keeps them)."""
        wanted = None if columns is None else list(columns)
        leaf = wanted is None or LEAF in wanted
        kept = None if wanted is None else [c for c in wanted if c != LEAF]
        if leaf and kept is not None and "seq" not in kept:
            kept.append("seq")
        if (a, b) == (0, len(self)) and (not ordered or self.order is None):
            rows = self.table if kept is None else self.table.select(kept)
        else:
            rows = self.rows(a, b, kept)
        if int64:
            rows = widen(rows)
        if not leaf:
            return rows
        if leaves is None:
            raise LookupError("no source was given for these rows' leaf hashes")
        rows = with_leaves(rows, leaves)
        return rows if wanted is None else rows.select(wanted)

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """Positions ``[a, b)`` (seq order) of the seqs in ``[lo, hi]``."""
        return self.position(lo, "left"), self.position(hi, "right")


GROUP_KEYS = ["model", "alias", "provider", "d"]
GROUP_COLUMNS = [*GROUP_KEYS, "calls", "input_tokens", "output_tokens", "cost_nanos",
                 "unpriced", "first_ts_us", "last_ts_us"]
_SUMMED = ("calls", "input_tokens", "output_tokens", "cost_nanos", "unpriced")


def aggregate(table: pa.Table, keys: list[str], aggregations: list[tuple]) -> pa.Table:
    """``table.group_by(keys).aggregate(aggregations)``, the same plan (pyarrow's
    ``TableGroupBy.aggregate``: ``hash_`` functions, outputs named ``<column>_<function>``,
    threads used) run through ``pyarrow._acero`` directly (see ``_acero``)."""
    specs = []
    for target, function, *options in aggregations:
        specs.append(([target], f"hash_{function}", options[0] if options else None,
                      f"{target}_{function}"))
    return _acero.Declaration.from_sequence([
        _acero.Declaration("table_source", _acero.TableSourceNodeOptions(table)),
        _acero.Declaration("aggregate", _acero.AggregateNodeOptions(specs, keys=keys)),
    ]).to_table(use_threads=True)


def group_totals(table: pa.Table) -> pa.Table:
    """Events' totals by (model, alias, provider, UTC day number ``d``): ``GROUP_COLUMNS``,
    what ``projections.receipts.summary`` folds (a table of such totals may be passed
    again: sums of sums, the least first and the greatest last time)."""
    if "calls" in table.column_names:
        grouped = aggregate(table, GROUP_KEYS, [(c, "sum") for c in _SUMMED]
                            + [("first_ts_us", "min"), ("last_ts_us", "max")])
    else:
        ts = table.column("ts").cast(pa.int64())
        events = pa.table({
            "model": plain_column(table.column("model")),
            "alias": plain_column(table.column("alias")),
            "provider": plain_column(table.column("provider")), "d": pc.divide(ts, DAY_US),
            "input_tokens": table.column("input_tokens"),
            "output_tokens": table.column("output_tokens"),
            "cost_nanos": table.column("cost_nanos"),
            "unpriced": pc.equal(table.column("cost_source"), "unpriced").cast(pa.int64()),
            "ts_us": ts})
        grouped = aggregate(events, GROUP_KEYS, [("ts_us", "count", pc.CountOptions(mode="all"))]
                            + [(c, "sum") for c in _SUMMED[1:]]
                            + [("ts_us", "min"), ("ts_us", "max")])
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


def _running(values: np.ndarray, dtype: type) -> np.ndarray:
    """``[0, v0, v0 + v1, ...]`` of ``values`` as ``dtype``."""
    out = np.zeros(len(values) + 1, dtype=dtype)
    np.cumsum(values, dtype=dtype, out=out[1:])
    return out


def _int64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


class TailView:
    """The first ``count`` blocks of a project's growing block list, read-only: what a
    snapshot sees. ``firsts`` holds each block's smallest seq, ``before`` the cost,
    unpriced count and rows of all blocks ahead of each (running, one longer than the
    blocks); the lists only grow, so a view of their first ``count`` items never
    changes. ``leaves`` reads the project's leaf hashes (``with_leaves``)."""

    def __init__(self, blocks: Sequence[TailBlock], firsts: Sequence[int],
                 before: Sequence[tuple[int, int, int]], count: int,
                 leaves: LeafSource | None = None) -> None:
        self._blocks = blocks
        self._firsts = firsts
        self._before = before
        self._count = count
        self._leaves = leaves

    @classmethod
    def of(cls, blocks: Sequence[TailBlock], leaves: LeafSource | None = None) -> TailView:
        """A view of ``blocks`` (ascending, disjoint seq ranges)."""
        firsts = [b.first for b in blocks]
        before = [(0, 0, 0)]
        for b in blocks:
            c, u, r = before[-1]
            before.append((c + int(b.cost[-1]), u + int(b.unpriced[-1]), r + len(b)))
        return cls(list(blocks), firsts, before, len(blocks), leaves)

    @property
    def leaves(self) -> LeafSource:
        """Where the view reads its rows' leaf hashes."""
        if self._leaves is None:
            raise LookupError("this tail view has no leaf hashes to read")
        return self._leaves

    @property
    def blocks(self) -> Sequence[TailBlock]:
        return self._blocks[:self._count]

    @property
    def rows(self) -> int:
        return self._before[self._count][2]

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every event of the view (in block order; rows of a block in any order):
        ``TAIL_SCHEMA``, or its ``columns``."""
        leaves = self.leaves if columns is None or LEAF in columns else None
        tables = [b.select(0, len(b), columns, leaves, ordered=False) for b in self.blocks]
        if tables:
            return pa.concat_tables(tables)
        empty = TAIL_SCHEMA.empty_table()
        return empty if columns is None else empty.select(list(columns))

    def _blocks_between(self, lo: int, hi: int) -> range:
        first = max(bisect.bisect_right(self._firsts, lo, 0, self._count) - 1, 0)
        end = bisect.bisect_right(self._firsts, hi, 0, self._count)
        return range(first, end)

    def between(self, lo: int | None, hi: int | None, *, ordered: bool = False,
                columns: Sequence[str] | None = None,
                int64: bool = True) -> pa.Table | None:
        """The events with ``lo <= seq <= hi`` (None: unbounded), or None if there are
        none; ``ordered``: in seq order (else a block wholly in range comes as it is
        stored, uncopied); ``columns``: only these; ``int64``: the counts as int64 (else
        int32 where every block's fit, for readers that take any integer type)."""
        if self._count == 0:
            return None
        lo = int(self._firsts[0]) if lo is None else lo
        hi = self._blocks[self._count - 1].last if hi is None else hi
        tables = []
        for i in self._blocks_between(lo, hi):
            block = self._blocks[i]
            a, b = block.span(lo, hi)
            if b > a:
                tables.append(block.select(a, b, columns, None if columns is not None and
                                           LEAF not in columns else self.leaves,
                                           ordered=ordered, int64=int64))
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default" if int64 else "permissive")

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
        k = block.position(seq)
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
        rows = list(zip(*(pylist(merged.column(c)) for c in GROUP_COLUMNS), strict=True))
        return rows, pa.chunked_array(conversations, pa.string())

    def seq_bounds(self) -> tuple[int, int] | None:
        """The smallest and the largest seq in the view."""
        if self._count == 0:
            return None
        return int(self._firsts[0]), self._blocks[self._count - 1].last


EMPTY = TailView([], [], [(0, 0, 0)], 0)

__all__ = ["EMPTY", "GROUP_COLUMNS", "TAIL_SCHEMA", "TailBlock", "TailView", "compact",
           "group_totals", "plain", "plain_column", "pylist"]
