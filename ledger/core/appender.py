"""Appends: validate and price a batch, assign each project's gap-free ``seq``, write the
journal, index, tail and tree, and acknowledge once the journal is durable (group commit).

Large batches are appended by their caller's thread. Small appends go through one
committer thread: it prepares the events of every waiting request of a project together
(one column pass) and appends them as one batch (one journal write, one index
transaction, one tree append), each request still all or nothing as if alone: if that
batch is refused, the requests are appended in turn, so only the one at fault fails. A
syncer thread makes the round durable with one fsync and wakes its callers while the
committer takes the next round. Many concurrent writers then cost one hand-off each, not
a contended write lock, journal and per-event preparation each. A caller in an event
loop (the server's fast path) submits without a thread of its own (``submit``): its
future is settled in its loop, one wake-up of the loop for the round. Receipt entries
are appended here too (``append_receipt``): they are entries of the same logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger.core.guard import WriteGuard, full_disk, storage_full
from ledger.core.idempotency import Idempotency
from ledger.core.logs import Logs
from ledger.core.tail import DAY_US, Tail, TailPart, day_runs
from ledger.errors import LedgerError
from ledger.model.batch import BatchAcks, PreparedBatch, prepare_batch
from ledger.model.event import Ack, EventIn, IdConflictError, now_us
from ledger.model.tenant import check_tenant
from ledger.storage import journal as jr
from ledger.storage.receipt_entries import ReceiptEntry, pack_ranges

SMALL_APPEND = 256  # appends of fewer events gather as rows in an open tail part
GC_PAUSE_BATCH = 1_000  # batches at least this large are prepared with the collector paused


@dataclass(slots=True, eq=False)
class _Queued:
    """A small append waiting for the committer thread: its caller waits on ``done``, or
    (``submit``) on ``future``, settled in the future's loop."""

    tenant: str
    events: Sequence[Any]
    received: int  # µs: the ts of an event sent without one
    future: asyncio.Future[Sequence[Ack]] | None = None
    batch: PreparedBatch | None = None
    done: threading.Event | None = None
    acks: Sequence[Ack] | None = None
    error: BaseException | None = None


@dataclass(slots=True, eq=False)
class _Group:
    """Requests of one project in a round, prepared as one ``batch``."""

    tenant: str
    batch: PreparedBatch
    items: list[_Queued]


class Appender:
    """The write path of one open directory, with its committer and syncer threads."""

    def __init__(self, guard: WriteGuard, journal: jr.Journal, logs: Logs, tail: Tail,
                 ids: Idempotency, pricer_for: Callable[[str], Any],
                 tail_grew: Callable[[int], None]) -> None:
        """``pricer_for(tenant)``: the pricer of a project's events (``ProjectPrices``);
        ``tail_grew(rows)`` is told the unsealed rows after each append (the sealer
        decides whether a seal is due)."""
        self.guard = guard
        self.journal = journal
        self.logs = logs
        self.tail = tail
        self.ids = ids
        self.pricer_for = pricer_for
        self._tail_grew = tail_grew
        self._written_announced: dict[int, bool] = {}  # thread → its announced append wrote
        self._receipt_locks: dict[str, threading.Lock] = {}
        self._queue: list[_Queued] = []
        self._queue_cv = threading.Condition()
        self._queue_closed = False
        self._committer: threading.Thread | None = None
        self._sync_cv = threading.Condition()
        self._to_sync: list[tuple[int, list[_Queued] | None]] = []
        # Counted under the write lock since the ledger opened (``llmring serve``'s
        # /metrics): new events, their cost per tenant, receipts.
        self.events_appended = 0
        self.cost_nanos: dict[str, int] = {}
        self.receipts_appended = 0

    # -- appends -------------------------------------------------------------------------
    def append_many(self, events: Iterable[Mapping[str, Any] | EventIn], *,
                    tenant: str) -> Sequence[Ack]:
        check_tenant(tenant)
        received = now_us()
        if not isinstance(events, Sequence):
            events = list(events)
        if len(events) < SMALL_APPEND:
            item = _Queued(tenant, events, received, done=threading.Event())
            self._enqueue(item)
            assert item.done is not None
            item.done.wait()
            if item.error is not None:
                raise item.error
            assert item.acks is not None
            return item.acks
        self.journal.announce()  # so a concurrent group commit can wait for this append
        with _collector_paused(len(events) >= GC_PAUSE_BATCH):
            try:
                batch = prepare_batch(events, tenant=tenant, received_us=received,
                                      pricer=self.pricer_for(tenant))
            except BaseException:
                self.journal.abandon()
                raise
            try:
                acks, position = self.write(tenant, batch, announced=True)
            finally:
                if not self._written_announced.pop(threading.get_ident(), False):
                    self.journal.abandon()
        # Durable before acknowledged (this also covers a repeat of a still-pending event).
        self.journal.commit(position)
        return acks

    def submit(self, events: Sequence[Mapping[str, Any] | EventIn], *,
               tenant: str) -> asyncio.Future[Sequence[Ack]]:
        """``append_many`` of fewer than ``SMALL_APPEND`` events from a running event
        loop, without blocking it: the future (of this loop) gets the acknowledgements,
        or the refusal, once the append is durable."""
        check_tenant(tenant)
        if len(events) >= SMALL_APPEND:
            raise ValueError(f"submit takes fewer than {SMALL_APPEND} events")
        future = asyncio.get_running_loop().create_future()
        self._enqueue(_Queued(tenant, events, now_us(), future=future))
        return future

    def _enqueue(self, item: _Queued) -> None:
        with self._queue_cv:
            if self._queue_closed:
                raise LedgerError("the ledger is closed")
            self._queue.append(item)
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_loop,
                                                   name="ledger-commit", daemon=True)
                self._committer.start()
            self._queue_cv.notify()

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
                position = -1
                for group in self._prepare_queued(items):
                    position = max(position, self._write_group(group))
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
            settled: dict[asyncio.AbstractEventLoop, list[_Queued]] = {}
            for _, items in rounds:
                for item in items or ():
                    if error is not None and item.error is None:
                        item.error = error
                    if item.future is None:
                        assert item.done is not None
                        item.done.set()
                    else:
                        settled.setdefault(item.future.get_loop(), []).append(item)
            for loop, waiting in settled.items():  # one wake-up of each loop
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, waiting)
            if stop:
                return

    def _prepare_queued(self, items: list[_Queued]) -> list[_Group]:
        """Prepare the events of waiting requests, one batch per tenant; if that batch is
        refused, each request alone (so only the invalid one fails, with its own index)."""
        by_tenant: dict[str, list[_Queued]] = {}
        for item in items:
            by_tenant.setdefault(item.tenant, []).append(item)
        groups: list[_Group] = []
        for tenant, group in by_tenant.items():
            events = [e for item in group for e in item.events]
            received = [item.received for item in group for _ in item.events]
            try:
                pricer = self.pricer_for(tenant)
            except Exception as exc:  # the project's price overrides cannot be read
                for item in group:
                    item.error = exc
                continue
            try:
                batch = prepare_batch(events, tenant=tenant, received_us=received,
                                      pricer=pricer)
            except Exception:
                for item in group:
                    try:
                        item.batch = prepare_batch(item.events, tenant=tenant,
                                                   received_us=item.received,
                                                   pricer=pricer)
                        groups.append(_Group(tenant, item.batch, [item]))
                    except BaseException as exc:
                        item.error = exc
                continue
            groups.append(_Group(tenant, batch, group))
        return groups

    def _write_group(self, group: _Group) -> int:
        """Append a group's requests as one batch; if one of them conflicts with a stored
        id or another's, each request in turn, so that only the one at fault fails (any
        other refusal, such as a full disk, is every request's). Returns the journal
        position to commit (-1: nothing written)."""
        items = group.items
        if len(items) > 1:
            try:
                acks, position = self.write(group.tenant, group.batch, announced=False)
            except IdConflictError:
                pass  # found before anything was written: each request alone, below
            except BaseException as exc:
                for item in items:
                    item.error = exc
                return -1
            else:
                start = 0
                for item in items:
                    item.acks = acks[start:start + len(item.events)]
                    start += len(item.events)
                return position
            start = 0
            for item in items:
                item.batch = group.batch.slice(start, start + len(item.events))
                start += len(item.events)
        else:
            items[0].batch = group.batch
        position = -1
        for item in items:
            assert item.batch is not None
            try:
                item.acks, written = self.write(group.tenant, item.batch, announced=False)
                position = max(position, written)
            except BaseException as exc:  # this request alone is refused
                item.error = exc
        return position

    def stop(self) -> None:
        """Refuse new small appends, and let the committer finish the waiting ones."""
        with self._queue_cv:
            self._queue_closed = True
            self._queue_cv.notify_all()
        if self._committer is not None:
            self._committer.join()

    def write(self, tenant: str, batch: PreparedBatch,
              announced: bool) -> tuple[Sequence[Ack], int]:
        """Append prepared events; return their acknowledgements and the journal position
        to commit before giving them out. ``announced``: the caller announced this append
        to the journal (it is marked written here, or the caller abandons it)."""
        n = len(batch)
        ids = batch.event_id
        repeat_of = self.ids.repeats(batch)
        candidates = self.ids.pairing_candidates(batch)
        with self.guard.lock:
            self.guard.check_writable()
            tree = self.logs.tree(tenant)
            plan = self.ids.plan(tenant, batch, repeat_of, candidates)
            fixed, new = plan.fixed, plan.new
            size = self.logs.size(tenant)
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
                    runs = day_runs(days[order])
                    frames.extend(jr.encode_events_parts(size, recorded, digests, canonical))
                else:  # rows for the open tail part; one E frame per event: less to pack
                    rows = batch.rows(size, recorded, new)
                    frames.extend(jr.encode_event(size + k, recorded, d, c) for k, (d, c)
                                  in enumerate(zip(digests, canonical, strict=True)))
            pair_records = []
            for i, target in plan.pairs:
                if isinstance(target, int):  # a conversation event created by this batch
                    conv_ack = acks[new[target]]  # type: ignore[index]
                    event_id = conv_ack.event_id
                else:
                    event_id = target
                    conv_ack = self.ids.ack_of(tenant, event_id)
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
                    raise self._write_failed(exc) from exc
                self.logs.sizes[tenant] = size + count
                if count:
                    self.events_appended += count
                    self.cost_nanos[tenant] = self.cost_nanos.get(tenant, 0) + sum(
                        c for c in pick(batch.cost_nanos) if c)
                    digests = [d or None for d in digests]
                    generated = pick(batch.generated)
                    kinds = pick(batch.kind)
                    indexed = not all(generated) or "conversation" in kinds
                if pair_records or (count and indexed):
                    index = self.ids.index
                    index.begin()
                    try:
                        if count and indexed:
                            self.ids.index_columns(
                                tenant, pick(ids), range(size, size + count),
                                pick(batch.ts_us), pick(batch.cost_nanos),
                                pick(batch.cost_source), pick(batch.conversation_id), kinds,
                                digests, generated=generated)
                        for record in pair_records:
                            self.ids.index_pair(record)
                        index.commit()
                    except BaseException as exc:
                        alone = index.rollback()
                        # A full disk: the batch is taken back out of the journal (it
                        # was not acknowledged), and the log is as before it.
                        if alone and storage_full(exc) and self.journal.undo_last_write():
                            self.logs.sizes[tenant] = size
                            self.events_appended -= count
                            self.cost_nanos[tenant] -= sum(
                                c for c in pick(batch.cost_nanos) if c)
                            raise full_disk(exc) from exc
                        self.guard.failed = exc
                        raise
                active = self.tail.active
                if count >= SMALL_APPEND:
                    active.add(TailPart(tenant, [digests[k] for k in at], table, runs))
                elif count:
                    active.add_rows(tenant, rows, digests)
                if count:
                    tree.append(pick(batch.leaf_hash))
                active.pairs.extend(pair_records)
            else:
                position = self.journal.position
            tail_rows = self.tail.rows()
        for i, j in repeat_of.items():
            a = acks[j]
            fixed[i] = Ack(a.event_id, a.tenant, a.seq, a.ts_us, a.cost_nanos, a.cost_source,
                           a.conversation_id, created=False)
        self._tail_grew(tail_rows)
        return acks, position

    def _write_failed(self, exc: OSError) -> LedgerError:
        """The refusal of a journal write that failed (the journal cut what it wrote
        of it): a full disk refuses this write alone; any other failure stops writes."""
        if storage_full(exc) and self.journal.healthy:
            return full_disk(exc)
        self.guard.failed = exc
        return LedgerError(f"could not write the journal: {exc}")

    # -- receipt entries (docs/formats.md; content and signing are ``ledger.receipts.issuance``) --
    def receipt_lock(self, tenant: str) -> threading.Lock:
        """The lock that serializes receipt issuance for one tenant."""
        with self.guard.lock:
            return self._receipt_locks.setdefault(tenant, threading.Lock())

    def append_receipt(self, tenant: str, ranges: np.ndarray,
                       build: Callable[[int, bytes], bytes]) -> ReceiptEntry:
        check_tenant(tenant)
        ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        with self.guard.lock:
            self.guard.check_writable()
            tree = self.logs.tree(tenant)
            size = self.logs.size(tenant)
            # The receipt's checkpoint must cover only durable entries: sync the journal
            # first (appends written but not yet fsynced by their writers).
            self.journal.commit(self.journal.position)
            canonical = build(size, tree.root(size))
            recorded = now_us()
            entry = ReceiptEntry.of(tenant, size, recorded, canonical, pack_ranges(ranges))
            frame = jr.encode_receipt(size, recorded, canonical, pack_ranges(ranges))
            try:
                position = self.journal.write(frame + jr.COMMIT_FRAME)
            except OSError as exc:
                raise self._write_failed(exc) from exc
            self.logs.sizes[tenant] = size + 1
            self.receipts_appended += 1
            self.logs.receipt_seqs.setdefault(tenant, []).append(size)
            self.tail.active.receipts.append(entry)
            tree.append([entry.leaf_hash])
        self.journal.commit(position)
        return entry


def _settle(items: list[_Queued]) -> None:
    """Settle the futures of submitted appends (in their loop)."""
    for item in items:
        future = item.future
        if future is None or future.done():  # cancelled: its caller is gone
            continue
        if item.error is not None:
            future.set_exception(item.error)
        else:
            future.set_result(item.acks if item.acks is not None else ())


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


__all__ = ["GC_PAUSE_BATCH", "SMALL_APPEND", "Appender"]
