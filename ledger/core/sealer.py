"""Sealing and compaction. A seal closes the active journal file, writes the unsealed
events, pairings and receipt entries as Parquet segments (one per project and UTC day for
events), commits them with one manifest record, marks the index as covering it and removes
the sealed journal files. Compaction merges the small segments of a (project, day) into
one; the files it replaces are deleted as soon as no snapshot of this process names them
(``ledger.core.readers``), so a reader holding an older snapshot is not cut off mid-query
and outside engines reading the directory see only the live set. Either way an event
segment carries the derived columns of the dimensions its project declares then
(``ledger.storage.dimensions``)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from ledger.core.guard import WriteGuard, storage_full
from ledger.core.logs import Logs
from ledger.core.readers import Readers
from ledger.core.tail import Tail, TailChunk
from ledger.model.event import format_ts, new_event_id, now_us
from ledger.model.schema import EVENT_SCHEMA
from ledger.storage import journal as jr
from ledger.storage.dimensions import DeclaredDimensions, with_dimensions
from ledger.storage.index import Index
from ledger.storage.layout import DataDir
from ledger.storage.manifest import Manifest, Segment
from ledger.storage.receipt_entries import ReceiptEntry, membership_table, receipts_table
from ledger.storage.segments import PAIR_SCHEMA, SegmentStore
from projections.tailview import plain

DEFAULT_SEAL_ROWS = 250_000
COMPACT_TARGET_ROWS = 1_000_000
COMPACT_MIN_FILES = 8
SEAL_THREADS = 2  # segments written at once by a seal
SEAL_RETRY = 5.0  # seconds before a seal that found the disk full is tried again
DEFAULT_SEAL_INTERVAL = 60.0  # seconds an unsealed entry waits at most (with auto_seal)
_log = logging.getLogger("ledger")


@dataclass(frozen=True, slots=True)
class SealResult:
    events: int
    segments: int
    journal: int


@dataclass(frozen=True, slots=True)
class CompactResult:
    merged: int
    written: int


class Sealer:
    """Seals and compacts one open directory; with ``auto_seal``, a background thread
    seals once the tail holds ``seal_rows`` events, or (``seal_interval`` seconds, None
    or 0 for never) once its oldest unsealed entry has waited that long, so outside
    readers of the segments see recent events within that time. ``publish`` runs once
    the manifest records of a seal, or of a compaction (every partition it merged), are
    committed, under the seal lock (the ledger publishes the live set as an Iceberg
    table; it must not raise). ``after_seal`` runs after every seal (the ledger
    checkpoints the logs that grew)."""

    def __init__(self, guard: WriteGuard, journal: jr.Journal, manifest: Manifest,
                 store: SegmentStore, index: Index, tail: Tail, logs: Logs, *,
                 seal_rows: int = DEFAULT_SEAL_ROWS, auto_seal: bool = True,
                 seal_interval: float | None = DEFAULT_SEAL_INTERVAL,
                 after_seal: Callable[[], object] | None = None,
                 dimensions: DeclaredDimensions | None = None,
                 readers: Readers | None = None,
                 publish: Callable[[], object] | None = None) -> None:
        self.guard = guard
        self.readers = readers or Readers(store.delete)
        self.publish = publish
        self.dimensions = dimensions or DeclaredDimensions(store.layout)
        self.journal = journal
        self.manifest = manifest
        self.store = store
        self.index = index
        self.tail = tail
        self.logs = logs
        self.seal_rows = seal_rows
        self.auto_seal = auto_seal
        self.seal_interval = seal_interval or None
        self._waiting_since: float | None = None  # monotonic: the tail became non-empty
        self.after_seal = after_seal
        self._seal_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self.seals = 0  # seals and compactions done since the ledger opened (/metrics)
        self.compactions = 0
        self.rows_rewritten = 0  # rows written by compactions since the ledger opened

    # -- the background seal -------------------------------------------------------------
    def tail_grew(self, rows: int) -> None:
        """Told the unsealed rows after an append: wake the seal thread if a seal is due;
        start the timer of ``seal_interval`` if the tail was empty."""
        if not self.auto_seal:
            return
        if rows >= self.seal_rows:
            self._request()
        elif self.seal_interval is not None and self._waiting_since is None:
            self._waiting_since = time.monotonic()
            self._request(wake=False)

    def _due(self) -> bool:
        """Whether the background thread should seal now."""
        rows = self.tail.rows()
        if rows >= self.seal_rows:
            return True
        since = self._waiting_since
        return (rows > 0 and since is not None and self.seal_interval is not None
                and time.monotonic() - since >= self.seal_interval)

    def _request(self, *, wake: bool = True) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="ledger-seal",
                                            daemon=True)
            self._thread.start()
        if wake:
            self._wakeup.set()

    def _loop(self) -> None:
        retry_at = 0.0  # after a seal found the disk full: not before then
        tick = min(1.0, self.seal_interval / 4) if self.seal_interval else 1.0
        while not self.guard.closed:
            woken = self._wakeup.wait(timeout=tick)
            self._wakeup.clear()
            timed = self._waiting_since is not None
            if not (woken or retry_at or timed) or time.monotonic() < retry_at:
                continue
            try:
                if self._due():
                    self.seal()
                retry_at = 0.0
            except BaseException as exc:
                if storage_full(exc):  # the journal keeps every event: seal later
                    _log.warning("sealing waits for disk space: %s", exc)
                    retry_at = time.monotonic() + SEAL_RETRY
                    continue
                self.guard.seal_error = exc  # surfaced to writers by check_writable
                return

    def stop(self) -> None:
        """Wake the seal thread so it sees the ledger closed, and wait for it."""
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- sealing -------------------------------------------------------------------------
    def seal(self) -> SealResult:
        with self._seal_lock:
            with self.guard.lock:
                if self.tail.active:
                    self.journal.rotate()
                    self.tail.freeze(self.journal.number)
                frozen = list(self.tail.frozen)
                trees = list(self.logs.trees.values())
                for chunk in frozen:  # build open parts now: the writes below are unlocked
                    for part in chunk.parts:
                        part.close()
            if not frozen:
                return SealResult(0, 0, self.manifest.state.sealed_journal)
            closed = max(c.journal for c in frozen)
            written: list[str] = []
            try:
                segments = self._write_segments(frozen, written)
                for tree in trees:
                    tree.sync()
            except BaseException:  # not committed: the chunks wait for the next seal
                self._remove(written)
                raise
            with self.guard.lock:
                try:
                    self.manifest.append("seal", _now_text(), add=segments, journal=closed)
                except BaseException:
                    self._remove(written)
                    raise
                self.tail.drop(frozen)
                # What came in meanwhile waits from now (the timer of seal_interval).
                self._waiting_since = time.monotonic() if self.tail.rows() else None
                try:
                    self.index.begin()
                    self.index.set_head(self.manifest.state.head)
                    self.index.commit(durable=True)
                except BaseException as exc:  # the index may have lost work: reopen
                    self.guard.failed = exc
                    raise
            for number, p in jr.journal_files(self.journal.directory):
                if number <= closed:
                    p.unlink(missing_ok=True)
            if self.publish is not None:
                self.publish()
            events = sum(c.events for c in frozen)
            self.seals += 1
            result = SealResult(events, len(segments), closed)
        self._maybe_compact(segments)
        if self.after_seal is not None:
            self.after_seal()
        return result

    def _remove(self, written: list[str]) -> None:
        """Remove the files of a seal that was not committed (a full disk)."""
        for rel in written:
            self.store.delete(rel)

    def _write_segments(self, chunks: list[TailChunk], written: list[str]) -> list[Segment]:
        """Write the chunks' segments; ``written`` is told each file's path before it is
        written (to remove them if the seal fails)."""
        by_day: dict[tuple[str, str], list[pa.Table]] = {}
        for chunk in chunks:
            for part in chunk.parts:  # in seq order: appended in that order
                leaves = functools.partial(self.logs.leaf_hashes, part.tenant)
                for date, rows in part.day_slices(leaves):
                    by_day.setdefault((part.tenant, date), []).append(rows)
        name = f"{chunks[-1].journal:08d}-{new_event_id()[-12:]}"
        declared = self.dimensions.projects()
        jobs = [(tenant, date, with_dimensions(plain(pa.concat_tables(tables)),
                                               declared.get(tenant, ())))
                for (tenant, date), tables in sorted(by_day.items())]
        # Encoding, compressing and syncing a segment release the GIL: two at a time.
        written.extend(f"{DataDir.partition('events', t, d)}/seg-{name}.parquet"
                       for t, d, _ in jobs)
        with ThreadPoolExecutor(max_workers=SEAL_THREADS) as pool:
            segments = list(pool.map(lambda job: self.store.write(
                job[2], DataDir.partition("events", job[0], job[1]), f"seg-{name}.parquet",
                tenant=job[0], date=job[1], kind="events"), jobs))
        pairs: dict[str, list[dict]] = {}
        for chunk in chunks:
            for pair in chunk.pairs:
                pairs.setdefault(pair["tenant"], []).append(pair)
        for tenant, items in sorted(pairs.items()):
            table = pa.Table.from_pylist([{
                "event_id": p["event_id"], "usage_id": p.get("usage_id"),
                "digest": bytes.fromhex(p["digest"]) if p.get("digest") else None,
                "recorded_at": p["recorded_at"]} for p in items], schema=PAIR_SCHEMA)
            written.append(f"{DataDir.partition('pairs', tenant)}/pairs-{name}.parquet")
            segments.append(self.store.write(
                table, DataDir.partition("pairs", tenant), f"pairs-{name}.parquet",
                tenant=tenant, date="", kind="pairs"))
        receipts: dict[str, list[ReceiptEntry]] = {}
        for chunk in chunks:
            for entry in chunk.receipts:
                receipts.setdefault(entry.tenant, []).append(entry)
        for tenant, entries in sorted(receipts.items()):
            written += [f"{DataDir.partition('receipts', tenant)}/rcpt-{name}.parquet",
                        f"{DataDir.partition('membership', tenant)}/mem-{name}.parquet"]
            segments.append(self.store.write(
                receipts_table(entries), DataDir.partition("receipts", tenant),
                f"rcpt-{name}.parquet", tenant=tenant, date="", kind="receipts"))
            segments.append(self.store.write(
                membership_table(entries), DataDir.partition("membership", tenant),
                f"mem-{name}.parquet", tenant=tenant, date="", kind="membership"))
        return segments

    # -- compaction ----------------------------------------------------------------------
    def _maybe_compact(self, segments: list[Segment]) -> None:
        touched = {(s.tenant, s.date) for s in segments if s.kind == "events"}
        for tenant, date in sorted(touched):
            self.compact(tenant=tenant, date=date, tiered=True)

    def compact(self, *, tenant: str | None = None, date: str | None = None,
                tiered: bool = False) -> CompactResult:
        """Merge the small segments (under ``COMPACT_TARGET_ROWS`` rows) of each (tenant,
        day) partition into one. ``tiered`` (after a seal) merges only segments of one size
        tier (rows within a factor ``COMPACT_MIN_FILES``), ``COMPACT_MIN_FILES`` of them
        at a time, so the merged file is at least one tier up and each row is rewritten
        at most once per tier: O(log) times over the life of the log."""
        merged = written = 0
        retired: list[str] = []
        with self._seal_lock:
            while True:
                batches = self._compaction_batches(tenant, date, tiered)
                if not batches:
                    break
                for (t, d), segs in batches:
                    self._merge(t, d, segs)
                    retired.extend(s.path for s in segs)
                    merged += len(segs)
                    written += 1
                if not tiered:
                    break
            if retired and self.publish is not None:  # the table stops listing them first
                self.publish()
            self.readers.retire(retired)
        return CompactResult(merged, written)

    def _compaction_batches(self, tenant: str | None, date: str | None, tiered: bool
                            ) -> list[tuple[tuple[str, str], list[Segment]]]:
        groups: dict[tuple[str, str, int], list[Segment]] = {}
        for s in self.manifest.state.segments(tenant):
            if (date is None or s.date == date) and s.rows < COMPACT_TARGET_ROWS:
                tier = size_tier(s.rows) if tiered else 0
                groups.setdefault((s.tenant, s.date, tier), []).append(s)
        least = COMPACT_MIN_FILES if tiered else 2
        out = []
        for (t, d, _), segs in sorted(groups.items()):
            if len(segs) >= least:
                segs.sort(key=lambda s: s.seq_min)
                out.append(((t, d), segs[:COMPACT_MIN_FILES] if tiered else segs))
        return out

    def _merge(self, t: str, d: str, segs: list[Segment]) -> None:
        table = pa.concat_tables([self.store.read(s, EVENT_SCHEMA.names)
                                  for s in segs]).sort_by("seq")
        table = with_dimensions(table, self.dimensions.keys(t))
        new = self.store.write(
            table, DataDir.partition("events", t, d),
            f"seg-c{segs[-1].path.rsplit('seg-', 1)[1].removesuffix('.parquet')}"
            f"-{new_event_id()[-8:]}.parquet", tenant=t, date=d, kind="events")
        with self.guard.lock:
            before = self.manifest.state.head
            self.manifest.append("compact", _now_text(), add=[new], remove=segs)
            if self.index.head() == before:  # a compaction adds no entry to index
                self.index.begin()  # (so a reopen past a manifest checkpoint needs none)
                try:
                    self.index.set_head(self.manifest.state.head)
                    self.index.commit(durable=True)
                except Exception as exc:  # the older head stays valid: only slower opens
                    self.index.rollback()
                    _log.warning("index head not moved past a compaction: %s", exc)
        self.rows_rewritten += table.num_rows
        self.compactions += 1


def size_tier(rows: int) -> int:
    """The size tier of a segment: rows in [F**k, F**(k+1)) with F = COMPACT_MIN_FILES."""
    tier = 0
    while rows >= COMPACT_MIN_FILES:
        rows //= COMPACT_MIN_FILES
        tier += 1
    return tier


def _now_text() -> str:
    return format_ts(now_us())


__all__ = ["COMPACT_MIN_FILES", "COMPACT_TARGET_ROWS", "DEFAULT_SEAL_INTERVAL",
           "DEFAULT_SEAL_ROWS", "CompactResult", "SealResult", "Sealer", "size_tier"]
