"""``Ledger``: the embedded Python API over one data directory (docs/architecture.md).

A small façade over the write core, each part an object that owns its state and is
handed what it needs:

* ``recovery``: the directory's lock; on open, torn tails cut, leftovers removed, the
  journal replayed, the index and trees brought level with the log;
* ``appender``: validate → assign a gap-free per-project ``seq`` → journal → index, tail
  and tree → group-commit fsync → acknowledge; receipt entries;
* ``idempotency``: id lookups, repeated requests, conversation pairing (the id index);
* ``tail``: the unsealed events, and the table reads see of them;
* ``sealer``: seals into Parquet segments committed by the manifest; compaction;
* ``checkpointer``: signed checkpoints of the logs, with the directory's ``Notary``;
* ``logs``: each project's size, receipt seqs and Merkle tree;
* ``guard``: the write lock, and whether writes are still taken.

Reads (listing, counts, rollups) go through ``projections`` over a snapshot of the live
segment files plus the unsealed tail, so an acknowledged event is visible at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ledger.core.appender import Appender
from ledger.core.checkpointer import DEFAULT_CHECKPOINT_INTERVAL, Checkpointer
from ledger.core.guard import WriteGuard, storage_full
from ledger.core.idempotency import Idempotency
from ledger.core.logs import Logs
from ledger.core.prices import ProjectPrices
from ledger.core.readers import Readers
from ledger.core.recovery import Recovery, release_lock, take_lock
from ledger.core.sealer import (
    DEFAULT_SEAL_INTERVAL,
    DEFAULT_SEAL_ROWS,
    CompactResult,
    Sealer,
    SealResult,
)
from ledger.core.tail import Tail, TailChunk
from ledger.errors import LedgerError, LedgerLockedError, NotWritableError
from ledger.model.event import Ack, Event, EventIn, us_to_datetime
from ledger.model.tenant import check_tenant
from ledger.storage import journal as jr
from ledger.storage.dimensions import DeclaredDimensions
from ledger.storage.durable import is_private, private_dir, tighten
from ledger.storage.iceberg import IcebergTable, published_records
from ledger.storage.index import Index
from ledger.storage.layout import DataDir
from ledger.storage.manifest import Manifest
from ledger.storage.objectstore import open_storage
from ledger.storage.receipt_entries import ReceiptEntry, tail_tables
from ledger.storage.segments import SegmentStore
from ledger.tlog.checkpoint import SignedCheckpoint
from ledger.tlog.notary import Notary
from ledger.tlog.tiles import TreeStore
from projections.snapshot import SegmentRef, Snapshot

_log = logging.getLogger("ledger")


class Ledger:
    """One data directory, opened for writing by this process alone."""

    def __init__(self, path: str | os.PathLike[str], *, seal_rows: int = DEFAULT_SEAL_ROWS,
                 pricer: Any = "default", auto_seal: bool = True,
                 seal_interval: float | None = DEFAULT_SEAL_INTERVAL,
                 checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
                 accept_loss: bool = False, iceberg: bool | None = None,
                 storage: str | None = None) -> None:
        """Open (creating if needed) the data directory ``path`` for writing.

        ``storage``: the URI of the object store its segments live on
        (``s3://bucket/prefix``, ``ledger.storage.objectstore``), fixed in its
        ``config.json`` on first use; afterwards the directory's own is used, and another
        one is refused (``StorageUriError``) before anything is written.

        ``checkpoint_interval``: every so many seconds, and at every seal, each project
        whose log grew gets a signed checkpoint (``checkpoint``); None turns the cadence
        off (checkpoints are then issued on demand and with receipts only).

        ``seal_interval``: with ``auto_seal``, the unsealed tail is sealed once its oldest
        entry has waited so many seconds (None or 0: only at ``seal_rows`` and on close),
        so engines reading the segment files see recent events.

        ``iceberg``: publish the live event segments as the Iceberg table
        ``ledger.events`` (``ledger.storage.iceberg``), one commit per seal and per
        compaction; None: if the directory already has the table. A table behind the
        manifest (a failed publish, a crash) is caught up on open.

        A journal damaged inside is refused (``JournalDamageError``); ``accept_loss`` cuts
        it at the damage instead, recording the loss (``accepted_losses`` lists the cuts
        made by this opening; docs/formats.md)."""
        self.layout = DataDir(path)
        self.path = self.layout.root
        self._storage = open_storage(self.layout, storage)
        private_dir(self.path)
        if pricer == "default":
            from ledger.model.pricing import PriceBook

            pricer = PriceBook()
        self.pricer = pricer
        """The packaged price book (None: events without a cost stay unpriced)."""
        self.prices = ProjectPrices(self.layout, pricer)
        """Each project's price overrides over ``pricer`` (``llmring prices``)."""
        self.checkpoint_interval = checkpoint_interval
        self.accepted_losses: list[dict[str, Any]] = []
        self._guard = WriteGuard()
        self._lock = self._guard.lock
        try:
            self._lockfd = take_lock(self.layout)
            try:
                if not is_private(self.path):  # written before everything in it was private
                    tighten(self.path)
                self._open(seal_rows, auto_seal, seal_interval, accept_loss, iceberg)
            except BaseException:
                os.close(self._lockfd)
                raise
        except (OSError, sqlite3.Error) as exc:  # a read-only directory: say so, no trace
            refused = NotWritableError.of(exc, self.path)
            if refused is None:
                raise
            raise refused from exc

    def _open(self, seal_rows: int, auto_seal: bool, seal_interval: float | None,
              accept_loss: bool, iceberg: bool | None) -> None:
        layout = self.layout
        self.store = SegmentStore(layout, self._storage)
        self.manifest = Manifest(layout.manifest)
        recovery = Recovery(layout, self.store, self.manifest, accept_loss=accept_loss)
        replayed = recovery.replay()
        self.accepted_losses = recovery.losses
        self.tail = Tail([c for c in replayed.chunks if c],
                         TailChunk(journal=replayed.next_journal))
        self.index = Index(layout)
        self.ids = Idempotency(self.index, self.manifest, self.store, self.tail, self.get)
        recovery.catch_up_index(self.ids, replayed.chunks)
        recovery.remove_empty(replayed.chunks)
        self.journal = jr.Journal(layout.journal, replayed.next_journal)
        self.logs = Logs(layout, replayed.sizes, replayed.receipt_seqs,
                         lambda tenant, tree, size: recovery.fill_tree(self.tail, tenant, tree,
                                                                       size))
        self.logs.open_trees()
        self.checkpointer = Checkpointer(layout, self._guard, self.journal, self.logs,
                                         self.checkpoint_interval)
        self.dimensions = DeclaredDimensions(layout)
        self.readers = Readers(self.store.delete)
        published = published_records(layout)
        self.iceberg = (IcebergTable(layout, self.store)
                        if (iceberg if iceberg is not None else published is not None)
                        else None)
        if self.iceberg is not None and published != self.manifest.state.count:
            self._publish()  # catch up: a publish failed, or the table is new
        self.sealer = Sealer(
            self._guard, self.journal, self.manifest, self.store, self.index, self.tail,
            self.logs, seal_rows=seal_rows, auto_seal=auto_seal, seal_interval=seal_interval,
            after_seal=(self.checkpointer.checkpoint_grown
                        if self.checkpoint_interval is not None else None),
            dimensions=self.dimensions, readers=self.readers,
            publish=self._publish if self.iceberg is not None else None)
        self.appender = Appender(self._guard, self.journal, self.logs, self.tail, self.ids,
                                 self.prices.pricer_for, self.sealer.tail_grew)

    def _publish(self) -> None:
        """Bring the Iceberg table level with the manifest (never raises)."""
        assert self.iceberg is not None
        self.iceberg.publish(self.manifest.state.live.values(),
                             self.manifest.state.count)

    @property
    def seal_rows(self) -> int:
        return self.sealer.seal_rows

    @property
    def auto_seal(self) -> bool:
        return self.sealer.auto_seal

    @property
    def notary(self) -> Notary:
        """The directory's signing side: origin, key ring, checkpoints, cosignatures (one
        per open directory, built on first use)."""
        return self.checkpointer.notary

    # -- appends -------------------------------------------------------------------------
    def append(self, event: Mapping[str, Any] | EventIn, *, tenant: str = "default") -> Ack:
        """Append one event; return once it is durable."""
        return self.appender.append_many([event], tenant=tenant)[0]

    def append_many(self, events: Iterable[Mapping[str, Any] | EventIn], *,
                    tenant: str = "default") -> Sequence[Ack]:
        """Append events atomically: all are recorded, or (on any invalid event or id
        conflict) none is. Returns one acknowledgement per input, in order."""
        return self.appender.append_many(events, tenant=tenant)

    def submit(self, events: Sequence[Mapping[str, Any] | EventIn], *,
               tenant: str = "default") -> asyncio.Future[Sequence[Ack]]:
        """``append_many`` of a few events (fewer than ``SMALL_APPEND``, 256) from a
        running event loop, without blocking it: a future of that loop, done once the
        events are durable (its result: the acknowledgements; or the refusal)."""
        return self.appender.submit(events, tenant=tenant)

    # -- sealing and compaction ----------------------------------------------------------
    def flush(self) -> SealResult:
        """Seal everything in the journal into segments now."""
        return self.sealer.seal()

    def seal(self) -> SealResult:
        return self.sealer.seal()

    def compact(self, *, tenant: str | None = None, date: str | None = None) -> CompactResult:
        """Merge the small segments of each (tenant, day) partition into one."""
        return self.sealer.compact(tenant=tenant, date=date)

    # -- reads ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The live segment files and the unsealed tail, as of now. The files it names
        stay until it is released (``with ledger.snapshot() as snap:``) or collected,
        even if a compaction retires them meanwhile (``ledger.core.readers``)."""
        with self._lock:
            named = [s.path for s in self.manifest.state.live.values() if s.kind != "pairs"]
            segments: dict[str, list[SegmentRef]] = {}
            for seg in self.manifest.state.segments():
                segments.setdefault(seg.tenant, []).append(SegmentRef(
                    self.store.abspath(seg.path), seg.date, seg.seq_min, seg.seq_max, seg.rows))
            receipt_files: dict[str, list[str]] = {}
            membership_files: dict[str, list[str]] = {}
            for kind, files in (("receipts", receipt_files), ("membership", membership_files)):
                for seg in self.manifest.state.segments(kind=kind):
                    files.setdefault(seg.tenant, []).append(self.store.abspath(seg.path))
            entries = self.tail.receipt_entries()
            receipt_tail, membership_tail = tail_tables(entries) if entries else (None, None)
            return Snapshot(segments=segments, tails=self.tail.views(),
                            dimensioned=frozenset(self.dimensions.projects()),
                            sizes=dict(self.logs.sizes), receipt_files=receipt_files,
                            membership_files=membership_files, receipt_tail=receipt_tail,
                            membership_tail=membership_tail,
                            filesystem=self.store.fs if self.store.remote else None,
                            receipt_seqs={t: list(v)
                                          for t, v in self.logs.receipt_seqs.items()},
                            lease=self.readers.hold(named))

    # -- receipt entries (docs/formats.md; content and signing are ``ledger.receipts.issuance``) --
    def receipt_lock(self, tenant: str) -> threading.Lock:
        """The lock that serializes receipt issuance for one tenant."""
        return self.appender.receipt_lock(tenant)

    def append_receipt(self, tenant: str, ranges: np.ndarray,
                       build: Callable[[int, bytes], bytes]) -> ReceiptEntry:
        """Append a receipt entry certifying the events in ``ranges`` (inclusive runs of
        event seqs). ``build(size, root)`` is called under the write lock with the log's
        size and root just before the entry and returns the entry's canonical bytes (the
        signed receipt). Returns once the entry and its membership are durable."""
        return self.appender.append_receipt(tenant, ranges, build)

    def resolve(self, tenant: str, event_ids: Sequence[str]) -> dict[str, Ack]:
        """The acknowledgements of known event ids (a usage log paired with its
        conversation resolves to the conversation event); unknown ids are absent."""
        with self._lock:
            return {k: v.ack for k, v in self.ids.lookup(tenant, list(event_ids)).items()}

    def leaf_hash_buffer(self, tenant: str, start: int, end: int) -> bytes:
        """The tenant's log leaf hashes [start, end), packed (one read of the tree)."""
        with self._lock:
            return self.logs.tree(tenant).leaf_hash_buffer(start, end)

    def receipt_seqs(self, tenant: str) -> list[int]:
        """The seqs of the tenant's receipt entries, ascending."""
        with self._lock:
            return list(self.logs.receipt_seqs.get(tenant, []))

    # -- signed checkpoints (docs/formats.md; notes and the store are ``ledger.tlog``) ---
    def checkpoint(self, tenant: str = "default") -> SignedCheckpoint:
        """Sign the tenant's log as it is now: a C2SP checkpoint (origin
        ``<ledger origin>/<tenant>``, size, root), stored in ``<data>/checkpoints`` and
        returned (``ledger.tlog.checkpoint.SignedCheckpoint``). The journal is synced first,
        so a checkpoint never covers an entry that a crash could lose. If the log has not
        grown since the latest checkpoint, that one is returned."""
        return self.checkpointer.checkpoint(tenant)

    def checkpoint_grown(self) -> list[SignedCheckpoint]:
        """Checkpoint every tenant whose log grew since its last checkpoint here. A
        refusal (the log contradicts a checkpoint already issued) is logged, not raised:
        `llmring ledger verify` reports it."""
        return self.checkpointer.checkpoint_grown()

    def size(self, tenant: str = "default") -> int:
        """Number of entries in the tenant's log (its next ``seq``): events and receipt
        entries together."""
        with self._lock:
            return self.logs.size(tenant)

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self.logs.sizes)

    def tree(self, tenant: str = "default") -> TreeStore:
        """The tenant's log tree (RFC 9162), for roots and proofs."""
        check_tenant(tenant)
        with self._lock:
            return self.logs.tree(tenant)

    def root(self, tenant: str = "default") -> bytes:
        with self._lock:
            return self.logs.tree(tenant).root()

    def get(self, tenant: str, event_id: str) -> Event | None:
        with self._lock:
            found = self.ids.lookup(tenant, [event_id]).get(event_id)
        return None if found is None else self.event_of(found.ack)

    def event_of(self, ack: Ack) -> Event | None:
        """The event an acknowledgement (from ``resolve``, ``append``...) names, read from
        the segments of the UTC day of its ``ts`` and the tail."""
        from projections import events as pe

        day = us_to_datetime(ack.ts_us).date()
        rows = pe.by_seq(self.snapshot(), ack.tenant, [ack.seq], day=day)
        return rows[0] if rows else None

    def events(self, tenant: str = "default", *, start: datetime | None = None,
               end: datetime | None = None, limit: int = 100, offset: int = 0,
               order: str = "seq") -> list[Event]:
        """Events of a tenant, optionally with start ≤ ts < end, a page at a time."""
        from projections import events as pe

        return pe.list_events(self.snapshot(), tenant, start=start, end=end, limit=limit,
                              offset=offset, order=order)

    def count(self, tenant: str = "default", *, start: datetime | None = None,
              end: datetime | None = None) -> int:
        from projections import events as pe

        return pe.count_events(self.snapshot(), tenant, start=start, end=end)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        guard = self._guard
        if guard.closed:
            return
        self.appender.stop()
        try:
            if guard.healthy:
                try:
                    self.seal()
                except Exception as exc:
                    if not storage_full(exc):
                        raise
                    # Every acknowledged event is in the journal, replayed on next open.
                    _log.warning("closing without sealing the journal (%s): it is "
                                 "replayed when the directory is next opened", exc)
        finally:
            guard.closed = True
            self.checkpointer.stop()
            self.sealer.stop()
            self.readers.closed = True
            with self._lock:
                self.journal.close()
                self.logs.close()
                self.index.close()
                self.manifest.close()
            release_lock(self._lockfd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Ack", "CompactResult", "Ledger", "LedgerError", "LedgerLockedError",
           "SealResult"]
