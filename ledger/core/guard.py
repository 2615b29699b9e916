"""``WriteGuard``: the write lock of an open data directory and whether it still takes
writes (not closed, no I/O failure, no failed seal); ``storage_full``: whether a failure
is a full disk (a refusal that passes once space returns, not a reason to stop)."""

from __future__ import annotations

import errno
import sqlite3
import threading

from ledger.errors import LedgerError, StorageFullError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteGuard:
    """The in-process write lock (reentrant: a write may read the log it holds) and the
    reasons writes stop. An I/O failure of the journal or the index, or a failed seal,
    stops every later write with that reason; closing stops them too."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closed = False
        self.failed: BaseException | None = None
        self.seal_error: BaseException | None = None

    def check_writable(self) -> None:
        if self.closed:
            raise LedgerError("the ledger is closed")
        if self.failed is not None:
            raise LedgerError(f"the ledger stopped accepting writes after an I/O error: "
                              f"{self.failed}")
        if self.seal_error is not None:
            raise LedgerError(f"sealing failed: {self.seal_error}")

    @property
    def healthy(self) -> bool:
        """No I/O failure and no failed seal (what closing needs to seal the tail)."""
        return self.failed is None and self.seal_error is None


def storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a full disk or quota: a file
    write's ``ENOSPC``/``EDQUOT``, SQLite's ``SQLITE_FULL``."""
    while exc is not None:
        if isinstance(exc, StorageFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == \
                sqlite3.SQLITE_FULL:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def full_disk(exc: BaseException) -> StorageFullError:
    """The refusal of a write that found the disk full (nothing of it was kept)."""
    refused = StorageFullError(f"no space left for the data directory ({exc}); the write "
                               "was not recorded: retry once space is freed")
    refused.__cause__ = exc
    return refused


__all__ = ["WriteGuard", "full_disk", "storage_full"]
