"""Signed checkpoints of the projects' logs (docs/formats.md): on demand, after every seal and
on a cadence for the logs that grew. The notes and their store are ``ledger.tlog``; the
directory's one ``Notary`` (key ring, checkpoint store, cosignatures) is owned here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ledger.core.guard import WriteGuard
from ledger.core.logs import Logs
from ledger.errors import LedgerError
from ledger.model.tenant import check_tenant
from ledger.storage import journal as jr
from ledger.storage.layout import DataDir
from ledger.tlog.checkpoint import CheckpointError, SignedCheckpoint
from ledger.tlog.notary import Notary

DEFAULT_CHECKPOINT_INTERVAL = 60.0  # seconds between cadence checkpoints of grown logs
_log = logging.getLogger("ledger")


class Checkpointer:
    """Signs checkpoints of one open directory's logs; with ``interval`` (seconds), a
    background thread checkpoints every log that grew that often."""

    def __init__(self, layout: DataDir, guard: WriteGuard, journal: jr.Journal, logs: Logs,
                 interval: float | None, *, notary: Callable[[], Notary] | None = None) -> None:
        """``notary``: the directory's signing side, shared by every project's checkpointer
        (by default one of its own, built on first use)."""
        self.layout = layout
        self._shared_notary = notary
        self.guard = guard
        self.journal = journal
        self.logs = logs
        self.interval = interval
        self._notary: Notary | None = None
        self._checkpointed: dict[str, int] = {}  # tenant → log size of its last checkpoint
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(target=self._loop, name="ledger-checkpoints",
                                            daemon=True)
            self._thread.start()

    @property
    def notary(self) -> Notary:
        """The directory's signing side, built on first use (reading the origin creates
        ``config.json``)."""
        if self._shared_notary is not None:
            return self._shared_notary()
        with self.guard.lock:
            if self._notary is None:
                self._notary = Notary(self.layout)
            return self._notary

    def checkpoint(self, tenant: str) -> SignedCheckpoint:
        check_tenant(tenant)
        notary = self.notary
        with self.guard.lock:
            self.guard.check_writable()
            self.journal.commit(self.journal.position)
            size = self.logs.size(tenant)
            signed = notary.checkpoints.issue(notary.log_origin(tenant), size,
                                              self.logs.tree(tenant).root(size),
                                              notary.keyring)
            self._checkpointed[tenant] = size
            return signed

    def checkpoint_grown(self) -> list[SignedCheckpoint]:
        out = []
        with self.guard.lock:
            grown = [t for t, n in self.logs.sizes.items() if self._checkpointed.get(t) != n]
        for tenant in grown:
            try:
                out.append(self.checkpoint(tenant))
            except CheckpointError as exc:
                _log.error("no checkpoint for %s: %s", tenant, exc)
                with self.guard.lock:
                    self._checkpointed[tenant] = self.logs.size(tenant)
        return out

    def _loop(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint_grown()
            except Exception as exc:
                if type(exc) is LedgerError:  # closed or failed: writers see it themselves
                    return
                _log.exception("cadence checkpoint failed")  # the next seal tries again

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


__all__ = ["DEFAULT_CHECKPOINT_INTERVAL", "Checkpointer"]
