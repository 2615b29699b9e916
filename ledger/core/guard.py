"""``WriteGuard``: the write lock of an open data directory and whether it still takes
writes (not closed, no I/O failure, no failed seal)."""

from __future__ import annotations

import threading

from ledger.errors import LedgerError


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


__all__ = ["WriteGuard"]
