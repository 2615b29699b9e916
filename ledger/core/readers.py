"""Which segment files the readers of this process still hold, and the prompt removal of
the files a manifest record retired.

Every ``Snapshot`` the ledger hands out holds a ``Lease`` on the segment files it names
(reference counts per file). A file that a compaction retires is deleted at once when no
lease names it, else when the last lease naming it is released: explicitly
(``with ledger.snapshot() as snap:``, ``Lease.release``) or when the snapshot is garbage
collected (a ``weakref.finalize`` on the lease). So the data directory holds exactly the
manifest's live set, plus the files a running query still reads — what outside engines
(DuckDB, Spark, ``pyarrow.dataset``) reading the directory as-is see. Files still held
when the directory closes are left to the next opening, which removes every file no
manifest record names.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable

_log = logging.getLogger("ledger")


class Lease:
    """A hold on some segment files; released once (explicitly or when collected)."""

    __slots__ = ("__weakref__", "_finalizer")

    def __init__(self, readers: Readers, paths: tuple[str, ...]) -> None:
        self._finalizer = weakref.finalize(self, readers._release, paths)
        self._finalizer.atexit = False  # at interpreter exit nothing is deleted

    def release(self) -> None:
        """Let go of the files now (idempotent)."""
        self._finalizer()

    @property
    def released(self) -> bool:
        return not self._finalizer.alive


class Readers:
    """The reference counts of one open directory's segment files (paths relative to it)
    and the retired files waiting for their last reader. ``delete`` removes a file.

    A lease may be released by the garbage collector in any thread, even one inside this
    object's lock: a release is queued (an atomic append) and applied by whoever holds
    the lock next, or at once when it is free; so a finalizer never waits for the lock."""

    def __init__(self, delete: Callable[[str], None]) -> None:
        self._delete = delete
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self._retired: set[str] = set()
        self._released: deque[tuple[str, ...]] = deque()
        self.closed = False

    def hold(self, paths: Iterable[str]) -> Lease:
        """A lease on ``paths``: none of them is deleted while it is held."""
        held = tuple(paths)
        with self._lock:
            self._held.update(held)
        self._drain()
        return Lease(self, held)

    def retire(self, paths: Iterable[str]) -> None:
        """``paths`` left the live set (a committed manifest record): delete each now, or
        when the last lease naming it is released."""
        with self._lock:
            self._retired.update(paths)
        self._drain()

    def waiting(self) -> list[str]:
        """The retired files some reader still holds."""
        self._drain()
        with self._lock:
            return sorted(self._retired)

    def held(self, path: str) -> int:
        self._drain()
        with self._lock:
            return self._held[path]

    def _release(self, paths: tuple[str, ...]) -> None:
        self._released.append(paths)
        self._drain()

    def _drain(self) -> None:
        """Apply the queued releases and delete the retired files no lease holds."""
        while self._lock.acquire(blocking=False):
            try:
                while self._released:
                    for p in self._released.popleft():
                        self._held[p] -= 1
                        if self._held[p] <= 0:
                            del self._held[p]
                free = [p for p in self._retired if not self._held[p]]
                self._retired.difference_update(free)
            finally:
                self._lock.release()
            self._remove(free)
            if not self._released:
                return

    def _remove(self, paths: list[str]) -> None:
        if self.closed:  # the next opening removes them (files no record names)
            return
        for p in paths:
            try:
                self._delete(p)
            except OSError as exc:  # a later opening removes it as unlisted
                _log.warning("could not remove retired segment %s: %s", p, exc)


__all__ = ["Lease", "Readers"]
