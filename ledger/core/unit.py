"""``ProjectUnit``: one project's write core — its lock, journal, manifest, id index, tail,
log tree, sealer and appender, under ``projects/<t>/`` (``ledger.storage.layout.ProjectDir``).

A project is the unit of durability and ownership: recovery, sealing, compaction and
checkpoints of one project never touch another's files. Its segment files keep their
hive paths relative to the data directory (``events/tenant=<t>/…``), so every project's
files form one dataset. ``Ledger`` (``ledger.core.facade``) opens a unit on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ledger.core.appender import Appender
from ledger.core.checkpointer import Checkpointer
from ledger.core.guard import WriteGuard, storage_full
from ledger.core.idempotency import Idempotency
from ledger.core.logs import Logs
from ledger.core.readers import Readers
from ledger.core.recovery import Recovery, release_lock, take_lock
from ledger.core.sealer import DEFAULT_SEAL_INTERVAL, Sealer
from ledger.core.tail import Tail, TailChunk
from ledger.model.event import Event
from ledger.storage import journal as jr
from ledger.storage.dimensions import DeclaredDimensions
from ledger.storage.durable import private_dir
from ledger.storage.index import Index
from ledger.storage.layout import ProjectDir
from ledger.storage.manifest import Manifest
from ledger.storage.manifest_objects import ManifestObjects
from ledger.storage.segments import SegmentStore
from ledger.tlog.notary import Notary

_log = logging.getLogger("ledger")


class ProjectUnit:
    """One project's write core. The constructor takes the project's lock and checks and
    replays its journal (``Recovery.replay``: a damaged journal is refused before any
    derived file changes); ``start`` brings the index and tree level and builds the
    writers."""

    def __init__(self, layout: ProjectDir, store: SegmentStore, *,
                 pricer_for: Callable[[str], Any], dimensions: DeclaredDimensions,
                 notary: Callable[[], Notary], seal_rows: int, auto_seal: bool,
                 checkpoint_after_seal: bool, accept_loss: bool,
                 get: Callable[[str, str], Event | None],
                 seal_interval: float | None = DEFAULT_SEAL_INTERVAL,
                 readers: Readers | None = None,
                 publish: Callable[[], object] | None = None) -> None:
        """``notary``: the directory's one signing side (built on first use);
        ``checkpoint_after_seal``: checkpoint the log after each seal if it grew;
        ``seal_interval``, ``readers`` (the ledger's one, over every unit's files) and
        ``publish`` (the ledger's Iceberg publish) as ``Sealer``'s."""
        self.layout = layout
        self.tenant = layout.tenant
        self.store = store
        self.guard = WriteGuard()
        self._pricer_for = pricer_for
        self._dimensions = dimensions
        self._notary = notary
        self._seal_rows = seal_rows
        self._auto_seal = auto_seal
        self._checkpoint_after_seal = checkpoint_after_seal
        self._get = get
        self._seal_interval = seal_interval
        self._readers = readers
        self._publish = publish
        self._started = False
        private_dir(layout.projects)
        private_dir(layout.base)
        self._lockfd = take_lock(layout)
        try:
            objects = (ManifestObjects.of(store.storage, self.tenant)
                       if store.storage is not None else None)
            self.manifest = Manifest(layout.manifest, objects=objects)
            try:
                self._recovery = Recovery(layout, store, self.manifest,
                                          accept_loss=accept_loss)
                self._replayed = self._recovery.replay()
            except BaseException:
                self.manifest.close()
                raise
        except BaseException:
            release_lock(self._lockfd)
            raise
        self.accepted_losses = self._recovery.losses

    def start(self) -> None:
        """Bring the id index and the tree level with the log and build the writers."""
        layout, recovery, replayed = self.layout, self._recovery, self._replayed
        self.logs = Logs(layout, replayed.sizes, replayed.receipt_seqs,
                         lambda tenant, tree, size: recovery.fill_tree(self.tail, tenant, tree,
                                                                       size))
        self.tail = Tail([c for c in replayed.chunks if c],
                         TailChunk(journal=replayed.next_journal), self.logs.leaf_hashes)
        self.index = Index(layout)
        self.ids = Idempotency(self.index, self.manifest, self.store, self.tail, self._get)
        recovery.catch_up_index(self.ids, replayed.chunks)
        recovery.remove_empty(replayed.chunks)
        self.journal = jr.Journal(layout.journal, replayed.next_journal)
        self.logs.open_trees()
        self.tail.forget_replayed_leaves()  # the trees have them now
        # The cadence is the ledger's one thread over every unit (``Ledger``).
        self.checkpointer = Checkpointer(layout, self.guard, self.journal, self.logs, None,
                                         notary=self._notary)
        self.sealer = Sealer(
            self.guard, self.journal, self.manifest, self.store, self.index, self.tail,
            self.logs, seal_rows=self._seal_rows, auto_seal=self._auto_seal,
            after_seal=(self.checkpointer.checkpoint_grown if self._checkpoint_after_seal
                        else None),
            seal_interval=self._seal_interval, dimensions=self._dimensions,
            readers=self._readers, publish=self._publish)
        self.appender = Appender(self.guard, self.journal, self.logs, self.tail, self.ids,
                                 self._pricer_for, self.sealer.tail_grew)
        self._started = True
        del self._replayed

    def close(self) -> None:
        """Seal what the journal holds (unless writes stopped on a failure) and release
        the project's lock."""
        guard = self.guard
        if guard.closed:
            return
        self.appender.stop()
        try:
            if guard.healthy:
                try:
                    self.sealer.seal()
                except Exception as exc:
                    if not storage_full(exc):
                        raise
                    # Every acknowledged event is in the journal, replayed on next open.
                    _log.warning("closing project %s without sealing its journal (%s): it "
                                 "is replayed when the project is next opened",
                                 self.tenant, exc)
        finally:
            self.release()

    def release(self) -> None:
        """Close the project's files and release its lock, sealing nothing (what a
        failed opening of the directory does with the units it already opened)."""
        guard = self.guard
        guard.closed = True
        if self._started:
            self.appender.stop()
            self.sealer.stop()
        with guard.lock:
            for part in (("journal", "logs", "index") if self._started else ()):
                getattr(self, part).close()
            self.manifest.close()
        release_lock(self._lockfd)


__all__ = ["ProjectUnit"]
