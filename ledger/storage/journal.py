"""The journal: the write-ahead log that makes an append durable before it is acknowledged.

Files ``journal/<n>.wal`` (n increasing) hold framed records::

    u32 length (little endian) | u32 CRC-32 of payload | payload

An event payload is ``b"E" | u64 seq | i64 recorded_at (µs) | 16-byte digest | canonical
bytes``: the canonical bytes are the event (and hash to its leaf), so the journal stores
nothing that could disagree with the leaf hash. A run of events with consecutive seqs and
one ``recorded_at`` (what one batch append writes) may instead share one payload ``b"B" |
u32 count | u64 first seq | i64 recorded_at (µs) | count × 16-byte digest | count × u32
length | the canonical bytes, one after the other``: the same records, framed once. A
pairing payload (a usage log joined to
the conversation event it names, docs/decisions.md) is ``b"P" | JSON``. Every appended batch ends
with a commit frame ``b"C"``: on replay, records after the last commit frame belong to a
batch that was never acknowledged and are dropped, so a batch is wholly present or absent.

A receipt entry (a log entry of kind ``receipt``, docs/formats.md) is ``b"R" | u64 seq | i64
recorded_at (µs) | canonical bytes of the signed receipt``, followed in the same batch by
one or more membership payloads ``b"M" | u64 receipt seq | (i64 first seq, i64 last
seq)*``: the runs of event seqs the receipt certifies. Being one batch, a receipt and its
membership are recovered together or not at all.

Appends are written in one ``write`` under the caller's lock and made durable by
``commit(position)``: group commit, where whichever waiter finds no fsync in flight
issues one for everything written so far, and the rest wait on it. Writers announce an
append before they prepare it (``announce``); a leader that knows of announced appends
not yet written waits for them a little (at most ``GROUP_WAIT`` seconds, as PostgreSQL's
``commit_delay`` does when other transactions are active), so one fsync covers many
concurrent appends instead of each eager leader syncing alone. A write that fails part
way is cut off again (the file keeps whole frames only), so later appends follow the last
whole one.

``scan_journal`` reads a file back and tells a **torn tail** from **damage**. The file is
written in order, so a process killed mid-append leaves a prefix of what it wrote: whole
valid frames, then perhaps the start of one more (recovery cuts that and any batch its
commit frame never reached, as before). Damage is anything a prefix cannot be: a valid
commit frame after the first bad frame (later appends were written, so the bad bytes were
once whole); a frame wholly present whose checksum or payload is wrong; a length no frame
has; a partial frame whose type cannot have that length; any bytes after the last commit
of a file closed by rotation. A tail of zero bytes is unwritten space, not damage.
``Damage`` says where the first bad frame starts and what intact frames lie beyond it
(found by skipping the bad frame by its length, else by searching for the next commit
frame).
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from ledger.errors import JournalError
from ledger.storage.durable import fsync_dir, open_private, private_dir
from ledger.storage.layout import JOURNAL_SUFFIX, journal_name

FRAME = struct.Struct("<II")
EVENT_HEAD = struct.Struct("<Qq16s")
MAX_FRAME = 64 * 1024 * 1024
GROUP_WAIT = 0.002  # seconds a group-commit leader waits for announced appends


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    recorded_at_us: int
    digest: bytes
    canonical: bytes


@dataclass(frozen=True, slots=True)
class PairRecord:
    data: dict


@dataclass(frozen=True, slots=True)
class CommitRecord:
    pass


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    seq: int
    recorded_at_us: int
    canonical: bytes


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    receipt_seq: int
    ranges: bytes  # packed little-endian int64 pairs (first seq, last seq), inclusive


Record = EventRecord | PairRecord | ReceiptRecord | MembershipRecord | CommitRecord
RECEIPT_HEAD = struct.Struct("<Qq")
MEMBERSHIP_HEAD = struct.Struct("<Q")
RANGES_PER_FRAME = (MAX_FRAME - 64) // 16
BATCH_HEAD = struct.Struct("<IQq")
_NO_DIGEST = b"\0" * 16


def encode_event(seq: int, recorded_at_us: int, digest: bytes, canonical: bytes) -> bytes:
    return _frame(b"E" + EVENT_HEAD.pack(seq, recorded_at_us, digest.ljust(16, b"\0"))
                  + canonical)


def encode_events(first_seq: int, recorded_at_us: int, digests: Sequence[bytes],
                  canonical: Sequence[bytes]) -> bytes:
    """Events ``first_seq``, ``first_seq + 1``, … recorded at one time, as ``B`` frames (as
    many as ``MAX_FRAME`` needs); ``digests`` are 16 bytes or empty (none)."""
    return b"".join(encode_events_parts(first_seq, recorded_at_us, digests, canonical))


def encode_events_parts(first_seq: int, recorded_at_us: int, digests: Sequence[bytes],
                        canonical: Sequence[bytes]) -> list[bytes]:
    """``encode_events`` as pieces to write one after the other (``Journal.write`` takes
    them as they are: a batch's megabytes are not copied once more to join them)."""
    lengths = list(map(len, canonical))
    n = len(lengths)
    if n > 0 and sum(lengths) + 20 * n < MAX_FRAME - 64:  # one frame (a batch of 10,000: ~4 MB)
        payload = _batch_payload(first_seq, recorded_at_us, digests, canonical, lengths)
        return [FRAME.pack(len(payload), zlib.crc32(payload)), payload]
    frames = []
    start = 0
    while start < n:
        end = start
        size = 0
        while end < n and (end == start or size + lengths[end] + 20 < MAX_FRAME - 64):
            size += lengths[end] + 20
            end += 1
        frames.append(_frame(_batch_payload(first_seq + start, recorded_at_us,
                                            digests[start:end], canonical[start:end],
                                            lengths[start:end])))
        start = end
    return frames


def _batch_payload(first_seq: int, recorded_at_us: int, digests: Sequence[bytes],
                   canonical: Sequence[bytes], lengths: Sequence[int]) -> bytes:
    n = len(lengths)
    return b"".join((b"B", BATCH_HEAD.pack(n, first_seq, recorded_at_us),
                     b"".join([d or _NO_DIGEST for d in digests]),
                     struct.pack(f"<{n}I", *lengths), *canonical))


def _decode_batch(payload: bytes) -> list[EventRecord]:
    count, first, recorded = BATCH_HEAD.unpack_from(payload, 1)
    pos = 1 + BATCH_HEAD.size
    digests = payload[pos:pos + 16 * count]
    pos += 16 * count
    lengths = struct.unpack_from(f"<{count}I", payload, pos)
    pos += 4 * count
    if pos + sum(lengths) != len(payload):
        raise ValueError("batch frame lengths do not add up")
    out = []
    for k, length in enumerate(lengths):
        digest = digests[16 * k:16 * k + 16]
        out.append(EventRecord(first + k, recorded, b"" if digest == _NO_DIGEST else digest,
                               payload[pos:pos + length]))
        pos += length
    return out


def encode_pair(data: dict) -> bytes:
    return _frame(b"P" + orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


def encode_receipt(seq: int, recorded_at_us: int, canonical: bytes,
                   ranges: bytes) -> bytes:
    """A receipt entry and its membership runs (``ranges``: packed int64 pairs), as frames
    for one batch (the caller appends the commit frame)."""
    frames = [_frame(b"R" + RECEIPT_HEAD.pack(seq, recorded_at_us) + canonical)]
    step = RANGES_PER_FRAME * 16
    for start in range(0, max(len(ranges), 1), step):
        frames.append(_frame(b"M" + MEMBERSHIP_HEAD.pack(seq) + ranges[start:start + step]))
    return b"".join(frames)


def _frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


COMMIT_FRAME = _frame(b"C")
COMMIT = CommitRecord()
_MAX_PIECES = 512  # pieces given to one writev (the system allows 1,024)


def _decode(payload: bytes) -> Record:
    if payload[:1] == b"E":
        seq, rec, digest = EVENT_HEAD.unpack_from(payload, 1)
        digest = b"" if digest == b"\0" * 16 else digest
        return EventRecord(seq, rec, digest, payload[1 + EVENT_HEAD.size:])
    if payload[:1] == b"P":
        return PairRecord(orjson.loads(payload[1:]))
    if payload[:1] == b"R":
        seq, rec = RECEIPT_HEAD.unpack_from(payload, 1)
        return ReceiptRecord(seq, rec, payload[1 + RECEIPT_HEAD.size:])
    if payload[:1] == b"M":
        (seq,) = MEMBERSHIP_HEAD.unpack_from(payload, 1)
        return MembershipRecord(seq, payload[1 + MEMBERSHIP_HEAD.size:])
    if payload == b"C":
        return COMMIT
    raise ValueError(f"unknown journal record type {payload[:1]!r}")


_MIN_PAYLOAD = {b"E": 1 + EVENT_HEAD.size, b"B": 1 + BATCH_HEAD.size, b"P": 2,
                b"R": 1 + RECEIPT_HEAD.size, b"M": 1 + MEMBERSHIP_HEAD.size}
"""The shortest payload of each record type but the commit (whose payload is ``b"C"``)."""


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes inside a journal file no interrupted append could have left. ``offset``: where
    the first bad frame starts; ``beyond``: the intact records after the cut (the end of
    the last commit frame before it), found in ``frames_beyond`` frames: what cutting there
    would lose, at least (the bad frame's own records cannot be read)."""

    offset: int
    beyond: tuple[Record, ...]
    frames_beyond: int

    @property
    def events_beyond(self) -> int:
        return sum(isinstance(r, EventRecord) for r in self.beyond)


@dataclass(frozen=True, slots=True)
class JournalScan:
    """A journal file read back: the records of its committed batches up to the first bad
    or missing frame (held in ``frames`` frames, commit frames not counted), the length of
    that committed prefix, the file's length, and the damage if what follows the prefix is
    not a torn tail."""

    records: list[Record]
    frames: int
    committed: int
    length: int
    damage: Damage | None

    @property
    def torn(self) -> bool:
        """Bytes after the committed prefix that an interrupted append left (cut on open)."""
        return self.damage is None and self.committed != self.length

    def cut(self) -> JournalScan:
        """The file as cut at the end of its committed prefix."""
        return JournalScan(self.records, self.frames, self.committed, self.committed, None)

    def lost_by_cut(self) -> tuple[int, int]:
        """The intact frames and events a cut at the committed prefix drops (at least: a
        damaged frame's own cannot be read)."""
        if self.damage is None:
            return 0, 0
        return self.damage.frames_beyond, self.damage.events_beyond

    def held(self) -> tuple[int, int]:
        """The intact frames and events of the whole file (a file after a cut is dropped)."""
        frames, events = self.lost_by_cut()
        return (self.frames + frames,
                sum(isinstance(r, EventRecord) for r in self.records) + events)


def scan_journal(path: Path, *, closed: bool = False) -> JournalScan:
    """Read a journal file (see the module docstring). ``closed``: a later file exists,
    so this one was made durable whole at rotation and any bytes after its last commit
    frame are damage."""
    return scan_bytes(path.read_bytes(), closed=closed)


def scan_bytes(data: bytes, *, closed: bool = False) -> JournalScan:
    """``scan_journal`` of a file's bytes."""
    records: list[Record] = []
    batch: list[Record] = []
    frames = batch_frames = 0
    pos = committed = 0
    while (frame := _frame_at(data, pos)) is not None:
        pos, got = frame
        if got == [COMMIT]:
            records.extend(batch)
            frames += batch_frames
            batch, batch_frames, committed = [], 0, pos
        else:
            batch.extend(got)
            batch_frames += 1
    damage = None
    if committed < len(data) and (closed or _damaged_at(data, pos)):
        beyond, beyond_frames = _salvage(data, pos)
        damage = Damage(pos, (*batch, *beyond), batch_frames + beyond_frames)
    return JournalScan(records, frames, committed, len(data), damage)


def _frame_at(data: bytes, pos: int) -> tuple[int, list[Record]] | None:
    """Where the valid frame starting at ``pos`` ends, and its records; None when no whole
    valid frame starts there."""
    if pos + FRAME.size > len(data):
        return None
    length, crc = FRAME.unpack_from(data, pos)
    end = pos + FRAME.size + length
    if length == 0 or length > MAX_FRAME or end > len(data):
        return None
    payload = data[pos + FRAME.size:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        if payload[:1] == b"B":
            return end, _decode_batch(payload)
        return end, [_decode(payload)]
    except (ValueError, struct.error):
        return None


def _damaged_at(data: bytes, bad: int) -> bool:
    """Whether the bytes from ``bad`` (where no valid frame starts) cannot be the torn end
    of an append: see the module docstring."""
    rest = data[bad:]
    if not rest.strip(b"\0"):
        return False  # unwritten space (a file system may leave zeros after a power loss)
    if data.find(COMMIT_FRAME, bad + 1) >= 0:
        return True  # a later append was written whole
    if len(rest) < FRAME.size:
        return False  # the start of a frame header
    length, _ = FRAME.unpack_from(rest)
    if length == 0 or length > MAX_FRAME or FRAME.size + length <= len(rest):
        return True  # no frame has that length, or a whole frame that does not read
    if len(rest) == FRAME.size:
        return False  # a whole header, no payload yet
    kind = rest[FRAME.size:FRAME.size + 1]
    return kind not in _MIN_PAYLOAD or length < _MIN_PAYLOAD[kind]


def _salvage(data: bytes, bad: int) -> tuple[list[Record], int]:
    """The intact records after a bad frame at ``bad``, and the number of frames holding
    them (commit frames not counted)."""
    records: list[Record] = []
    frames = 0
    pos = bad
    while pos < len(data):
        frame = _frame_at(data, pos)
        if frame is None:
            pos = _next_frame(data, pos)
            continue
        pos, got = frame
        if got != [COMMIT]:
            records.extend(got)
            frames += 1
    return records, frames


def _next_frame(data: bytes, bad: int) -> int:
    """Where the frame after the bad one at ``bad`` starts: where its length says it ends,
    if a valid frame (or the end of the file) is there, else at the next commit frame
    (else the end of the file)."""
    if bad + FRAME.size <= len(data):
        length, _ = FRAME.unpack_from(data, bad)
        after = bad + FRAME.size + length
        if 0 < length <= MAX_FRAME and after <= len(data) and (
                after == len(data) or _frame_at(data, after) is not None):
            return after
    at = data.find(COMMIT_FRAME, bad + 1)
    return len(data) if at < 0 else at


def journal_files(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for p in directory.glob(f"*{JOURNAL_SUFFIX}"):
        try:
            out.append((int(p.stem), p))
        except ValueError:
            continue
    return sorted(out)


class Journal:
    """The active journal file plus group commit. Writes must be serialized by the
    caller; ``commit`` may be called from any thread."""

    def __init__(self, directory: Path, number: int) -> None:
        self.directory = directory
        private_dir(directory)
        self._mutex = threading.Lock()
        self._cv = threading.Condition(self._mutex)  # waiters for durability
        self._leader_cv = threading.Condition(self._mutex)  # a leader waiting for writers
        self._syncing = False
        self._failed: BaseException | None = None
        self._written = 0  # global byte position (monotonic across files)
        self._durable = 0
        self._announced = 0  # appends announced and not yet written or abandoned
        self._leader_waiting = False
        self._fd = -1
        self._file_end = 0  # bytes of whole frames in the current file
        self._last_start = 0  # where the last write began in it (``undo_last_write``)
        self.number = number
        # Told the seconds of each group-commit fsync (``llmring serve``'s /metrics).
        self.on_sync: Callable[[float], None] | None = None
        self._fd = self._open(number)

    def _open(self, number: int) -> int:
        """Open (creating) file ``number`` and make it the current one; its descriptor."""
        path = self.directory / journal_name(number)
        existed = path.exists()
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        try:
            if not existed:
                fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        self.number = number
        # the end of the whole frames written, and where the last write began
        self._file_end = self._last_start = os.fstat(fd).st_size
        return fd

    @property
    def path(self) -> Path:
        return self.directory / journal_name(self.number)

    @property
    def healthy(self) -> bool:
        """No failed fsync or cut: the journal still takes writes."""
        return self._failed is None

    @property
    def written(self) -> int:
        """Bytes written to the journal since it was opened (across its files)."""
        return self._written

    @property
    def position(self) -> int:
        """Bytes written so far (across files): what a commit of everything waits for."""
        with self._cv:
            return self._written

    def announce(self) -> None:
        """Say an append is being prepared; pair with ``write(..., announced=True)`` or
        ``abandon()``."""
        with self._cv:
            self._announced += 1

    def abandon(self) -> None:
        """An announced append will write nothing (refused, or all repeats)."""
        with self._cv:
            self._announced -= 1
            if self._leader_waiting:
                self._leader_cv.notify()

    def write(self, data: bytes | Sequence[bytes], *, announced: bool = False) -> int:
        """Append bytes (one or more frames, whole or in pieces written one after the
        other); return the position to ``commit`` to."""
        if self._failed is not None:
            raise JournalError(f"the journal failed earlier: {self._failed}")
        self._last_start = self._file_end
        try:
            size = self._write_all(data)
        except OSError:
            self._cut_partial_write()
            raise
        self._file_end += size
        with self._cv:
            self._written += size
            if announced:
                self._announced -= 1
                if self._leader_waiting:
                    self._leader_cv.notify()
            return self._written

    def _write_all(self, data: bytes | Sequence[bytes]) -> int:
        if isinstance(data, bytes):
            size = len(data)
            view = memoryview(data)
        else:
            size = sum(map(len, data))
            written = os.writev(self._fd, data) if len(data) <= _MAX_PIECES else 0
            view = memoryview(b"".join(data))[written:] if written < size else memoryview(b"")
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        return size

    def _cut_partial_write(self) -> None:
        """Cut off what a failed write left (a disk-full write stops part way), so the file
        ends in whole frames and a later append does not follow a broken one (which
        recovery would rightly take for damage). If even that fails, the journal stops."""
        try:
            os.ftruncate(self._fd, self._file_end)
        except OSError as exc:
            self._failed = exc

    def undo_last_write(self) -> bool:
        """Cut the current file back to where the last ``write`` began (that write was
        not acknowledged: its caller holds the write lock and refuses it). False, and the
        journal takes no more writes, if the file cannot be cut."""
        try:
            os.ftruncate(self._fd, self._last_start)
        except OSError as exc:
            self._failed = exc
            return False
        self._file_end = self._last_start
        return True

    def commit(self, position: int) -> None:
        """Return once every byte up to ``position`` is durable (group commit)."""
        with self._cv:
            while self._durable < position:
                if self._failed is not None:
                    raise JournalError(f"the journal could not be made durable: {self._failed}")
                if self._syncing:
                    self._cv.wait()
                    continue
                self._syncing = True
                if self._announced > 0:  # let concurrent appends join this fsync
                    self._leader_waiting = True
                    deadline = time.monotonic() + GROUP_WAIT
                    while self._announced > 0:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._leader_cv.wait(left)
                    self._leader_waiting = False
                target, fd = self._written, self._fd
                self._cv.release()
                try:
                    started = time.perf_counter()
                    os.fdatasync(fd)
                    if self.on_sync is not None:
                        self.on_sync(time.perf_counter() - started)
                except OSError as exc:  # fsync failure is not retryable: stop writing
                    self._failed = exc
                finally:
                    self._cv.acquire()
                    self._syncing = False
                    if self._failed is None:
                        self._durable = max(self._durable, target)
                    self._cv.notify_all()

    def rotate(self) -> int:
        """Make the current file durable, close it and start the next one. Returns the
        number of the closed file. Caller holds the write lock."""
        with self._cv:
            while self._syncing:
                self._cv.wait()
            os.fsync(self._fd)
            self._durable = self._written
            closed, old = self.number, self._fd
            self._fd = self._open(closed + 1)  # (if it cannot be made, nothing changed)
            os.close(old)
            self._cv.notify_all()
            return closed

    def close(self) -> None:
        with self._cv:
            while self._syncing:
                self._cv.wait()
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                    self._durable = self._written
                finally:
                    os.close(self._fd)
                    self._fd = -1
