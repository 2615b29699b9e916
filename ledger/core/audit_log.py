"""Each project's log as the full audit (``ledger.core.audit``) gathers it, in bounded
memory.

The entries of each segment and journal arrive in no particular seq order (segments are
per day, so one holds seqs spread over the log; receipt entries and the journal come
after the events). :class:`GatheredLog` spills them as they arrive to files in a
temporary folder: their seqs and leaf hashes packed, in arrival order; their event ids
to Parquet files with their arrival position. Nothing per entry stays in memory.

:meth:`GatheredLog.ordered` then puts the leaf hashes in seq order in one file: each
leaf hash goes to position = its seq, a window of ``SCATTER_LEAVES`` positions (a
memory-mapped part of the file) per pass over the spill, while the first pass checks
that the seqs are exactly 0..n-1 (a bitmap of n bytes). That holds for an intact log,
whatever order its segments and rows came in. Otherwise (a seq repeated, missing, or the
log not starting at 0) every seq is sorted, stably so that entries with one seq keep
their arrival order (as sorting everything in memory did), the leaf hashes are copied in
that order, and the sorted seqs are kept for the findings and the receipts' look-ups.
The ordered leaves are then read by position (``LeafFile``), block by block.

Event ids are checked over the Parquet files, never as Python strings in memory: each
id's 64-bit hash (DuckDB's ``hash``, streamed) goes into one array of 8 bytes an id,
sorted in place; only ids whose hash repeats are then compared exactly (a DuckDB
``GROUP BY`` over those alone). A ``GROUP BY`` over every id ran out of memory at 100M
ids under the memory limit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ledger.tlog.merkle import HASH_SIZE

__all__ = ["Gathered", "GatheredLog", "LeafFile", "OrderedLog"]

READ_LEAVES = 1 << 16  # leaf hashes read at once (2 MiB)
SCATTER_LEAVES = 1 << 24  # leaf hashes put in seq order per pass (a 512 MiB window)
DUCKDB_MEMORY = "256MB"  # DuckDB's memory limit for the id checks (it spills beyond)
_IDS_SCHEMA = pa.schema([("event_id", pa.string()), ("pos", pa.int64())])


class LeafFile:
    """Packed leaf hashes in seq order in a file, read by position (``os.pread``: the
    pages stay in the page cache, not in the reader's memory)."""

    def __init__(self, path: Path | None) -> None:
        self._fd = os.open(path, os.O_RDONLY) if path is not None else -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, start: int, end: int) -> bytes:
        """The leaf hashes of positions [start, end), packed."""
        if end <= start:
            return b""
        return _pread(self._fd, (end - start) * HASH_SIZE, start * HASH_SIZE)

    def gather(self, positions: np.ndarray) -> Iterator[bytes]:
        """The leaf hashes at ``positions`` (ascending, each in the log), packed, in
        pieces of at most ``READ_LEAVES`` leaves' span."""
        i = 0
        while i < len(positions):
            first = int(positions[i])
            j = int(np.searchsorted(positions, first + READ_LEAVES, "left"))
            span = self.read(first, int(positions[j - 1]) + 1)
            rows = np.frombuffer(span, np.uint8).reshape(-1, HASH_SIZE)
            yield rows[positions[i:j] - first].tobytes()
            i = j


class OrderedLog:
    """A gathered log in seq order: ``n`` entries, their leaf hashes (``leaves``), and
    ``seqs``, the sorted seqs when they are not exactly 0..n-1 (None when seq i is at
    position i)."""

    def __init__(self, n: int, leaves: LeafFile, seqs: np.ndarray | None) -> None:
        self.n, self.leaves, self.seqs = n, leaves, seqs

    def positions(self, members: np.ndarray) -> np.ndarray | None:
        """The positions of the entries with seqs ``members`` (ascending); None if one is
        not in the log."""
        if self.seqs is None:
            if len(members) and (members[0] < 0 or members[-1] >= self.n):
                return None
            return members
        pos = np.searchsorted(self.seqs, members)
        if len(members) and (pos.max() >= len(self.seqs) or (self.seqs[pos] != members).any()):
            return None
        return pos


class GatheredLog:
    """One project's entries spilled to ``folder`` as they arrive (module docstring)."""

    def __init__(self, folder: Path, duck: _Duck) -> None:
        self._folder = folder
        self._duck = duck
        self._leaves = folder / "leaves.bin"  # in arrival order
        self._seqs = folder / "seqs.bin"  # in arrival order, int64
        self._sorted = folder / "leaves-sorted.bin"
        self.n = 0  # entries so far
        self._ids = 0  # event ids so far
        self._ordered: OrderedLog | None = None

    def add(self, seqs: pa.Array, hashes: pa.Array) -> None:
        """Entries with these seqs and leaf hashes (a fixed 32-byte binary array)."""
        count = len(seqs)
        if not count:
            return
        if hashes.type != pa.binary(HASH_SIZE):
            hashes = hashes.cast(pa.binary(HASH_SIZE))
        if len(hashes) != count:
            raise ValueError("a seq for every leaf hash")
        s = pc.fill_null(seqs, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        with open(self._seqs, "ab") as f:
            f.write(s.tobytes())
        data = hashes.buffers()[1]
        with open(self._leaves, "ab") as f:
            f.write(memoryview(data)[hashes.offset * HASH_SIZE:
                                     (hashes.offset + count) * HASH_SIZE])
        self.n += count

    def add_ids(self, ids: pa.Array) -> None:
        """Event ids, in arrival order."""
        if not len(ids):
            return
        pos = pa.array(np.arange(self._ids, self._ids + len(ids), dtype=np.int64))
        pq.write_table(pa.table([ids.cast(pa.string()), pos], schema=_IDS_SCHEMA),
                       self._folder / f"ids-{self._ids:012d}.parquet", compression="none")
        self._ids += len(ids)

    def ordered(self) -> OrderedLog:
        """The log in seq order (module docstring); computed once."""
        if self._ordered is None:
            self._ordered = self._order()
        return self._ordered

    def _arrived(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The spilled (seqs, leaf hashes as rows of 32 bytes), in blocks."""
        with open(self._seqs, "rb") as fs, open(self._leaves, "rb") as fl:
            while True:
                seqs = np.frombuffer(fs.read(8 * READ_LEAVES), np.int64)
                if not len(seqs):
                    return
                rows = np.frombuffer(fl.read(HASH_SIZE * len(seqs)), np.uint8)
                yield seqs, rows.reshape(-1, HASH_SIZE)

    def _order(self) -> OrderedLog:
        n = self.n
        if not n:
            return OrderedLog(0, LeafFile(None), None)
        with open(self._sorted, "wb") as f:
            f.truncate(n * HASH_SIZE)
        # Seq i goes to position i, a window of SCATTER_LEAVES positions per pass over
        # the spill; the first pass also checks that the seqs are exactly 0..n-1.
        seen = np.zeros(n, dtype=np.bool_)
        for low in range(0, n, SCATTER_LEAVES):
            high = min(n, low + SCATTER_LEAVES)
            window = np.memmap(self._sorted, np.uint8, "r+", offset=low * HASH_SIZE,
                               shape=((high - low), HASH_SIZE))
            for seqs, rows in self._arrived():
                if low == 0:
                    if seqs.min() < 0 or seqs.max() >= n:
                        break
                    seen[seqs] = True
                inside = (seqs >= low) & (seqs < high)
                window[seqs[inside] - low] = rows[inside]
            del window
            if low == 0 and not seen.all():
                return self._sort()
        del seen
        self._leaves.unlink()
        self._seqs.unlink()
        return OrderedLog(n, LeafFile(self._sorted), None)

    def _sort(self) -> OrderedLog:
        """Seqs not exactly 0..n-1: every seq sorted stably (entries with one seq keep
        their arrival order), the leaf hashes copied in that order."""
        seqs = np.fromfile(self._seqs, np.int64)
        order = np.argsort(seqs, kind="stable")
        seqs = seqs[order]
        spilled = np.memmap(self._leaves, np.uint8, "r").reshape(-1, HASH_SIZE)
        with open(self._sorted, "wb") as f:
            for i in range(0, self.n, READ_LEAVES):
                f.write(spilled[order[i:i + READ_LEAVES]].tobytes())
        del spilled, order
        self._leaves.unlink()
        self._seqs.unlink()
        return OrderedLog(self.n, LeafFile(self._sorted), seqs)

    def duplicate_ids(self, limit: int = 5) -> list[str]:
        """Up to ``limit`` event ids that occur more than once, in the order of their
        first occurrence."""
        if not self._ids:
            return []
        # Each id's 64-bit hash, streamed file by file into one array (8 bytes an id),
        # sorted in place: equal neighbours are the only candidates, then checked exactly.
        hashes = np.empty(self._ids, dtype=np.uint64)
        at = 0
        for path in sorted(self._folder.glob("ids-*.parquet")):
            for batch in self._duck.batches(
                    f"SELECT hash(event_id) FROM read_parquet('{_quote(path)}')"):
                column = batch.column(0).to_numpy(zero_copy_only=False)
                hashes[at:at + len(column)] = column
                at += len(column)
        hashes = hashes[:at]
        hashes.sort()
        same = hashes[1:] == hashes[:-1]
        if not same.any():
            return []
        candidates = pa.table({"h": pa.array(np.unique(hashes[1:][same]), pa.uint64())})
        del hashes, same
        rows = self._duck.query(
            f"SELECT event_id FROM read_parquet('{self._glob()}') "
            "WHERE hash(event_id) IN (SELECT h FROM candidates) GROUP BY event_id "
            f"HAVING count(*) > 1 ORDER BY min(pos) LIMIT {int(limit)}", candidates=candidates)
        return [r[0] for r in rows]

    def present_ids(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` that are event ids of the log."""
        if not self._ids or not ids:
            return set()
        wanted = pa.table({"event_id": pa.array(sorted(set(ids)), pa.string())})
        rows = self._duck.query(
            f"SELECT DISTINCT event_id FROM read_parquet('{self._glob()}') "
            "WHERE event_id IN (SELECT event_id FROM wanted)", wanted=wanted)
        return {r[0] for r in rows}

    def close(self) -> None:
        if self._ordered is not None:
            self._ordered.leaves.close()

    def _glob(self) -> str:
        return str(self._folder / "ids-*.parquet").replace("'", "''")


class Gathered:
    """Every project's :class:`GatheredLog`, in one temporary folder (removed by
    ``close``, or when the object is collected)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ledger-verify-")
        self._folder = Path(self._tmp.name)
        self._duck = _Duck(self._folder)
        self._logs: dict[str, GatheredLog] = {}

    def log(self, tenant: str) -> GatheredLog:
        got = self._logs.get(tenant)
        if got is None:
            sub = self._folder / f"p{len(self._logs):06d}"
            sub.mkdir()
            got = self._logs[tenant] = GatheredLog(sub, self._duck)
        return got

    def take(self, logs: dict[str, Any]) -> None:
        """Move the entries gathered in ``logs`` (``audit._TenantLog``: lists of seqs,
        leaf hashes and event ids) here, leaving their lists empty."""
        for tenant, log in logs.items():
            if not (log.seqs or log.ids):
                continue
            spill = self.log(tenant)
            for seqs, hashes in zip(log.seqs, log.hashes, strict=True):
                spill.add(seqs, hashes)
            for ids in log.ids:
                spill.add_ids(ids)
            log.seqs.clear()
            log.hashes.clear()
            log.ids.clear()

    def close(self) -> None:
        for log in self._logs.values():
            log.close()
        self._duck.close()
        self._tmp.cleanup()


class _Duck:
    """One DuckDB connection, opened on first use, with a memory limit and its spill
    files in the temporary folder."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._con: Any = None

    def _connect(self) -> Any:
        if self._con is None:
            import duckdb  # only for the id checks of a full verify

            self._con = duckdb.connect(config={
                "memory_limit": DUCKDB_MEMORY,
                "temp_directory": str(self._folder / "duckdb.tmp"),
                "preserve_insertion_order": False})
        return self._con

    def query(self, sql: str, **tables: pa.Table) -> list[tuple[Any, ...]]:
        con = self._connect()
        for name, table in tables.items():
            con.register(name, table)
        try:
            return con.execute(sql).fetchall()
        finally:
            for name in tables:
                con.unregister(name)

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        """``sql``'s result, streamed as Arrow record batches."""
        yield from self._connect().sql(sql).to_arrow_reader(1 << 20)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Exactly ``size`` bytes at ``offset`` (the file holds them: it was written first)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise OSError(f"the audit's spill file ended {size - len(data)} bytes early")
        data += more
    return data
