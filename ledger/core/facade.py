"""``Ledger``: the embedded Python API over one data directory (docs/architecture.md).

A router over the projects' units (``ledger.core.unit.ProjectUnit``: a project is the
unit of durability and ownership, with its own lock, journal, manifest, index and tree
under ``projects/<t>/``). Each unit is the write core, each part an object that owns its
state and is handed what it needs:

* ``recovery``: the project's lock; on open, torn tails cut, leftovers removed, the
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ledger.core.checkpointer import DEFAULT_CHECKPOINT_INTERVAL
from ledger.core.guard import WriteGuard
from ledger.core.prices import ProjectPrices
from ledger.core.readers import Readers
from ledger.core.recovery import release_lock, take_lock
from ledger.core.sealer import (
    DEFAULT_SEAL_INTERVAL,
    DEFAULT_SEAL_ROWS,
    CompactResult,
    SealResult,
)
from ledger.core.unit import ProjectUnit
from ledger.errors import (
    LedgerError,
    LedgerLockedError,
    MisdirectedError,
    NotWritableError,
    OldLayoutError,
)
from ledger.model.event import Ack, Event, EventIn, us_to_datetime
from ledger.model.tenant import check_tenant, is_name
from ledger.storage.dimensions import DeclaredDimensions
from ledger.storage.durable import is_private, private_dir, tighten
from ledger.storage.iceberg import IcebergTable, published_records
from ledger.storage.layout import DataDir
from ledger.storage.manifest import ManifestState, Segment, check_chain, read_lines
from ledger.storage.objectstore import open_storage
from ledger.storage.owners import Owners
from ledger.storage.receipt_entries import ReceiptEntry, tail_tables
from ledger.storage.segments import SegmentStore
from ledger.tlog.checkpoint import SignedCheckpoint
from ledger.tlog.notary import Notary
from ledger.tlog.tiles import TreeStore
from projections.snapshot import SegmentRef, Snapshot
from projections.tailview import TailView

_log = logging.getLogger("ledger")


class Ledger:
    """One data directory, opened for writing by this process alone: a router over the
    projects' units (``ProjectUnit``), each with its own lock, journal, manifest, index
    and tree under ``projects/<t>/``. The units of the projects already written are
    opened (recovered) with the directory; a new project's on its first write."""

    def __init__(self, path: str | os.PathLike[str], *, seal_rows: int = DEFAULT_SEAL_ROWS,
                 pricer: Any = "default", auto_seal: bool = True,
                 seal_interval: float | None = DEFAULT_SEAL_INTERVAL,
                 checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
                 accept_loss: bool = False, owns: Sequence[str] | None = None,
                 url: str | None = None, read_only: bool = False,
                 iceberg: bool | None = None, storage: str | None = None) -> None:
        """Open (creating if needed) the data directory ``path`` for writing.

        ``owns``: write only these projects (their locks are taken now:
        ``LedgerLockedError`` if another process holds one), sharing the directory with
        other processes that own others; a write to another project is refused with
        ``MisdirectedError`` naming its owner's URL from the ownership map, where ``url``
        records this process for its projects. Without ``owns`` the process writes every
        project and no other process may write the directory.

        ``read_only``: take no lock, change nothing (no recovery, no cleanup) and read
        every project's sealed segments, as their manifests say: what read commands do
        beside a live writer (the newest events, still in its journal, are not seen). A
        write is refused with ``LedgerLockedError``.

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
        made by this opening; docs/formats.md). A directory in the layout before projects
        had their own units is refused (``OldLayoutError``: ``llmring ledger migrate``)."""
        self.layout = DataDir(path)
        self.path = self.layout.root
        if self.layout.holds_legacy():
            raise OldLayoutError.at(self.path)
        self._storage = open_storage(self.layout, storage)
        self.read_only = read_only
        if read_only:
            owns, checkpoint_interval = (), None  # every project is read as a foreign one
        else:
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
        self._seal_rows = seal_rows
        self._auto_seal = auto_seal
        self._accept_loss = accept_loss
        self._guard = WriteGuard()  # its lock guards the units and the notary
        self._lock = self._guard.lock
        self._units: dict[str, ProjectUnit] = {}
        self.owns = None if owns is None else frozenset(check_tenant(t) for t in owns)
        """The projects this process may write (None: every project)."""
        self.url = url
        self.owners = Owners(self.layout, self._storage)
        self._notary: Notary | None = None
        self._key_ready = False
        self._on_sync: Callable[[float], None] | None = None
        self._stop = threading.Event()
        self._cadence: threading.Thread | None = None
        self.iceberg: IcebergTable | None = None
        self._publish_lock = threading.Lock()  # one publish at a time across units
        self._seal_interval = seal_interval
        # The tables of the unsealed receipt entries last built by ``snapshot``, with the
        # entries they were built of (a walk of a receipt's pages builds them once).
        self._entry_tables: tuple[list[ReceiptEntry], tuple[Any, Any]] | None = None
        if read_only:
            self._lockfd = -1
            self.store = SegmentStore(self.layout, self._storage)
            self.dimensions = DeclaredDimensions(self.layout)
            self.readers = Readers(self.store.delete)  # nothing is retired: no deletes
            return
        try:
            self._lockfd = take_lock(self.layout, shared=self.owns is not None)
            try:
                if not is_private(self.path):  # written before everything in it was private
                    tighten(self.path)
                self.store = SegmentStore(self.layout, self._storage)
                self.dimensions = DeclaredDimensions(self.layout)
                self.readers = Readers(self.store.delete)  # one for every unit's files
                published = published_records(self.layout)
                self.iceberg = (IcebergTable(self.layout, self.store)
                                if (iceberg if iceberg is not None else published is not None)
                                else None)
                # Every project's journal is checked before any derived file changes.
                opened: list[ProjectUnit] = []
                try:
                    for tenant in (self.layout.project_names() if self.owns is None
                                   else sorted(self.owns)):
                        opened.append(self._new_unit(tenant))
                    for unit in opened:
                        unit.start()
                        self.accepted_losses.extend(unit.accepted_losses)
                except BaseException:
                    for unit in opened:  # nothing sealed: as before the opening
                        unit.release()
                    raise
                self._units.update((u.tenant, u) for u in opened)
                if self.iceberg is not None and published != self.manifest_counts():
                    self._publish()  # catch up: a publish failed, or the table is new
                if self.owns is not None and url is not None:
                    self.owners.record(sorted(self.owns), url)
            except BaseException:
                os.close(self._lockfd)
                raise
        except (OSError, sqlite3.Error) as exc:  # a read-only directory: say so, no trace
            refused = NotWritableError.of(exc, self.path)
            if refused is None:
                raise
            raise refused from exc
        if checkpoint_interval is not None:  # one thread for every project's cadence
            self._cadence = threading.Thread(target=self._cadence_loop,
                                             name="ledger-checkpoints", daemon=True)
            self._cadence.start()

    # -- the projects' units -------------------------------------------------------------
    def unit(self, tenant: str) -> ProjectUnit:
        """The project's unit, opened (locked and recovered) on first use."""
        found = self._units.get(tenant)
        if found is not None:
            return found
        check_tenant(tenant)
        if self.read_only:
            raise LedgerLockedError(f"{self.path} is in use by another process: it was "
                                    "opened read-only, to read beside it; stop the writer "
                                    "to write, or send writes to it (--server)")
        if self.owns is not None and tenant not in self.owns:
            raise MisdirectedError(tenant, self.owners.url_of(tenant))
        with self._lock:
            found = self._units.get(tenant)
            if found is not None:
                return found
            if self._guard.closed:
                raise LedgerError("the ledger is closed")
            unit = self._new_unit(tenant)
            try:
                unit.start()
            except BaseException:
                unit.release()
                raise
            if self._on_sync is not None:
                unit.journal.on_sync = self._on_sync
            self._units[tenant] = unit  # only once started: others use it without the lock
            return unit

    def _new_unit(self, tenant: str) -> ProjectUnit:
        """A project's unit, locked and its journal replayed (not yet ``start``ed)."""
        unit = ProjectUnit(
            self.layout.project(tenant), self.store, pricer_for=self.prices.pricer_for,
            dimensions=self.dimensions, notary=self._signing_notary,
            seal_rows=self._seal_rows, auto_seal=self._auto_seal,
            checkpoint_after_seal=self.checkpoint_interval is not None,
            accept_loss=self._accept_loss, get=self.get,
            seal_interval=self._seal_interval, readers=self.readers,
            publish=self._publish if self.iceberg is not None else None)
        return unit

    def _opened(self, tenant: str) -> ProjectUnit | None:
        """The project's unit if it exists (a read of an unknown project creates none)."""
        found = self._units.get(tenant)
        if (found is None and is_name(tenant) and self.owns is None
                and self.layout.project(tenant).holds_ledger()):
            return self.unit(tenant)
        return found

    def foreign(self) -> dict[str, ManifestState]:
        """The manifest states of the projects other processes own (read, never locked:
        their sealed segments; the unsealed tail lives in the owner)."""
        if self.owns is None:
            return {}
        out = {}
        for tenant in self.layout.project_names():
            if tenant not in self.owns:
                lines, _ = read_lines(self.layout.project(tenant).manifest)
                out[tenant] = check_chain(lines)[0]
        return out

    def units(self) -> list[ProjectUnit]:
        """The open units, by project name."""
        with self._lock:
            return [self._units[t] for t in sorted(self._units)]

    def manifest_counts(self) -> dict[str, int]:
        """Each project's manifest records (the open units', and those other processes
        own): what the Iceberg table records it reflects."""
        counts = {t: state.count for t, state in self.foreign().items()}
        for u in self.units():
            with u.guard.lock:
                counts[u.tenant] = u.manifest.state.count
        return counts

    def _publish(self) -> None:
        """Bring the Iceberg table level with every project's manifest: the union of the
        units' live event segments, one publish at a time across units (never raises)."""
        assert self.iceberg is not None
        with self._publish_lock:
            live: list[Segment] = []
            counts: dict[str, int] = {}
            for tenant, state in self.foreign().items():
                live.extend(state.live.values())
                counts[tenant] = state.count
            for u in self.units():
                with u.guard.lock:
                    live.extend(u.manifest.state.live.values())
                    counts[u.tenant] = u.manifest.state.count
            self.iceberg.publish(live, counts)

    @property
    def seal_rows(self) -> int:
        return self._seal_rows

    @property
    def auto_seal(self) -> bool:
        return self._auto_seal

    @property
    def notary(self) -> Notary:
        """The directory's signing side: origin, key ring, checkpoints, cosignatures (one
        per open directory, shared by every project, built on first use)."""
        with self._lock:
            if self._notary is None:
                self._notary = Notary(self.layout)
            return self._notary

    def _signing_notary(self) -> Notary:
        """The notary, its signing key created first (under the ledger's lock): the
        projects' checkpointers sign concurrently, each under its own lock."""
        with self._lock:
            notary = self.notary
            if not self._key_ready:
                notary.keyring.current()
                self._key_ready = True
            return notary

    # -- appends -------------------------------------------------------------------------
    def append(self, event: Mapping[str, Any] | EventIn, *, tenant: str = "default") -> Ack:
        """Append one event; return once it is durable."""
        return self.append_many([event], tenant=tenant)[0]

    def append_many(self, events: Iterable[Mapping[str, Any] | EventIn], *,
                    tenant: str = "default") -> Sequence[Ack]:
        """Append events atomically: all are recorded, or (on any invalid event or id
        conflict) none is. Returns one acknowledgement per input, in order."""
        check_tenant(tenant)
        return self.unit(tenant).appender.append_many(events, tenant=tenant)

    def submit(self, events: Sequence[Mapping[str, Any] | EventIn], *,
               tenant: str = "default") -> asyncio.Future[Sequence[Ack]]:
        """``append_many`` of a few events (fewer than ``SMALL_APPEND``, 256) from a
        running event loop, without blocking it: a future of that loop, done once the
        events are durable (its result: the acknowledgements; or the refusal). The
        project's unit is opened first if new (``unit``: a project another process owns
        is refused with ``MisdirectedError``)."""
        check_tenant(tenant)
        return self.unit(tenant).appender.submit(events, tenant=tenant)

    # -- sealing and compaction ----------------------------------------------------------
    def flush(self) -> SealResult:
        """Seal everything in every project's journal into segments now."""
        return self.seal()

    def seal(self) -> SealResult:
        results = [u.sealer.seal() for u in self.units()]
        return SealResult(sum(r.events for r in results), sum(r.segments for r in results),
                          max((r.journal for r in results), default=0))

    def compact(self, *, tenant: str | None = None, date: str | None = None) -> CompactResult:
        """Merge the small segments of each (tenant, day) partition into one."""
        units = self.units() if tenant is None else [u for u in [self._opened(tenant)] if u]
        results = [u.sealer.compact(tenant=tenant, date=date) for u in units]
        return CompactResult(sum(r.merged for r in results), sum(r.written for r in results))

    # -- reads ---------------------------------------------------------------------------
    def live_segments(self, tenant: str | None = None, kind: str | None = None
                      ) -> list[Segment]:
        """The live segment files (of one project, of one kind), as their manifests say."""
        units = self.units() if tenant is None else [u for u in [self._opened(tenant)] if u]
        out = []
        for u in units:
            with u.guard.lock:
                out.extend(s for s in u.manifest.state.live.values()
                           if kind is None or s.kind == kind)
        return out

    def manifest_records(self) -> int:
        """The records of every project's manifest."""
        total = 0
        for u in self.units():
            with u.guard.lock:
                total += u.manifest.state.count
        return total

    def snapshot(self) -> Snapshot:
        """The live segment files and the unsealed tail of every project, as of now. The
        files it names stay until it is released (``with ledger.snapshot() as snap:``) or
        collected, even if a compaction retires them meanwhile (``ledger.core.readers``):
        one lease over every unit's files."""
        segments: dict[str, list[SegmentRef]] = {}
        receipt_files: dict[str, list[str]] = {}
        membership_files: dict[str, list[str]] = {}
        tails: dict[str, TailView] = {}
        entries: list[ReceiptEntry] = []
        sizes: dict[str, int] = {}
        receipt_seqs: dict[str, list[int]] = {}
        named: list[str] = []
        lease = None
        units = self.units()
        try:
            for u in units:  # every unit's guard at once: one consistent view
                u.guard.lock.acquire()
            for u in units:
                state = u.manifest.state
                named.extend(s.path for s in state.live.values() if s.kind != "pairs")
                for seg in state.segments():
                    segments.setdefault(seg.tenant, []).append(SegmentRef(
                        self.store.abspath(seg.path), seg.date, seg.seq_min, seg.seq_max,
                        seg.rows))
                for kind, files in (("receipts", receipt_files),
                                    ("membership", membership_files)):
                    for seg in state.segments(kind=kind):
                        files.setdefault(seg.tenant, []).append(self.store.abspath(seg.path))
                entries.extend(u.tail.receipt_entries())
                tails.update(u.tail.views())
                sizes.update(u.logs.sizes)
                receipt_seqs.update({t: list(v) for t, v in u.logs.receipt_seqs.items()})
            lease = self.readers.hold(named)
        finally:
            for u in units:
                u.guard.lock.release()
        for state in self.foreign().values():  # sealed segments only, read-only
            for seg in state.segments():
                segments.setdefault(seg.tenant, []).append(SegmentRef(
                    self.store.abspath(seg.path), seg.date, seg.seq_min, seg.seq_max,
                    seg.rows))
            for kind, files in (("receipts", receipt_files), ("membership", membership_files)):
                for seg in state.segments(kind=kind):
                    files.setdefault(seg.tenant, []).append(self.store.abspath(seg.path))
            sizes.update(state.tenant_rows())
        receipt_tail, membership_tail = self._receipt_tail_tables(entries)
        return Snapshot(segments=segments, tails=tails,
                        dimensioned=frozenset(self.dimensions.projects()),
                        sizes=sizes, receipt_files=receipt_files,
                        membership_files=membership_files, receipt_tail=receipt_tail,
                        membership_tail=membership_tail,
                        filesystem=self.store.fs if self.store.remote else None,
                        receipt_seqs=receipt_seqs, lease=lease)

    def _receipt_tail_tables(self, entries: list[ReceiptEntry]) -> tuple[Any, Any]:
        """``tail_tables(entries)`` (None, None without entries), built again only when
        the entries are not the very ones of the last call (entries never change: the
        list only grows, or a seal starts it afresh)."""
        if not entries:
            return None, None
        cached = self._entry_tables
        if cached is not None and len(cached[0]) == len(entries) and all(
                a is b for a, b in zip(cached[0], entries, strict=True)):
            return cached[1]
        tables = tail_tables(entries)
        self._entry_tables = (entries, tables)
        return tables

    # -- receipt entries (docs/formats.md; content and signing are ``ledger.receipts.issuance``) --
    def receipt_lock(self, tenant: str) -> threading.Lock:
        """The lock that serializes receipt issuance for one tenant."""
        return self.unit(tenant).appender.receipt_lock(tenant)

    def append_receipt(self, tenant: str, ranges: np.ndarray,
                       build: Callable[[int, bytes], bytes]) -> ReceiptEntry:
        """Append a receipt entry certifying the events in ``ranges`` (inclusive runs of
        event seqs). ``build(size, root)`` is called under the write lock with the log's
        size and root just before the entry and returns the entry's canonical bytes (the
        signed receipt). Returns once the entry and its membership are durable."""
        return self.unit(tenant).appender.append_receipt(tenant, ranges, build)

    def resolve(self, tenant: str, event_ids: Sequence[str]) -> dict[str, Ack]:
        """The acknowledgements of known event ids (a usage log paired with its
        conversation resolves to the conversation event); unknown ids are absent."""
        unit = self._opened(tenant)
        if unit is None:
            return {}
        with unit.guard.lock:
            return {k: v.ack for k, v in unit.ids.lookup(tenant, list(event_ids)).items()}

    def leaf_hash_buffer(self, tenant: str, start: int, end: int) -> bytes:
        """The tenant's log leaf hashes [start, end), packed (one read of the tree)."""
        unit = self.unit(tenant)
        with unit.guard.lock:
            return unit.logs.tree(tenant).leaf_hash_buffer(start, end)

    def receipt_seqs(self, tenant: str) -> list[int]:
        """The seqs of the tenant's receipt entries, ascending."""
        unit = self._opened(tenant)
        if unit is None:
            return []
        with unit.guard.lock:
            return list(unit.logs.receipt_seqs.get(tenant, []))

    # -- signed checkpoints (docs/formats.md; notes and the store are ``ledger.tlog``) ---
    def checkpoint(self, tenant: str = "default") -> SignedCheckpoint:
        """Sign the tenant's log as it is now: a C2SP checkpoint (origin
        ``<ledger origin>/<tenant>``, size, root), stored in ``<data>/checkpoints`` and
        returned (``ledger.tlog.checkpoint.SignedCheckpoint``). The journal is synced first,
        so a checkpoint never covers an entry that a crash could lose. If the log has not
        grown since the latest checkpoint, that one is returned."""
        check_tenant(tenant)
        return self.unit(tenant).checkpointer.checkpoint(tenant)

    def checkpoint_grown(self) -> list[SignedCheckpoint]:
        """Checkpoint every tenant whose log grew since its last checkpoint here. A
        refusal (the log contradicts a checkpoint already issued) is logged, not raised:
        `llmring ledger verify` reports it."""
        return [c for u in self.units() for c in u.checkpointer.checkpoint_grown()]

    def _cadence_loop(self) -> None:
        assert self.checkpoint_interval is not None
        while not self._stop.wait(self.checkpoint_interval):
            for unit in self.units():
                try:
                    unit.checkpointer.checkpoint_grown()
                except Exception as exc:
                    if type(exc) is LedgerError:  # closed or failed: writers see it
                        continue
                    _log.exception("cadence checkpoint of %s failed", unit.tenant)

    def size(self, tenant: str = "default") -> int:
        """Number of entries in the tenant's log (its next ``seq``): events and receipt
        entries together."""
        unit = self._opened(tenant)
        if unit is None:
            state = self.foreign().get(tenant)
            return 0 if state is None else state.tenant_rows().get(tenant, 0)
        with unit.guard.lock:
            return unit.logs.size(tenant)

    def tenants(self) -> list[str]:
        out: set[str] = set()
        for u in self.units():
            with u.guard.lock:
                out.update(u.logs.sizes)
        for state in self.foreign().values():
            out.update(state.tenant_rows())
        return sorted(out)

    def tree(self, tenant: str = "default") -> TreeStore:
        """The tenant's log tree (RFC 9162), for roots and proofs."""
        check_tenant(tenant)
        unit = self.unit(tenant)
        with unit.guard.lock:
            return unit.logs.tree(tenant)

    def root(self, tenant: str = "default") -> bytes:
        unit = self.unit(tenant)
        with unit.guard.lock:
            return unit.logs.tree(tenant).root()

    def get(self, tenant: str, event_id: str) -> Event | None:
        unit = self._opened(tenant)
        if unit is None:
            return None
        with unit.guard.lock:
            found = unit.ids.lookup(tenant, [event_id]).get(event_id)
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

    # -- what ``llmring serve`` measures (/metrics) ----------------------------------------
    def counters(self) -> Counters:
        """The counts of every project's write core since the ledger opened."""
        c = Counters()
        for u in self.units():
            c.events_appended += u.appender.events_appended
            c.receipts_appended += u.appender.receipts_appended
            c.journal_bytes += u.journal.written
            c.seals += u.sealer.seals
            c.compactions += u.sealer.compactions
            c.writable = c.writable and u.journal.healthy
            for project, nanos in dict(u.appender.cost_nanos).items():
                c.cost_nanos[project] = c.cost_nanos.get(project, 0) + nanos
        return c

    def on_sync(self, observe: Callable[[float], None]) -> None:
        """Tell ``observe`` the seconds of every journal group-commit fsync."""
        with self._lock:
            self._on_sync = observe
            for u in self._units.values():
                u.journal.on_sync = observe

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        guard = self._guard
        if guard.closed:
            return
        self._stop.set()
        try:
            self._close_units()
            if self.owns is not None and self.url is not None:
                self.owners.forget(sorted(self.owns), self.url)
        finally:
            guard.closed = True
            if self._cadence is not None:
                self._cadence.join(timeout=30)
            self.readers.closed = True
            if self._lockfd >= 0:
                release_lock(self._lockfd)

    def _close_units(self) -> None:
        """Close every unit (the first failure is raised once all were tried)."""
        failure: BaseException | None = None
        for unit in list(self._units.values()):
            try:
                unit.close()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Counters:
    """Counts of the write core since the ledger opened (``Ledger.counters``)."""

    events_appended: int = 0
    receipts_appended: int = 0
    journal_bytes: int = 0
    seals: int = 0
    compactions: int = 0
    writable: bool = True
    cost_nanos: dict[str, int] = field(default_factory=dict)


__all__ = ["Ack", "CompactResult", "Counters", "Ledger", "LedgerError", "LedgerLockedError",
           "SealResult"]
