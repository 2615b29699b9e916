"""``Ledger``: the embedded Python API over one data directory (DESIGN §2, §4).

It owns the write path: validate → assign a gap-free per-tenant ``seq`` → write the
journal → index, tail and Merkle tree → group-commit fsync → acknowledge. Sealing moves
the journal's events into Parquet segments committed by the manifest; compaction merges
small segments. Opening a directory takes its lock and recovers from any crash: torn
journal and manifest tails are cut, stray files from unfinished seals are removed, the
journal is replayed, and the index and trees are brought level with the log.

Reads (listing, counts, rollups) go through ``projections`` over a snapshot of the live
segment files plus the unsealed tail, so an acknowledged event is visible at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ledger.errors import LedgerError, LedgerLockedError
from ledger.model.batch import BatchAcks, PreparedBatch, prepare_batch
from ledger.model.event import (
    Ack,
    Event,
    EventIn,
    IdConflictError,
    Prepared,
    _check_metadata,
    canonical_json,
    format_ts,
    generated_id_ms,
    is_generated_id,
    leaf_hash_of,
    new_event_id,
    now_us,
    row_of,
    ts_to_us,
    us_to_datetime,
)
from ledger.model.schema import LEDGER_FIELDS, PRICE_FIELDS, ROW_INDEX
from ledger.model.tenant import check_tenant
from ledger.storage import journal as jr
from ledger.storage.index import IdEntry, Index
from ledger.storage.layout import DataDir
from ledger.storage.manifest import Manifest, ManifestState, Segment
from ledger.storage.receipt_entries import (
    ReceiptEntry,
    membership_table,
    pack_ranges,
    receipts_table,
    tail_tables,
    unpack_ranges,
)
from ledger.storage.segments import PAIR_SCHEMA, SegmentStore, rows_to_table
from ledger.tlog.notary import Notary
from ledger.tlog.tiles import TreeStore
from projections.snapshot import SegmentRef, Snapshot

_TS_AT = ROW_INDEX["ts"]  # where ``ts`` (µs) is in a row tuple
_INDEXED = ("event_id", "seq", "ts", "cost_nanos", "cost_source", "conversation_id", "kind")
DEFAULT_SEAL_ROWS = 250_000
COMPACT_TARGET_ROWS = 1_000_000
COMPACT_MIN_FILES = 8
DAY_US = 86_400_000_000
DEFAULT_CHECKPOINT_INTERVAL = 60.0  # seconds between cadence checkpoints of grown logs
_log = logging.getLogger("ledger")
SMALL_APPEND = 256  # appends of fewer events gather as rows in an open tail part
OPEN_PART_ROWS = 65_536  # rows an open tail part takes before a new part starts
SEAL_THREADS = 2  # segments written at once by a seal
GC_PAUSE_BATCH = 1_000  # batches at least this large are prepared with the collector paused


def day_of(ts_us: int) -> str:
    return format_ts(ts_us - ts_us % DAY_US)[:10]


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
            self.days = _day_runs(np.array([r[_TS_AT] // DAY_US for r in rows],
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


@dataclass(slots=True, eq=False)
class _Queued:
    """A small append waiting for the committer thread."""

    tenant: str
    events: Sequence[Any]
    received: int  # µs: the ts of an event sent without one
    batch: PreparedBatch | None = None
    done: threading.Event = field(default_factory=threading.Event)
    acks: Sequence[Ack] | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SealResult:
    events: int
    segments: int
    journal: int


@dataclass(frozen=True, slots=True)
class CompactResult:
    merged: int
    written: int


class Ledger:
    """One data directory, opened for writing by this process alone."""

    def __init__(self, path: str | os.PathLike[str], *, seal_rows: int = DEFAULT_SEAL_ROWS,
                 pricer: Any = "default", auto_seal: bool = True,
                 checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL) -> None:
        """Open (creating if needed) the data directory ``path`` for writing.

        ``checkpoint_interval``: every so many seconds, and at every seal, each project
        whose log grew gets a signed checkpoint (``checkpoint``); None turns the cadence
        off (checkpoints are then issued on demand and with receipts only)."""
        self.layout = DataDir(path)
        self.path = self.layout.root
        self.path.mkdir(parents=True, exist_ok=True)
        self.seal_rows = seal_rows
        self.auto_seal = auto_seal
        if pricer == "default":
            from ledger.model.pricing import PriceBook

            pricer = PriceBook()
        self.pricer = pricer
        self._lock = threading.RLock()
        self._written_announced: dict[int, bool] = {}  # thread → its announced append wrote
        self._seal_lock = threading.Lock()
        self._closed = False
        self._failed: BaseException | None = None
        self._lockfd = self._take_lock()
        try:
            self._open()
        except BaseException:
            os.close(self._lockfd)
            raise
        self._queue: list[_Queued] = []
        self._queue_cv = threading.Condition()
        self._queue_closed = False
        self._committer: threading.Thread | None = None
        self._sync_cv = threading.Condition()
        self._to_sync: list[tuple[int, list[_Queued] | None]] = []
        self._seal_wakeup = threading.Event()
        self._sealer: threading.Thread | None = None
        self._seal_error: BaseException | None = None
        self.checkpoint_interval = checkpoint_interval
        self._notary: Notary | None = None
        self._checkpointed: dict[str, int] = {}  # tenant → log size of its last checkpoint
        self._stop = threading.Event()
        self._cadence: threading.Thread | None = None
        if checkpoint_interval is not None:
            self._cadence = threading.Thread(target=self._checkpoint_loop,
                                             name="ledger-checkpoints", daemon=True)
            self._cadence.start()

    # -- opening and recovery ------------------------------------------------------------
    def _take_lock(self) -> int:
        fd = os.open(self.layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LedgerLockedError(
                f"{self.path} is in use by another process (pid {holder or '?'}); "
                "stop it, or talk to it with --server if it is `llmring serve`") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _open(self) -> None:
        self.store = SegmentStore(self.layout)
        self.manifest = Manifest(self.layout.manifest)
        state = self.manifest.state
        jdir = self.layout.journal
        jdir.mkdir(exist_ok=True)
        # Journal files already sealed are leftovers of a crash after the manifest commit.
        for number, p in jr.journal_files(jdir):
            if number <= state.sealed_journal:
                p.unlink()
        # Segment files that no manifest record names are leftovers of an unfinished seal.
        live = set(state.live)
        for rel in self.store.stray_files(live):
            self.store.delete(rel)
        self._sizes: dict[str, int] = dict(state.tenant_rows())
        self._receipt_seqs: dict[str, list[int]] = self._sealed_receipt_seqs(state)
        self._receipt_locks: dict[str, threading.Lock] = {}
        self._frozen: list[TailChunk] = []
        replay: list[TailChunk] = []
        last = state.sealed_journal
        for number, p in jr.journal_files(jdir):
            replay.append(self._replay_file(number, p))
            last = number
        self._pending_replay = replay
        self.index = Index(self.layout.index)
        self._catch_up_index(state)
        # Replayed chunks are sealed like any other; new appends go to a fresh file.
        self._frozen = [c for c in replay if c]
        for c in replay:
            if not c:
                self.layout.journal_file(c.journal).unlink(missing_ok=True)
        self._active = TailChunk(journal=last + 1)
        self.journal = jr.Journal(jdir, last + 1)
        self._trees: dict[str, TreeStore] = {}
        for tenant in self._sizes:
            self._tree(tenant)
        self._pending_replay = []
        self._retired: list[str] = []
        self._tail_tables: list[pa.Table] = []
        self._tail_built: list[tuple[TailChunk, int]] = []
        self._version = 0

    def _replay_file(self, number: int, path: Path) -> TailChunk:
        records, committed, length = jr.read_records(path)
        if committed != length:  # a torn or unacknowledged batch at the end: cut it off
            with open(path, "r+b") as fh:
                fh.truncate(committed)
                os.fsync(fh.fileno())
        chunk = TailChunk(journal=number)
        rows: list[tuple[Any, ...]] = []
        tenants: list[str] = []
        digests: list[bytes | None] = []
        receipts: list[tuple[jr.ReceiptRecord, str, list[bytes]]] = []
        for rec in records:
            if isinstance(rec, jr.EventRecord):
                fields = orjson.loads(rec.canonical)
                tenant = fields["tenant"]
                expected = self._sizes.get(tenant, 0)
                if rec.seq != expected:
                    raise LedgerError(
                        f"journal {path.name}: tenant {tenant!r} event {fields['event_id']!r} "
                        f"has seq {rec.seq}, expected {expected}; run `llmring ledger verify`")
                self._sizes[tenant] = expected + 1
                rows.append(_row_from_canonical(fields, rec))
                tenants.append(tenant)
                digests.append(rec.digest or None)
            elif isinstance(rec, jr.PairRecord):
                chunk.pairs.append(rec.data)
            elif isinstance(rec, jr.ReceiptRecord):
                tenant = orjson.loads(rec.canonical)["tenant"]
                expected = self._sizes.get(tenant, 0)
                if rec.seq != expected:
                    raise LedgerError(
                        f"journal {path.name}: tenant {tenant!r} receipt entry has seq "
                        f"{rec.seq}, expected {expected}; run `llmring ledger verify`")
                self._sizes[tenant] = expected + 1
                self._receipt_seqs.setdefault(tenant, []).append(rec.seq)
                receipts.append((rec, tenant, []))
            elif isinstance(rec, jr.MembershipRecord):
                if not receipts or receipts[-1][0].seq != rec.receipt_seq:
                    raise LedgerError(f"journal {path.name}: membership of seq "
                                      f"{rec.receipt_seq} does not follow its receipt entry")
                receipts[-1][2].append(rec.ranges)
        for rec, tenant, parts in receipts:
            chunk.receipts.append(_receipt_entry(tenant, rec.seq, rec.recorded_at_us,
                                                 rec.canonical, b"".join(parts)))
        start = 0
        for end in range(1, len(rows) + 1):  # one part per run of one tenant's events
            if end == len(rows) or tenants[end] != tenants[start]:
                chunk.add(TailPart(tenants[start], digests[start:end],
                                   rows=rows[start:end]))
                start = end
        return chunk

    def _sealed_receipt_seqs(self, state: ManifestState) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for seg in state.segments(kind="receipts"):
            seqs = self.store.read(seg, ["seq"]).column("seq").to_pylist()
            out.setdefault(seg.tenant, []).extend(seqs)
        for seqs in out.values():
            seqs.sort()
        return out

    def _catch_up_index(self, state: ManifestState) -> None:
        """Make the index cover the sealed segments (after a lost or stale index file)."""
        head = self.index.head()
        if head != state.head:
            start = state.hashes.index(head) + 1 if head in state.hashes else 0
            if start == 0:
                self.index.clear()
            self.index.begin()
            for seg in _segments_to_index(state.records[start:]):
                if seg.path in state.live:
                    self._index_segment(seg)
            self.index.set_head(state.head)
            self.index.commit(durable=True)
        self.index.begin()
        for chunk in self._pending_replay:
            for part in chunk.parts:
                self._index_part(part, replace=True)
            for pair in chunk.pairs:
                self._index_pair(pair)
        self.index.commit()

    def _index_segment(self, seg: Segment) -> None:
        if seg.kind == "events":
            table = self.store.read(seg, list(_INDEXED))
            self._index_table(seg.tenant, table, [None] * table.num_rows, replace=True)
        elif seg.kind == "pairs":
            t = self.store.read(seg).to_pylist()
            for p in t:
                self._index_pair({"tenant": seg.tenant, "event_id": p["event_id"],
                                  "usage_id": p["usage_id"], "digest": p["digest"]})

    def _index_part(self, part: TailPart, *, replace: bool = False) -> None:
        self._index_table(part.tenant, part.table, part.digests, replace=replace)

    def _index_table(self, tenant: str, table: pa.Table, digests: Sequence[bytes | None], *,
                     replace: bool) -> None:
        """Index the events of a segment or a replayed tail part (``digests`` in its row
        order; None where unknown or the id was generated)."""
        d = table.select(list(_INDEXED)).to_pydict()
        self._index_columns(tenant, d["event_id"], d["seq"], [ts_to_us(t) for t in d["ts"]],
                            d["cost_nanos"], d["cost_source"], d["conversation_id"],
                            d["kind"], digests, replace=replace)

    def _index_columns(self, tenant: str, ids: Sequence[str], seqs: Sequence[int],
                       ts_us: Sequence[int], costs: Sequence[int], sources: Sequence[str],
                       convs: Sequence[str | None], kinds: Sequence[str],
                       digests: Sequence[bytes | None], *, replace: bool = False,
                       generated: Sequence[bool] | None = None) -> None:
        """Index appended events. A usage event whose id the ledger generated is left out
        (``generated``, or else: no digest and the generated shape): nobody can have sent
        that id before, and a later lookup finds it by the day the id names
        (``_find_generated``). Conversation events are always indexed, for pairing."""
        if generated is None:
            generated = [d is None and is_generated_id(e) for e, d in zip(ids, digests,
                                                                          strict=True)]
        kept = [r for r, g in zip(zip(ids, seqs, digests, ts_us, costs, sources, convs,
                                      kinds, strict=True), generated, strict=True)
                if not g or r[7] == "conversation"]
        if kept:  # (event_id, seq, digest, ts, cost, source, conversation, target)
            self.index.add_ids(tenant, [(*r[:7], None) for r in kept], replace=replace)
        conversations = [(r[6], r[1], r[0]) for r in kept if r[7] == "conversation"]
        if conversations:
            self.index.add_conversations(tenant, conversations)

    def _lookup(self, tenant: str, event_ids: Sequence[str]) -> dict[str, IdEntry]:
        """The index entries of ``event_ids`` (call with the write lock held); ids the
        ledger generated for usage events are found in the log itself."""
        found = self.index.lookup(tenant, event_ids)
        rest = [e for e in event_ids if e not in found and is_generated_id(e)]
        if rest:
            found.update(self._find_generated(tenant, rest))
        return found

    def _find_generated(self, tenant: str, event_ids: Sequence[str]) -> dict[str, IdEntry]:
        """Events with generated ids, looked up in the unsealed tail and in the segments
        of the days the ids name (a generated id carries its event's ``ts``)."""
        want = set(event_ids)
        columns = ["event_id", "seq", "ts", "cost_nanos", "cost_source", "conversation_id"]
        tables = []
        needle = pa.array(sorted(want), pa.string())
        active = getattr(self, "_active", None)  # absent while the directory opens
        for chunk in [*self._pending_replay, *self._frozen, *([active] if active else [])]:
            for part in chunk.parts:
                if part.tenant == tenant:
                    mask = pc.is_in(part.table.column("event_id"), value_set=needle)
                    if pc.any(mask).as_py():
                        tables.append(part.table.filter(mask).select(columns))
        dates = {day_of(generated_id_ms(e) * 1000) for e in want}
        for seg in self.manifest.state.segments(tenant):
            if seg.date in dates:
                t = pq.read_table(self.store.abspath(seg.path), columns=columns,
                                  filters=pc.field("event_id").isin(needle))
                if t.num_rows:
                    tables.append(t)
        out: dict[str, IdEntry] = {}
        for t in tables:
            for r in t.to_pylist():
                ack = Ack(r["event_id"], tenant, r["seq"], ts_to_us(r["ts"]), r["cost_nanos"],
                          r["cost_source"], r["conversation_id"], created=False)
                out[r["event_id"]] = IdEntry(ack, None, None)
        return out

    def _index_pair(self, pair: Mapping[str, Any]) -> None:
        tenant = pair["tenant"]
        self.index.mark_paired(tenant, [pair["event_id"]])
        if pair.get("usage_id"):
            target = self._lookup(tenant, [pair["event_id"]]).get(pair["event_id"])
            if target is not None:
                a = target.ack
                digest = pair.get("digest")
                if isinstance(digest, str):
                    digest = bytes.fromhex(digest)
                self.index.add_ids(tenant, [(pair["usage_id"], a.seq, digest, a.ts_us,
                                             a.cost_nanos, a.cost_source, a.conversation_id,
                                             pair["event_id"])], replace=True)

    def _tree(self, tenant: str) -> TreeStore:
        tree = self._trees.get(tenant)
        if tree is not None:
            return tree
        tree = TreeStore(self.layout.tree(tenant))
        size = self._sizes.get(tenant, 0)
        if tree.size > size:
            tree.truncate(size)
        elif tree.size < size:
            self._fill_tree(tenant, tree, size)
        self._trees[tenant] = tree
        return tree

    def _fill_tree(self, tenant: str, tree: TreeStore, size: int) -> None:
        have = tree.size
        state = self.manifest.state
        sealed = sorted(
            (s for s in [*state.segments(tenant), *state.segments(tenant, kind="receipts")]
             if s.seq_max >= have),
            key=lambda s: s.seq_min)
        hashes: dict[int, bytes] = {}
        for seg in sealed:
            t = self.store.read(seg, ["seq", "leaf_hash"]).to_pydict()
            for s, h in zip(t["seq"], t["leaf_hash"], strict=True):
                if s >= have:
                    hashes[s] = h
        for chunk in [*self._pending_replay, *self._frozen]:
            for part in chunk.parts:
                if part.tenant != tenant:
                    continue
                t = part.table.select(["seq", "leaf_hash"]).to_pydict()
                for s, h in zip(t["seq"], t["leaf_hash"], strict=True):
                    if s >= have:
                        hashes[s] = h
            for entry in chunk.receipts:
                if entry.tenant == tenant and entry.seq >= have:
                    hashes[entry.seq] = entry.leaf_hash
        missing = [s for s in range(have, size) if s not in hashes]
        if missing:
            raise LedgerError(f"tenant {tenant!r}: events {missing[:5]} are missing from the "
                              "log; run `llmring ledger verify`")
        tree.append([hashes[s] for s in range(have, size)])

    # -- public: appends -----------------------------------------------------------------
    def append(self, event: Mapping[str, Any] | EventIn, *, tenant: str = "default") -> Ack:
        """Append one event; return once it is durable."""
        return self.append_many([event], tenant=tenant)[0]

    def append_many(self, events: Iterable[Mapping[str, Any] | EventIn], *,
                    tenant: str = "default") -> Sequence[Ack]:
        """Append events atomically: all are recorded, or (on any invalid event or id
        conflict) none is. Returns one acknowledgement per input, in order."""
        check_tenant(tenant)
        received = now_us()
        if not isinstance(events, Sequence):
            events = list(events)
        if len(events) < SMALL_APPEND:
            return self._append_queued(_Queued(tenant, events, received))
        self.journal.announce()  # so a concurrent group commit can wait for this append
        with _collector_paused(len(events) >= GC_PAUSE_BATCH):
            try:
                batch = prepare_batch(events, tenant=tenant, received_us=received,
                                      pricer=self.pricer)
            except BaseException:
                self.journal.abandon()
                raise
            try:
                acks, position = self._append_batch_locked(tenant, batch, announced=True)
            finally:
                if not self._written_announced.pop(threading.get_ident(), False):
                    self.journal.abandon()
        # Durable before acknowledged (this also covers a repeat of a still-pending event).
        self.journal.commit(position)
        return acks

    # Small appends go through one committer thread: it prepares the events of every
    # waiting request together (one column pass), appends the requests in turn (each all
    # or nothing, as if alone), makes them durable with one fsync and wakes their callers.
    # Many concurrent writers then cost one hand-off each, not a contended write lock,
    # journal and per-event preparation each.
    def _append_queued(self, item: _Queued) -> Sequence[Ack]:
        with self._queue_cv:
            if self._queue_closed:
                raise LedgerError("the ledger is closed")
            self._queue.append(item)
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_loop,
                                                   name="ledger-commit", daemon=True)
                self._committer.start()
            self._queue_cv.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.acks is not None
        return item.acks

    def _commit_loop(self) -> None:
        syncer = threading.Thread(target=self._sync_loop, name="ledger-sync", daemon=True)
        syncer.start()
        try:
            while True:
                with self._queue_cv:
                    while not self._queue and not self._queue_closed:
                        self._queue_cv.wait()
                    if not self._queue:
                        return
                    items, self._queue = self._queue, []
                self._prepare_queued(items)
                position = -1
                for item in items:
                    if item.batch is None:
                        continue
                    try:
                        item.acks, written = self._append_batch_locked(
                            item.tenant, item.batch, announced=False)
                        position = max(position, written)
                    except BaseException as exc:  # this request alone is refused
                        item.error = exc
                # The fsync runs in the syncer thread while this one takes the next round.
                with self._sync_cv:
                    self._to_sync.append((position, items))
                    self._sync_cv.notify()
        finally:
            with self._sync_cv:
                self._to_sync.append((-1, None))  # stop, after what is already queued
                self._sync_cv.notify()
            syncer.join()

    def _sync_loop(self) -> None:
        while True:
            with self._sync_cv:
                while not self._to_sync:
                    self._sync_cv.wait()
                rounds, self._to_sync = self._to_sync, []
            stop = any(items is None for _, items in rounds)
            position = max(p for p, _ in rounds)
            error: BaseException | None = None
            if position >= 0:
                try:
                    self.journal.commit(position)
                except BaseException as exc:  # not durable: nobody is acknowledged
                    error = exc
            for _, items in rounds:
                for item in items or ():
                    if error is not None and item.error is None:
                        item.error = error
                    item.done.set()
            if stop:
                return

    def _prepare_queued(self, items: list[_Queued]) -> None:
        """Prepare the events of waiting requests, one batch per tenant; if that batch is
        refused, each request alone (so only the invalid one fails, with its own index)."""
        by_tenant: dict[str, list[_Queued]] = {}
        for item in items:
            by_tenant.setdefault(item.tenant, []).append(item)
        for tenant, group in by_tenant.items():
            events = [e for item in group for e in item.events]
            received = [item.received for item in group for _ in item.events]
            try:
                batch = prepare_batch(events, tenant=tenant, received_us=received,
                                      pricer=self.pricer)
            except Exception:
                for item in group:
                    try:
                        item.batch = prepare_batch(item.events, tenant=tenant,
                                                   received_us=item.received,
                                                   pricer=self.pricer)
                    except BaseException as exc:
                        item.error = exc
                continue
            start = 0
            for item in group:
                item.batch = batch.slice(start, start + len(item.events))
                start += len(item.events)

    def _stop_committer(self) -> None:
        """Refuse new small appends, and let the committer finish the waiting ones."""
        with self._queue_cv:
            self._queue_closed = True
            self._queue_cv.notify_all()
        if self._committer is not None:
            self._committer.join()

    def _append_batch_locked(self, tenant: str, batch: PreparedBatch,
                             announced: bool) -> tuple[Sequence[Ack], int]:
        """Append prepared events; return their acknowledgements and the journal position
        to commit before giving them out. ``announced``: the caller announced this append
        to the journal (it is marked written here, or the caller abandons it)."""
        n = len(batch)
        ids = batch.event_id
        client = [i for i, generated in enumerate(batch.generated) if not generated]
        # Repeats inside the batch: identical → stored once; different → conflict.
        first: dict[str, int] = {}
        repeat_of: dict[int, int] = {}
        for i in client:
            j = first.setdefault(ids[i], i)
            if j == i:
                continue
            if batch.digest[i] != batch.digest[j]:
                diffs = _differences(batch.fields(j), batch.prepared(i))
                if diffs:
                    raise IdConflictError(ids[i], diffs)
            repeat_of[i] = j
        # Usage logs that may complete a conversation event (DESIGN §3).
        candidates: set[int] = set()
        if any(batch.id_at_origin) or '"conversation_id"' in "".join(batch.metadata_json):
            candidates = {i for i in range(n) if batch.kind[i] == "usage" and (
                batch.id_at_origin[i] or "conversation_id" in batch.metadata[i])}
        with self._lock:
            self._check_writable()
            tree = self._tree(tenant)
            lookup = [ids[i] for i in client if i not in repeat_of]
            known = self._lookup(tenant, lookup) if lookup else {}
            fixed: dict[int, Ack] = {}  # acknowledgements of events not created now
            new: list[int] | None = None  # positions of the events to create (None: all)
            pairs: list[tuple[int, str | int]] = []  # (usage position, conv id | new pos)
            if known or candidates or repeat_of:
                new = []
                local_convs: dict[str, list[int]] = {}  # conversation id → unpaired new
                paired_now: set[str] = set()
                for i in range(n):
                    if i in repeat_of:
                        continue
                    entry = None if batch.generated[i] else known.get(ids[i])
                    if entry is not None:
                        if entry.digest is None or entry.digest != batch.digest[i]:
                            self._compare_with_stored(tenant, batch.prepared(i),
                                                      entry.ack.event_id,
                                                      paired=entry.target is not None,
                                                      digest=entry.digest)
                        fixed[i] = entry.ack
                        continue
                    if i in candidates:
                        target = self._pair_target(tenant, batch.metadata[i],
                                                   batch.id_at_origin[i], paired_now,
                                                   local_convs)
                        if target is not None:
                            pairs.append((i, target))
                            continue
                    if batch.kind[i] == "conversation":
                        local_convs.setdefault(batch.conversation_id[i], []).append(len(new))
                    new.append(i)
            size = self._sizes.get(tenant, 0)
            recorded = now_us()
            acks = BatchAcks(batch, size, new, fixed)

            def pick(column: list[Any]) -> list[Any]:
                return column if new is None else [column[i] for i in new]

            count = n if new is None else len(new)
            frames: list[bytes] = []
            if count:
                digests = pick(batch.digest)
                canonical = pick(batch.canonical)
                if count >= SMALL_APPEND:  # the table's rows grouped by day, for the seal
                    days = np.asarray(pick(batch.ts_us), dtype=np.int64) // DAY_US
                    order = np.argsort(days, kind="stable")
                    at = order.tolist()
                    table = batch.table(np.arange(size, size + count), recorded, new)
                    table = table.take(order)  # one Arrow gather of a fresh table: cheap
                    runs = _day_runs(days[order])
                    frames.extend(jr.encode_events_parts(size, recorded, digests, canonical))
                else:  # rows for the open tail part; one E frame per event: less to pack
                    rows = batch.rows(size, recorded, new)
                    frames.extend(jr.encode_event(size + k, recorded, d, c) for k, (d, c)
                                  in enumerate(zip(digests, canonical, strict=True)))
            pair_records = []
            for i, target in pairs:
                if isinstance(target, int):  # a conversation event created by this batch
                    conv_ack = acks[new[target]]  # type: ignore[index]
                    event_id = conv_ack.event_id
                else:
                    event_id = target
                    conv_ack = self._ack_of(tenant, event_id)
                fixed[i] = Ack(conv_ack.event_id, tenant, conv_ack.seq, conv_ack.ts_us,
                               conv_ack.cost_nanos, conv_ack.cost_source,
                               conv_ack.conversation_id, created=False)
                digest = batch.digest[i]
                record = {"tenant": tenant, "event_id": event_id,
                          "usage_id": None if batch.generated[i] else ids[i],
                          "digest": digest.hex() if digest else None,
                          "recorded_at": recorded}
                pair_records.append(record)
                frames.append(jr.encode_pair(record))
            if frames:
                frames.append(jr.COMMIT_FRAME)
                try:
                    position = self.journal.write(frames, announced=announced)
                    if announced:
                        self._written_announced[threading.get_ident()] = True
                except OSError as exc:
                    self._failed = exc
                    raise LedgerError(f"could not write the journal: {exc}") from exc
                self._sizes[tenant] = size + count
                if count:
                    digests = [d or None for d in digests]
                    generated = pick(batch.generated)
                    kinds = pick(batch.kind)
                    indexed = not all(generated) or "conversation" in kinds
                if pair_records or (count and indexed):
                    self.index.begin()
                    try:
                        if count and indexed:
                            self._index_columns(
                                tenant, pick(ids), range(size, size + count),
                                pick(batch.ts_us), pick(batch.cost_nanos),
                                pick(batch.cost_source), pick(batch.conversation_id), kinds,
                                digests, generated=generated)
                        for record in pair_records:
                            self._index_pair(record)
                        self.index.commit()
                    except BaseException as exc:
                        self.index.rollback()
                        self._failed = exc
                        raise
                if count >= SMALL_APPEND:
                    self._active.add(TailPart(tenant, [digests[k] for k in at], table, runs))
                elif count:
                    self._active.add_rows(tenant, rows, digests)
                if count:
                    tree.append(pick(batch.leaf_hash))
                self._active.pairs.extend(pair_records)
                self._version += 1
            else:
                position = self.journal.position
            tail_rows = self._tail_rows()
        for i, j in repeat_of.items():
            a = acks[j]
            fixed[i] = Ack(a.event_id, a.tenant, a.seq, a.ts_us, a.cost_nanos, a.cost_source,
                           a.conversation_id, created=False)
        if self.auto_seal and tail_rows >= self.seal_rows:
            self._request_seal()
        return acks, position

    def _check_writable(self) -> None:
        if self._closed:
            raise LedgerError("the ledger is closed")
        if self._failed is not None:
            raise LedgerError(f"the ledger stopped accepting writes after an I/O error: "
                              f"{self._failed}")
        if self._seal_error is not None:
            raise LedgerError(f"sealing failed: {self._seal_error}")

    def _pair_target(self, tenant: str, metadata: Mapping[str, Any], id_at_origin: str | None,
                     paired_now: set[str], local_convs: dict[str, list[int]]
                     ) -> str | int | None:
        """The conversation event a usage log completes (DESIGN §3): the oldest event of
        the conversation it names that has no partner yet; None if it is a new call."""
        meta_conv = metadata.get("conversation_id")
        names = [c for c in (meta_conv, id_at_origin) if isinstance(c, str) and c]
        for conv in dict.fromkeys(names):
            found = self.index.unpaired_conversation(tenant, conv, exclude=paired_now)
            if found is not None:
                paired_now.add(found[1])
                return found[1]
            waiting = local_convs.get(conv)
            if waiting:
                return waiting.pop(0)
        return None

    def _ack_of(self, tenant: str, event_id: str) -> Ack:
        entry = self._lookup(tenant, [event_id])[event_id]
        return entry.ack

    def _compare_with_stored(self, tenant: str, p: Prepared, stored_id: str, *, paired: bool,
                             digest: bytes | None) -> None:
        """A repeated id whose digest differs (or is unknown): compare field by field."""
        if paired:  # a usage log joined to a conversation: only its digest was kept
            if digest is not None:
                raise IdConflictError(p.event_id)
            return
        stored = self.get(tenant, stored_id)
        if stored is None:  # pragma: no cover - index and log disagree
            raise LedgerError(f"event {stored_id!r} is indexed but not in the log")
        diffs = _differences(stored.to_json_dict(), p)
        if diffs:
            raise IdConflictError(p.event_id, diffs)

    # -- sealing and compaction ----------------------------------------------------------
    def _tail_rows(self) -> int:
        return self._active.events + sum(c.events for c in self._frozen)

    def _request_seal(self) -> None:
        if self._sealer is None or not self._sealer.is_alive():
            self._sealer = threading.Thread(target=self._seal_loop, name="ledger-seal",
                                            daemon=True)
            self._sealer.start()
        self._seal_wakeup.set()

    def _seal_loop(self) -> None:
        while not self._closed:
            if not self._seal_wakeup.wait(timeout=1.0):
                continue
            self._seal_wakeup.clear()
            try:
                if self._tail_rows() >= self.seal_rows:
                    self.seal()
            except BaseException as exc:  # surfaced to writers by _check_writable
                self._seal_error = exc
                return

    def flush(self) -> SealResult:
        """Seal everything in the journal into segments now."""
        return self.seal()

    def seal(self) -> SealResult:
        with self._seal_lock:
            with self._lock:
                if self._active:
                    closed = self.journal.rotate()
                    self._frozen.append(self._active)
                    self._active = TailChunk(journal=self.journal.number)
                frozen = list(self._frozen)
                tree_tenants = list(self._trees.values())
                for chunk in frozen:  # build open parts now: the writes below are unlocked
                    for part in chunk.parts:
                        part.day_slices()
            if not frozen:
                return SealResult(0, 0, self.manifest.state.sealed_journal)
            closed = max(c.journal for c in frozen)
            segments = self._write_segments(frozen)
            for tree in tree_tenants:
                tree.sync()
            with self._lock:
                self.manifest.append("seal", _now_text(), add=segments, journal=closed)
                self._frozen = [c for c in self._frozen if c not in frozen]
                self.index.begin()
                self.index.set_head(self.manifest.state.head)
                self.index.commit(durable=True)
                self._version += 1
            for number, p in jr.journal_files(self.journal.directory):
                if number <= closed:
                    p.unlink(missing_ok=True)
            events = sum(c.events for c in frozen)
            result = SealResult(events, len(segments), closed)
        self._maybe_compact(segments)
        if self.checkpoint_interval is not None:
            self.checkpoint_grown()
        return result

    def _write_segments(self, chunks: list[TailChunk]) -> list[Segment]:
        by_day: dict[tuple[str, str], list[pa.Table]] = {}
        for chunk in chunks:
            for part in chunk.parts:  # in seq order: appended in that order
                for date, rows in part.day_slices():
                    by_day.setdefault((part.tenant, date), []).append(rows)
        name = f"{chunks[-1].journal:08d}-{new_event_id()[-12:]}"
        jobs = [(tenant, date, pa.concat_tables(tables))
                for (tenant, date), tables in sorted(by_day.items())]
        # Encoding, compressing and syncing a segment release the GIL: two at a time.
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
            segments.append(self.store.write(
                table, DataDir.partition("pairs", tenant), f"pairs-{name}.parquet",
                tenant=tenant, date="", kind="pairs"))
        receipts: dict[str, list[ReceiptEntry]] = {}
        for chunk in chunks:
            for entry in chunk.receipts:
                receipts.setdefault(entry.tenant, []).append(entry)
        for tenant, entries in sorted(receipts.items()):
            segments.append(self.store.write(
                receipts_table(entries), DataDir.partition("receipts", tenant),
                f"rcpt-{name}.parquet", tenant=tenant, date="", kind="receipts"))
            segments.append(self.store.write(
                membership_table(entries), DataDir.partition("membership", tenant),
                f"mem-{name}.parquet", tenant=tenant, date="", kind="membership"))
        return segments

    def _maybe_compact(self, segments: list[Segment]) -> None:
        touched = {(s.tenant, s.date) for s in segments if s.kind == "events"}
        for tenant, date in touched:
            small = [s for s in self.manifest.state.segments(tenant)
                     if s.date == date and s.rows < COMPACT_TARGET_ROWS]
            if len(small) >= COMPACT_MIN_FILES:
                self.compact(tenant=tenant, date=date)

    def compact(self, *, tenant: str | None = None, date: str | None = None) -> CompactResult:
        """Merge the small segments of each (tenant, day) partition into one."""
        merged = written = 0
        with self._seal_lock:
            groups: dict[tuple[str, str], list[Segment]] = {}
            for s in self.manifest.state.segments(tenant):
                if (date is None or s.date == date) and s.rows < COMPACT_TARGET_ROWS:
                    groups.setdefault((s.tenant, s.date), []).append(s)
            for (t, d), segs in sorted(groups.items()):
                if len(segs) < 2:
                    continue
                segs.sort(key=lambda s: s.seq_min)
                table = pa.concat_tables([self.store.read(s) for s in segs])
                table = table.sort_by("seq")
                new = self.store.write(
                    table, DataDir.partition("events", t, d),
                    f"seg-c{segs[-1].path.rsplit('seg-', 1)[1].removesuffix('.parquet')}"
                    f"-{new_event_id()[-8:]}.parquet", tenant=t, date=d, kind="events")
                with self._lock:
                    self.manifest.append("compact", _now_text(), add=[new], remove=segs)
                    self._version += 1
                self._retired.extend(s.path for s in segs)
                merged += len(segs)
                written += 1
            self._delete_retired()
        return CompactResult(merged, written)

    def _delete_retired(self) -> None:
        # Files replaced by compaction are removed one compaction later, so a reader
        # holding an older snapshot is not cut off mid-query.
        old, self._retired = self._retired[:-64], self._retired[-64:]
        for rel in old:
            self.store.delete(rel)

    # -- public: reads -------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The live segment files and the unsealed tail, as of now."""
        with self._lock:
            segments: dict[str, list[SegmentRef]] = {}
            for seg in self.manifest.state.segments():
                segments.setdefault(seg.tenant, []).append(SegmentRef(
                    self.store.abspath(seg.path), seg.date, seg.seq_min, seg.seq_max, seg.rows))
            receipt_files: dict[str, list[str]] = {}
            membership_files: dict[str, list[str]] = {}
            for kind, files in (("receipts", receipt_files), ("membership", membership_files)):
                for seg in self.manifest.state.segments(kind=kind):
                    files.setdefault(seg.tenant, []).append(self.store.abspath(seg.path))
            entries = [e for c in [*self._frozen, self._active] for e in c.receipts]
            receipt_tail, membership_tail = tail_tables(entries) if entries else (None, None)
            return Snapshot(segments=segments, tail=self._tail_table(), sizes=dict(self._sizes),
                            receipt_files=receipt_files, membership_files=membership_files,
                            receipt_tail=receipt_tail, membership_tail=membership_tail,
                            receipt_seqs={t: list(v) for t, v in self._receipt_seqs.items()})

    def _tail_table(self) -> pa.Table:
        chunks = [*self._frozen, self._active]
        built = {id(c): n for c, n in self._tail_built}
        if any(id(c) not in {id(x) for x in chunks} for c, _ in self._tail_built):
            self._tail_tables, self._tail_built, built = [], [], {}
        new_built = []
        for chunk in chunks:
            for part in chunk.parts[built.get(id(chunk), 0):]:
                t = part.table
                self._tail_tables.append(t.append_column(
                    "tenant", pa.repeat(pa.scalar(part.tenant, pa.string()), t.num_rows)))
            new_built.append((chunk, len(chunk.parts)))
        self._tail_built = new_built
        if len(self._tail_tables) > 32:
            self._tail_tables = [pa.concat_tables(self._tail_tables).combine_chunks()]
        if not self._tail_tables:
            empty = rows_to_table([])
            return empty.append_column("tenant", pa.array([], pa.string()))
        return pa.concat_tables(self._tail_tables)

    # -- receipt entries (DESIGN §6; content and signing are ``ledger.receipts.issuance``) ---------
    def receipt_lock(self, tenant: str) -> threading.Lock:
        """The lock that serializes receipt issuance for one tenant."""
        with self._lock:
            return self._receipt_locks.setdefault(tenant, threading.Lock())

    def append_receipt(self, tenant: str, ranges: np.ndarray,
                       build: Callable[[int, bytes], bytes]) -> ReceiptEntry:
        """Append a receipt entry certifying the events in ``ranges`` (inclusive runs of
        event seqs). ``build(size, root)`` is called under the write lock with the log's
        size and root just before the entry and returns the entry's canonical bytes (the
        signed receipt). Returns once the entry and its membership are durable."""
        check_tenant(tenant)
        ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        with self._lock:
            self._check_writable()
            tree = self._tree(tenant)
            size = self._sizes.get(tenant, 0)
            # The receipt's checkpoint must cover only durable entries: sync the journal
            # first (appends written but not yet fsynced by their writers).
            self.journal.commit(self.journal.position)
            canonical = build(size, tree.root(size))
            recorded = now_us()
            entry = _receipt_entry(tenant, size, recorded, canonical, pack_ranges(ranges))
            frame = jr.encode_receipt(size, recorded, canonical, pack_ranges(ranges))
            try:
                position = self.journal.write(frame + jr.COMMIT_FRAME)
            except OSError as exc:
                self._failed = exc
                raise LedgerError(f"could not write the journal: {exc}") from exc
            self._sizes[tenant] = size + 1
            self._receipt_seqs.setdefault(tenant, []).append(size)
            self._active.receipts.append(entry)
            tree.append([entry.leaf_hash])
            self._version += 1
        self.journal.commit(position)
        return entry

    def resolve(self, tenant: str, event_ids: Sequence[str]) -> dict[str, Ack]:
        """The acknowledgements of known event ids (a usage log paired with its
        conversation resolves to the conversation event); unknown ids are absent."""
        with self._lock:
            return {k: v.ack for k, v in self._lookup(tenant, list(event_ids)).items()}

    def leaf_hash_buffer(self, tenant: str, start: int, end: int) -> bytes:
        """The tenant's log leaf hashes [start, end), packed (one read of the tree)."""
        with self._lock:
            return self._tree(tenant).leaf_hash_buffer(start, end)

    def receipt_seqs(self, tenant: str) -> list[int]:
        """The seqs of the tenant's receipt entries, ascending."""
        with self._lock:
            return list(self._receipt_seqs.get(tenant, []))

    # -- signed checkpoints (DESIGN §7; notes and the store are ``ledger.tlog.checkpoint``) ----
    @property
    def notary(self) -> Notary:
        """The directory's signing side: origin, key ring, checkpoints, cosignatures (one
        per open directory, built on first use: reading the origin creates config.json)."""
        with self._lock:
            if self._notary is None:
                self._notary = Notary(self.layout)
            return self._notary

    def checkpoint(self, tenant: str = "default") -> Any:
        """Sign the tenant's log as it is now: a C2SP checkpoint (origin
        ``<ledger origin>/<tenant>``, size, root), stored in ``<data>/checkpoints`` and
        returned (``ledger.tlog.checkpoint.SignedCheckpoint``). The journal is synced first, so
        a checkpoint never covers an entry that a crash could lose. If the log has not
        grown since the latest checkpoint, that one is returned."""
        check_tenant(tenant)
        notary = self.notary
        with self._lock:
            self._check_writable()
            self.journal.commit(self.journal.position)
            size = self._sizes.get(tenant, 0)
            signed = notary.checkpoints.issue(notary.log_origin(tenant), size,
                                              self._tree(tenant).root(size), notary.keyring)
            self._checkpointed[tenant] = size
            return signed

    def checkpoint_grown(self) -> list[Any]:
        """Checkpoint every tenant whose log grew since its last checkpoint here. A
        refusal (the log contradicts a checkpoint already issued) is logged, not raised:
        `llmring ledger verify` reports it."""
        from ledger.tlog.checkpoint import CheckpointError

        out = []
        with self._lock:
            grown = [t for t, n in self._sizes.items() if self._checkpointed.get(t) != n]
        for tenant in grown:
            try:
                out.append(self.checkpoint(tenant))
            except CheckpointError as exc:
                _log.error("no checkpoint for %s: %s", tenant, exc)
                with self._lock:
                    self._checkpointed[tenant] = self._sizes.get(tenant, 0)
        return out

    def _checkpoint_loop(self) -> None:
        assert self.checkpoint_interval is not None
        while not self._stop.wait(self.checkpoint_interval):
            try:
                self.checkpoint_grown()
            except Exception as exc:
                if type(exc) is LedgerError:  # closed or failed: writers see it themselves
                    return
                _log.exception("cadence checkpoint failed")  # the next seal tries again

    def size(self, tenant: str = "default") -> int:
        """Number of entries in the tenant's log (its next ``seq``): events and receipt
        entries together."""
        with self._lock:
            return self._sizes.get(tenant, 0)

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._sizes)

    def tree(self, tenant: str = "default") -> TreeStore:
        """The tenant's log tree (RFC 9162), for roots and proofs."""
        check_tenant(tenant)
        with self._lock:
            return self._tree(tenant)

    def root(self, tenant: str = "default") -> bytes:
        with self._lock:
            return self._tree(tenant).root()

    def get(self, tenant: str, event_id: str) -> Event | None:
        with self._lock:
            found = self._lookup(tenant, [event_id]).get(event_id)
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
        if self._closed:
            return
        self._stop_committer()
        try:
            if self._failed is None and self._seal_error is None:
                self.seal()
        finally:
            self._closed = True
            self._stop.set()
            if self._cadence is not None:
                self._cadence.join(timeout=30)
            self._seal_wakeup.set()
            if self._sealer is not None:
                self._sealer.join(timeout=30)
            with self._lock:
                self.journal.close()
                for tree in self._trees.values():
                    tree.sync()
                    tree.close()
                self.index.close()
                self.manifest.close()
            with contextlib.suppress(OSError):
                os.close(self._lockfd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _segments_to_index(records: Sequence[Mapping[str, Any]]) -> list[Segment]:
    """Segments of ``records`` holding entries the index has not seen. A compaction only
    rewrites entries: its output needs indexing only if it absorbed such a segment (so
    reopening after compactions of a large log does not re-index the whole log)."""
    new: dict[str, Segment] = {}
    for r in records:
        added = {d["path"]: Segment.from_dict(d) for d in r["add"]}
        if r.get("op") == "compact":
            removed = {d["path"] for d in r["remove"]}
            if not removed & new.keys():
                continue
            for path in removed:
                new.pop(path, None)
        new.update(added)
    return list(new.values())


@contextlib.contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large batch is prepared.

    A batch allocates many container objects that all stay alive until it is appended, so
    the collector's young-generation passes find nothing to free yet rescan the batch again
    and again (it doubled the cost of preparing a batch). Reference counting still frees
    everything as usual; the collector is switched back on at the end, and not touched at
    all if it was already off.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _day_runs(days: np.ndarray) -> list[tuple[str, int, int]]:
    """``(YYYY-MM-DD, first, count)`` of each run of equal day numbers (days since the
    epoch, already grouped)."""
    if not len(days):
        return []
    starts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
    return [(day_of(int(days[a]) * DAY_US), a, b - a) for a, b in itertools.pairwise(starts)]


def _now_text() -> str:
    return format_ts(now_us())


def _receipt_entry(tenant: str, seq: int, recorded_at_us: int, canonical: bytes,
                   ranges: bytes) -> ReceiptEntry:
    receipt = orjson.loads(canonical)
    return ReceiptEntry(
        tenant=tenant, seq=seq, recorded_at_us=recorded_at_us,
        timestamp_us=ts_to_us(datetime.fromisoformat(receipt["timestamp"])),
        receipt_id=receipt["receipt_id"], certified_count=int(receipt["certified_count"]),
        canonical=canonical, leaf_hash=leaf_hash_of(canonical), ranges=unpack_ranges(ranges))


def _row_from_canonical(fields: dict[str, Any], rec: jr.EventRecord) -> tuple[Any, ...]:
    meta = fields["metadata"]
    metadata_json = canonical_json(meta, reference=bool(meta) and _check_metadata(meta)).decode()
    return row_of(fields, seq=rec.seq, ts_us=ts_to_us(datetime.fromisoformat(fields["ts"])),
                  recorded_at_us=rec.recorded_at_us, metadata_json=metadata_json,
                  leaf_hash=leaf_hash_of(rec.canonical))


def _differences(stored: Mapping[str, Any], p: Prepared) -> list[str]:
    """Fields in which request ``p`` disagrees with a stored event (ledger-filled values
    the request left out are not compared)."""
    skip = {*LEDGER_FIELDS, "event_id"}
    if not p.ts_given:
        skip.add("ts")
    if not p.cost_given:
        skip.update(PRICE_FIELDS)
    if p.fields["kind"] == "conversation" and p.fields.get("conversation_id") is None:
        skip.add("conversation_id")
    out = []
    for name, value in p.fields.items():
        if name in skip:
            continue
        other = stored.get(name)
        if name == "ts" and isinstance(other, datetime):
            other = format_ts(ts_to_us(other.astimezone(UTC)))
        if other != value:
            out.append(name)
    return out


__all__ = ["Ack", "CompactResult", "Ledger", "LedgerError", "LedgerLockedError",
           "SealResult"]
