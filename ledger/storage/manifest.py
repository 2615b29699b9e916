"""The manifest: the hash-chained commit log of segment files.

``manifest.jsonl`` holds one record a line, each the RFC 8785 JSON of an object with

* ``n``     its position (0-based),
* ``prev``  the SHA-256 (hex) of the previous line's bytes, 64 zeros for the first,
* ``op``    ``"seal"`` (journal files up to ``journal`` became the segments in ``add``)
            or ``"compact"`` (the segments in ``remove`` were merged into ``add``),
* ``at``    when (RFC 3339 UTC),
* ``add`` / ``remove``  segment descriptions: ``path`` (relative to the data directory),
            ``sha256`` of the file, ``rows``, ``bytes``, ``tenant``, ``date``, ``kind``
            (``events``, ``pairs``, ``receipts`` or ``membership``), ``seq_min`` and ``seq_max``.

Every ``CHECKPOINT_EVERY`` records, or sooner once the records since the last checkpoint
outweigh the live set (and 1 MiB), the writer appends a ``"checkpoint"`` record: it adds and
removes nothing, and holds the whole live set (``live``, sorted by path) and the sealed
journal number (``journal``). It is chained like any record, so a full walk of the chain
(``llmring ledger verify``) checks it equals what the records before it add up to. Opening
reads the file backwards to the last checkpoint and walks the chain from there: its cost is
about twice the live set, not the history.

A segment exists only once a record naming it is durably appended (one ``write`` of one
line, then fsync). Readers use the live set the records add up to, never a directory
listing. A torn last line (a crash mid-append) is not a record and is cut off on open;
any other break of the chain is tampering, reported by ``llmring ledger verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ledger.errors import ManifestError, ManifestForkError
from ledger.model.event import canonical_json
from ledger.storage.durable import open_private

if TYPE_CHECKING:
    from ledger.storage.manifest_objects import ManifestObjects

GENESIS = "0" * 64
CHECKPOINT_EVERY = 512  # records between checkpoint records, at most
CHECKPOINT_MIN_BYTES = 1 << 20  # and once the records since the last outweigh the live set
_CHECKPOINT_MARK = b'"op":"checkpoint"'  # in a canonical line only as the op (quotes escape)
_READ_BLOCK = 1 << 20
_log = logging.getLogger("ledger")


@dataclass(frozen=True, slots=True)
class Segment:
    path: str
    sha256: str
    rows: int
    bytes: int
    tenant: str
    date: str
    kind: str
    seq_min: int
    seq_max: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "sha256": self.sha256, "rows": self.rows, "bytes": self.bytes,
            "tenant": self.tenant, "date": self.date, "kind": self.kind,
            "seq_min": self.seq_min, "seq_max": self.seq_max,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(**{k: d[k] for k in cls.__slots__})


@dataclass(slots=True)
class ManifestState:
    """What the records add up to. ``records`` and ``hashes`` hold the records from
    ``base`` on (the last checkpoint record when opened from one, else from 0)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    live: dict[str, Segment] = field(default_factory=dict)
    sealed_journal: int = 0  # journal files numbered <= this are sealed
    base: int = 0  # the number (n) of records[0]
    base_prev: str = GENESIS  # the hash of the line before records[0]
    bytes_since: int = 0  # bytes of the records held after the last checkpoint

    @property
    def live_bytes(self) -> int:
        """About the size of a checkpoint record of the live set now."""
        return 256 * len(self.live)

    @property
    def head(self) -> str:
        return self.hashes[-1] if self.hashes else self.base_prev

    @property
    def count(self) -> int:
        """The number of records in the whole manifest."""
        return self.base + len(self.records)

    def records_after(self, head: str) -> list[dict[str, Any]] | None:
        """The held records after the one whose line hashes to ``head``; None if that
        record is not held (older than the last checkpoint, or not in the chain)."""
        if head == self.base_prev:
            return list(self.records)
        try:
            return self.records[self.hashes.index(head) + 1:]
        except ValueError:
            return None

    def checkpoint_record(self) -> dict[str, Any]:
        """The fields of a checkpoint record of the state now."""
        return {"op": "checkpoint", "add": [], "remove": [], "journal": self.sealed_journal,
                "live": [self.live[p].as_dict() for p in sorted(self.live)]}

    def apply(self, record: dict[str, Any]) -> None:
        if record.get("op") == "checkpoint":
            self.live = {d["path"]: Segment.from_dict(d) for d in record["live"]}
            self.sealed_journal = int(record["journal"])
            return
        for d in record.get("remove", []):
            self.live.pop(d["path"], None)
        for d in record.get("add", []):
            seg = Segment.from_dict(d)
            self.live[seg.path] = seg
        if record.get("op") == "seal":
            self.sealed_journal = max(self.sealed_journal, int(record["journal"]))

    def segments(self, tenant: str | None = None, kind: str = "events") -> list[Segment]:
        return [s for s in self.live.values()
                if s.kind == kind and (tenant is None or s.tenant == tenant)]

    def tenant_rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.live.values():
            if s.kind in ("events", "receipts"):  # both are entries of the tenant's log
                out[s.tenant] = out.get(s.tenant, 0) + s.rows
        return out


@dataclass(frozen=True, slots=True)
class ChainProblem:
    line: int
    message: str


def read_lines(path: Path) -> tuple[list[bytes], bool]:
    """The complete lines of the manifest, and whether a torn last line follows them."""
    if not path.exists():
        return [], False
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    return lines[:-1], torn


def read_from_checkpoint(path: Path) -> tuple[list[bytes], int, int]:
    """The complete lines from the last checkpoint record on (all lines if there is none),
    the number of lines before them, and the length of a torn last line (0 if none).
    Reads the file backwards, so the lines before the checkpoint are never read."""
    if not path.exists():
        return [], 0, 0
    with open(path, "rb") as fh:
        pos = os.fstat(fh.fileno()).st_size
        blocks: list[bytes] = []  # read so far, last block first
        marked = False  # a mark was read, maybe in a line not yet read whole
        while pos:
            step = min(_READ_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            # the mark may straddle this block and the one after it
            seen = block + (blocks[-1][:len(_CHECKPOINT_MARK)] if blocks else b"")
            blocks.append(block)
            marked = marked or _CHECKPOINT_MARK in seen
            if pos and not marked:
                continue
            buf = b"".join(reversed(blocks))
            first = 0 if pos == 0 else buf.find(b"\n") + 1  # a line's end only before it
            cut = buf.rfind(b"\n") + 1  # the torn tail after the last newline
            lines = buf[first:cut].split(b"\n")[:-1] if cut > first else []
            at = _last_checkpoint(lines)
            if at is not None:  # its number is its "n" (a walk from 0 checks it)
                return lines[at[0]:], at[1], len(buf) - cut
            if pos == 0:
                return lines, 0, len(buf) - cut
    return [], 0, 0


def _last_checkpoint(lines: list[bytes]) -> tuple[int, int] | None:
    """The index and record number of the last checkpoint record among ``lines``."""
    for i in range(len(lines) - 1, -1, -1):
        if _CHECKPOINT_MARK in lines[i]:
            try:
                record = orjson.loads(lines[i])
                if record.get("op") == "checkpoint" and isinstance(record.get("n"), int):
                    return i, record["n"]
            except (orjson.JSONDecodeError, AttributeError):
                continue
    return None


def check_chain(lines: list[bytes], *, first: int = 0, after: str | None = None,
                state: ManifestState | None = None
                ) -> tuple[ManifestState, list[ChainProblem]]:
    """Walk the chain; apply every record that parses. Problems name the line (1-based).
    With ``first`` > 0 the lines start at record ``first``: a checkpoint record whose own
    ``prev`` is taken as given (a walk from 0 checks it), or, with ``after`` (the hash of
    record ``first - 1``) and ``state`` (what the records before add up to), any record."""
    if state is None:
        state = ManifestState()
    state.base = first
    problems: list[ChainProblem] = []
    prev = GENESIS if after is None else after
    if first and lines and after is None:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            prev = str(orjson.loads(lines[0]).get("prev"))
    state.base_prev = prev
    for k, line in enumerate(lines):
        i = first + k
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(ChainProblem(i + 1, "manifest line is not valid JSON"))
            prev = hashlib.sha256(line).hexdigest()
            continue
        if not isinstance(record, dict):
            problems.append(ChainProblem(i + 1, "manifest line is not a JSON object"))
            prev = hashlib.sha256(line).hexdigest()
            continue
        if record.get("n") != i:
            problems.append(
                ChainProblem(i + 1, f"record number is {record.get('n')}, expected {i}"))
        if record.get("prev") != prev:
            problems.append(ChainProblem(
                i + 1, "hash chain broken: 'prev' does not match the previous line's SHA-256"))
        if not _canonical(record, line):
            problems.append(ChainProblem(i + 1, "record is not in canonical (RFC 8785) form"))
        prev = hashlib.sha256(line).hexdigest()
        state.records.append(record)
        state.hashes.append(prev)
        if record.get("op") != "checkpoint":
            state.bytes_since += len(line) + 1
        try:
            if record.get("op") == "checkpoint" and (k or after is not None):
                _check_checkpoint(state, record, i, problems)
            state.apply(record)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(ChainProblem(i + 1, f"malformed record: {exc}"))
    return state, problems


def _canonical(record: dict[str, Any], line: bytes) -> bool:
    """Whether ``line`` is the RFC 8785 form of ``record``. For an ASCII line holding no
    float and no integer beyond I-JSON's, that form is orjson's with sorted keys (the
    same escapes and digits), ~100 times faster than the reference serializer, which
    decides every other case."""
    if line.isascii() and _plain(record) and \
            orjson.dumps(record, option=orjson.OPT_SORT_KEYS) == line:
        return True
    try:
        return canonical_json(record, reference=True) == line
    except (TypeError, ValueError):
        return False


_MAX_INT = 2**53 - 1


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    return isinstance(value, int) and -_MAX_INT <= value <= _MAX_INT


def _check_checkpoint(state: ManifestState, record: dict[str, Any], i: int,
                      problems: list[ChainProblem]) -> None:
    """A checkpoint must hold exactly what the records before it add up to."""
    if record["live"] != [state.live[p].as_dict() for p in sorted(state.live)]:
        problems.append(ChainProblem(i + 1, "checkpoint's live set differs from the "
                                     "segments the records before it add up to"))
    if int(record["journal"]) != state.sealed_journal:
        problems.append(ChainProblem(i + 1, f"checkpoint says journal {record['journal']} "
                                     f"sealed, the records before it {state.sealed_journal}"))
    if record["add"] or record["remove"]:
        problems.append(ChainProblem(i + 1, "checkpoint record adds or removes segments"))


class Manifest:
    """The writer's handle on ``manifest.jsonl``."""

    def __init__(self, path: Path, *, checkpoint_every: int | None = None,
                 objects: ManifestObjects | None = None) -> None:
        """``objects``: the project's records on object storage
        (``ledger.storage.manifest_objects``), written before each local line, the commit
        point; the local file is brought level with them here."""
        self.path = path
        self.checkpoint_every = checkpoint_every or CHECKPOINT_EVERY
        self.objects = objects
        self._unsynced: list[bytes] = []  # committed as objects, not yet in the local file
        lines, first, torn = read_from_checkpoint(path)
        if torn:  # a crash mid-append: the partial line never committed anything
            with open(path, "r+b") as fh:
                fh.truncate(os.fstat(fh.fileno()).st_size - torn)
                os.fsync(fh.fileno())
        self.state, problems = check_chain(lines, first=first)
        if problems:
            first = problems[0]
            raise ManifestError(
                f"{path} line {first.line}: {first.message}. The data directory was altered; "
                "run `llmring ledger verify` for the full report")
        self._fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        if objects is not None:
            try:
                self._level_with(objects, lines[-1] if lines else None)
            except BaseException:
                self.close()
                raise

    def _level_with(self, objects: ManifestObjects, last: bytes | None) -> None:
        """Bring the local file level with the project's records on object storage:
        records there beyond the local ones (a crash after their put) are appended here;
        local records the bucket lacks (written before the directory had objects) are
        uploaded; a differing record is ``ManifestForkError``."""
        n = self.state.count
        if n and last is not None:
            theirs = objects.get(n - 1)
            if theirs is None:
                self._upload_missing(objects, n)
            elif theirs != last:
                raise ManifestForkError(
                    f"{objects.where(n - 1)} differs from record {n - 1} of {self.path}: "
                    "another process wrote this project through the same bucket",
                    where=objects.where(n - 1), ours=last.decode(errors="replace"),
                    theirs=theirs.decode(errors="replace"))
        for i, line in objects.after(n):
            problem = self._adopt(line)
            if problem:
                raise ManifestError(f"{objects.where(i)}: {problem}. The bucket's manifest "
                                    "was altered; run `llmring ledger verify`")

    def _upload_missing(self, objects: ManifestObjects, n: int) -> None:
        lines, _ = read_lines(self.path)
        start = n - 1
        while start > 0 and objects.get(start - 1) is None:
            start -= 1
        for i in range(start, n):
            objects.put(i, lines[i])

    def _adopt(self, line: bytes) -> str | None:
        """Append a record committed on object storage to the local file (None), or say
        why it does not continue the chain."""
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return "not valid JSON"
        if not isinstance(record, dict) or record.get("n") != self.state.count:
            return f"not record {self.state.count}"
        if record.get("prev") != self.state.head:
            return "hash chain broken: 'prev' does not match the previous record"
        if not _canonical(record, line):
            return "not in canonical (RFC 8785) form"
        self._append_local(line)
        self._committed(record, line)
        return None

    def append(self, op: str, at: str, *, add: Iterable[Segment] = (),
               remove: Iterable[Segment] = (), journal: int | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "op": op, "at": at,
            "add": [s.as_dict() for s in add],
            "remove": [s.as_dict() for s in remove],
        }
        if journal is not None:
            record["journal"] = journal
        record = self._write(record)
        if len(self.state.records) > self.checkpoint_every or \
                self.state.bytes_since > max(CHECKPOINT_MIN_BYTES, self.state.live_bytes):
            try:
                self.checkpoint(at)
            except OSError as exc:  # the record above is committed; try again next time
                _log.warning("manifest checkpoint not written: %s", exc)
        return record

    def checkpoint(self, at: str) -> dict[str, Any]:
        """Append a checkpoint record (the live set now); later opens start from it."""
        return self._write({**self.state.checkpoint_record(), "at": at})

    def _write(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Commit one record: its object first (with object storage), then the local
        line. A local failure before the object was written commits nothing; after it,
        the record is committed and its line is appended locally before the next record
        (or at the next open, from the bucket)."""
        while self._unsynced:  # before anything new: the local file catches up
            self._append_local(self._unsynced[0])
            self._unsynced.pop(0)
        record = {"n": self.state.count, "prev": self.state.head, **fields}
        line = canonical_json(record, reference=True)
        if self.objects is None:
            self._append_local(line)
        else:
            self.objects.put(record["n"], line)
            try:
                self._append_local(line)
            except OSError as exc:
                self._unsynced.append(line)
                _log.warning("manifest record %d is committed in the bucket but not yet in "
                             "%s (%s): it is written there before the next record",
                             record["n"], self.path, exc)
        self._committed(record, line)
        return record

    def _append_local(self, line: bytes) -> None:
        """One line appended and fsynced, or (a full disk) no part of it left."""
        end = os.fstat(self._fd).st_size
        try:
            view = memoryview(line + b"\n")
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise

    def _committed(self, record: dict[str, Any], line: bytes) -> None:
        state = self.state
        state.records.append(record)
        state.hashes.append(hashlib.sha256(line).hexdigest())
        state.apply(record)
        if record.get("op") == "checkpoint":  # later opens start from it
            state.records = state.records[-1:]
            state.hashes = state.hashes[-1:]
            state.base = record["n"]
            state.base_prev = record["prev"]
            state.bytes_since = 0
        else:
            state.bytes_since += len(line) + 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
