"""The id index: event-id lookups for idempotency and conversation pairing.

A SQLite file (``index.sqlite``) that maps ``(tenant, event_id)`` to the acknowledgement
of the event it names, and lists conversation events with whether a usage log has been
paired with them (docs/decisions.md). It is derived data: every row can be rebuilt from the
journal and the segments. Appends write it in WAL mode inside one long-running
transaction, each append in a savepoint of its own (so a failed append is undone alone
and an append costs no commit): the journal is what makes an append durable, and
everything not yet committed here is re-indexed from the journal on open. A seal
commits it with a full fsync and records the manifest head it covers, so on open the
ledger knows what to re-index.

An index that cannot be read (not a database, truncated, damaged) is moved aside, not
deleted (``DataDir.index_aside``, for inspection), with a warning in the log, and a new
one is built: the ledger then re-indexes the whole log from the segments and the journal.

Opening costs the same whatever the index holds: SQLite's whole-file ``quick_check``
runs only when the file may not be as its writer left it. A clean close records the
file's size, modification time and inode (``DataDir.index_closed``) after SQLite has
checkpointed and removed its WAL; an open removes that record, and when the file still
matches it (and no WAL was left) checks only the header: the magic string, and a page
count and page size that give the file's size. Otherwise (a crash, a file changed or
replaced from outside, a directory written before the record) the whole file is checked.

The file records the version of the rules its rows were derived by (``VERSION``); a file
of another version is emptied on open and rebuilt.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from ledger.model.event import Ack
from ledger.storage.durable import open_private, write_atomic
from ledger.storage.layout import DataDir

_log = logging.getLogger("ledger")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (
    tenant TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,          -- the event this id acknowledges
    digest BLOB,                   -- idempotency digest of the request, when known
    ts_us INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    cost_source TEXT NOT NULL,
    conversation_id TEXT,
    target TEXT,                   -- for a paired usage log: the conversation event's id
    PRIMARY KEY (tenant, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS convs (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    paired INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_CHUNK = 500
# The rules the rows follow. 2: a caller's id in the generated shape is indexed whatever
# its ts (version 1 left such ids out of a rebuilt index).
VERSION = "2"


def _unreadable(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file (not a database, malformed), not one we may not write."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT,
                                                          sqlite3.SQLITE_NOTADB)


@dataclass(frozen=True, slots=True)
class IdEntry:
    ack: Ack
    digest: bytes | None
    target: str | None


class Index:
    """Single-writer handle; callers serialize access (the ledger's write lock)."""

    def __init__(self, layout: DataDir) -> None:
        self.path = layout.index
        self._closed = layout.index_closed
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:  # unreadable: keep it aside, start afresh
            if not _unreadable(exc):
                raise
            aside = layout.index_aside(datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
            for suffix in ("", "-wal", "-shm"):
                found = self.path.with_name(self.path.name + suffix)
                if found.exists():
                    found.rename(aside.with_name(aside.name + suffix))
            _log.warning("the id index %s could not be read (%s): moved to %s; rebuilding "
                         "it from the log", self.path, exc, aside)
            self.db = self._open()
        row = self.db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is None or row[0] != VERSION:  # derived by other rules: rebuild it all
            self.clear()
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)",
                            (VERSION,))

    def _open(self) -> sqlite3.Connection:
        """Open (creating) the index file and check that it can be read: the header
        alone if it is as its writer closed it, else all of it (module docstring)."""
        as_closed = self._as_closed() and _header_whole(self.path)
        self.checked_whole = not as_closed
        """Whether this open ran SQLite's whole-file check (else: the header's)."""
        # 0600 before SQLite opens it: its -wal and -shm files take the database's mode.
        os.close(open_private(self.path, os.O_RDWR))
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            problems = ["ok"] if as_closed else [r[0] for r in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:  # opened, but SQLite's check found damage
                damaged = sqlite3.DatabaseError("; ".join(problems[:3]))
                damaged.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # type: ignore[attr-defined]
                raise damaged
        except BaseException:
            db.close()
            raise
        return db

    def _as_closed(self) -> bool:
        """Whether the index file is exactly as its writer last closed it (no WAL left,
        the same size, time and inode as recorded then); the record is removed, so a
        crash from now on leaves none."""
        try:
            recorded = orjson.loads(self._closed.read_bytes())
        except FileNotFoundError:
            return False
        except (OSError, orjson.JSONDecodeError):
            recorded = None
        self._closed.unlink(missing_ok=True)
        try:
            now = _identity(self.path)
            wal = self.path.with_name(self.path.name + "-wal")
            left = wal.stat().st_size if wal.exists() else 0
        except OSError:
            return False
        return left == 0 and recorded == now

    # -- reads ---------------------------------------------------------------------------
    def lookup(self, tenant: str, event_ids: Sequence[str]) -> dict[str, IdEntry]:
        out: dict[str, IdEntry] = {}
        for i in range(0, len(event_ids), _CHUNK):
            chunk = list(event_ids[i:i + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT event_id, seq, digest, ts_us, cost_nanos, cost_source, conversation_id,"
                f" target FROM ids WHERE tenant = ? AND event_id IN ({marks})",
                [tenant, *chunk],
            ).fetchall()
            for eid, seq, digest, ts_us, cost, source, conv, target in rows:
                ack = Ack(target or eid, tenant, seq, ts_us, cost, source, conv, created=False)
                out[eid] = IdEntry(ack, digest, target)
        return out

    def unpaired_conversation(self, tenant: str, conversation_id: str, *,
                              exclude: set[str] | frozenset[str] = frozenset(),
                              ) -> tuple[int, str] | None:
        """The oldest conversation event of ``conversation_id`` with no usage log paired."""
        for seq, event_id in self.db.execute(
            "SELECT seq, event_id FROM convs WHERE tenant = ? AND conversation_id = ?"
            " AND paired = 0 ORDER BY seq LIMIT ?",
            (tenant, conversation_id, len(exclude) + 1),
        ):
            if event_id not in exclude:
                return seq, event_id
        return None

    def head(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'manifest_head'").fetchone()
        return row[0] if row else None

    # -- writes --------------------------------------------------------------------------
    def begin(self) -> None:
        """Start a unit of work (a savepoint inside the long-running transaction)."""
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
        self.db.execute("SAVEPOINT unit")

    def commit(self, *, durable: bool = False) -> None:
        """End the unit of work. ``durable`` also commits the long-running transaction,
        checkpoints the WAL into the database file and fsyncs it, so everything so far
        survives a power loss."""
        self.db.execute("RELEASE unit")
        if durable:
            self.db.execute("COMMIT")
            self.db.execute("PRAGMA wal_checkpoint(FULL)")

    def rollback(self) -> bool:
        """Undo the current unit of work alone. False if that could not be done alone:
        SQLite rolled back the whole transaction (it may on a full disk), so the work of
        earlier units not yet committed is lost too."""
        if not self.db.in_transaction:
            return False
        self.db.execute("ROLLBACK TO unit")
        self.db.execute("RELEASE unit")
        return True

    def add_ids(self, tenant: str, rows: Iterable[tuple], *, replace: bool = False) -> None:
        """rows: (event_id, seq, digest, ts_us, cost_nanos, cost_source, conversation_id,
        target)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.db.executemany(
            f"{verb} INTO ids (tenant, event_id, seq, digest, ts_us, cost_nanos, cost_source,"
            " conversation_id, target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((tenant, *r) for r in rows),
        )

    def add_conversations(self, tenant: str, rows: Iterable[tuple[str, int, str]]) -> None:
        """rows: (conversation_id, seq, event_id)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO convs (tenant, conversation_id, seq, event_id)"
            " VALUES (?, ?, ?, ?)",
            ((tenant, *r) for r in rows),
        )

    def mark_paired(self, tenant: str, event_ids: Iterable[str]) -> None:
        self.db.executemany(
            "UPDATE convs SET paired = 1 WHERE tenant = ? AND event_id = ?",
            ((tenant, e) for e in event_ids),
        )

    def set_head(self, head: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('manifest_head', ?)", (head,))

    def clear(self) -> None:
        self.db.execute("DELETE FROM ids")
        self.db.execute("DELETE FROM convs")
        self.db.execute("DELETE FROM meta WHERE key <> 'version'")

    def close(self) -> None:
        """Commit and close; SQLite then checkpoints its WAL into the file (with a
        sync) and removes it, and the file's state is recorded for the next open."""
        if self.db.in_transaction:
            self.db.execute("COMMIT")
        self.db.close()
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            if wal.exists() and wal.stat().st_size:  # not checkpointed: no record
                return
            write_atomic(self._closed, orjson.dumps(_identity(self.path)))
        except OSError as exc:  # a full disk: the next open checks the whole file
            _log.info("the id index's clean close could not be recorded (%s)", exc)


def _identity(path: Path) -> dict[str, int]:
    """What changes when a file is written, truncated or replaced."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _header_whole(path: Path) -> bool:
    """Whether the file's header is SQLite's and its page count and page size give the
    file's size (SQLite's file format: the magic string, the page size at offset 16,
    the page count at offset 28, valid when the change counter at offset 24 equals the
    version-valid-for number at offset 92). An empty file is a database not yet written."""
    with open(path, "rb") as fh:
        head = fh.read(100)
        size = os.fstat(fh.fileno()).st_size
    if size == 0:
        return True
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return False
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    counter, pages = struct.unpack(">II", head[24:32])
    valid_for = struct.unpack(">I", head[92:96])[0]
    return counter == valid_for and pages * page_size == size
