"""Opening a project's unit (or, for ``llmring ledger migrate``, a directory in the layout
before): its lock, and recovery from any crash. Journal files already sealed and segment
files of its own partitions that no manifest record names are leftovers of an
interrupted seal and are removed; the journal is replayed (a torn or unacknowledged
batch at its end is cut off) into the unsealed tail; the id index and the projects'
trees are brought level with the log.

A journal damaged inside (``ledger.storage.journal.scan_journal``) is never cut silently:
it is checked before anything is changed, a copy of the damaged file (and of every file
after it) is kept in ``journal/damaged/``, and opening stops with ``JournalDamageError``.
With ``accept_loss`` the journal is cut at the damage instead: the loss is appended to
``journal/losses.jsonl`` first (``llmring ledger verify`` reports it), then the damaged
file is truncated and the files after it are moved aside."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ledger.core.idempotency import Idempotency
from ledger.core.tail import Tail, TailChunk, TailPart
from ledger.errors import JournalDamageError, LedgerError, LedgerLockedError
from ledger.model.event import _check_metadata, canonical_json, leaf_hash_of, row_of, ts_to_us
from ledger.storage import journal as jr
from ledger.storage.durable import append_line, create_private, open_private, private_dir
from ledger.storage.layout import DataDir, ProjectDir
from ledger.storage.manifest import Manifest, ManifestState, Segment
from ledger.storage.receipt_entries import ReceiptEntry
from ledger.storage.segments import SegmentStore
from ledger.tlog.merkle import HASH_SIZE
from ledger.tlog.tiles import TreeStore


def take_lock(layout: DataDir, *, shared: bool = False) -> int:
    """Take the directory's lock (``LOCK``, holding this process's pid); its descriptor.
    ``LedgerLockedError`` if another process holds it. ``shared``: as each of several
    processes that split the projects between them does (``llmring serve --owns``),
    refused only while a process holds it for every project."""
    fd = open_private(layout.lock, os.O_RDWR)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if shared:
            raise LedgerLockedError(
                f"{layout.root} is in use by a process that writes every project (pid "
                f"{holder}); stop it to split the projects between servers (--owns)"
                ) from None
        what = f"project {layout.tenant!r} of {layout.root}" if isinstance(
            layout, ProjectDir) else str(layout.root)
        raise LedgerLockedError(
            f"{what} is in use by another process (pid {holder}); "
            "stop it, or talk to it with --server if it is `llmring serve`") from None
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


@dataclass(slots=True)
class Replayed:
    """What the journal adds to the sealed log: each project's size and receipt seqs, the
    chunks of the journal files (empty ones included) and the next journal file's number."""

    sizes: dict[str, int]
    receipt_seqs: dict[str, list[int]]
    chunks: list[TailChunk]
    next_journal: int


class Recovery:
    """Brings one opened directory level with its log; see the module docstring."""

    def __init__(self, layout: DataDir, store: SegmentStore, manifest: Manifest, *,
                 accept_loss: bool = False) -> None:
        """``accept_loss``: cut a damaged journal at the damage instead of refusing."""
        self.layout = layout
        self.store = store
        self.manifest = manifest
        self.accept_loss = accept_loss
        self.losses: list[dict[str, Any]] = []  # the cuts accepted by this opening

    def replay(self) -> Replayed:
        """Check the journal for damage, remove the leftovers of an interrupted seal and
        replay the journal."""
        state = self.manifest.state
        jdir = self.layout.journal
        private_dir(jdir)
        files = [(n, p) for n, p in jr.journal_files(jdir) if n > state.sealed_journal]
        scans = self._scan(files)
        # Journal files already sealed are leftovers of a crash after the manifest commit.
        for number, p in jr.journal_files(jdir):
            if number <= state.sealed_journal:
                p.unlink()
        # Segment files that no manifest record names are leftovers of an unfinished seal.
        tenants = {d["tenant"] for record in state.records for d in record.get("add", ())}
        for rel in self.store.stray_files(state, tenants, self.layout.segment_folders()):
            self.store.delete(rel)
        sizes: dict[str, int] = dict(state.tenant_rows())
        receipt_seqs = self._sealed_receipt_seqs(state)
        chunks = [self._replay_file(number, p, scan, sizes, receipt_seqs)
                  for (number, p), scan in zip(files, scans, strict=True)]
        last = files[-1][0] if files else state.sealed_journal
        return Replayed(sizes, receipt_seqs, chunks, last + 1)

    def _scan(self, files: list[tuple[int, Path]]) -> list[jr.JournalScan]:
        """Scan the journal files (each but the last was closed by rotation). Damage is
        refused, or with ``accept_loss`` cut: then only the scans of the files that remain
        are returned, the damaged one as cut."""
        last = len(files) - 1
        scans = [jr.scan_journal(p, closed=i < last) for i, (_, p) in enumerate(files)]
        at = next((i for i, scan in enumerate(scans) if scan.damage is not None), None)
        if at is None:
            return scans
        damage = scans[at].damage
        assert damage is not None
        kept = [self._keep_aside(number, p) for number, p in files[at:]
                if p == files[at][1] or p.stat().st_size]
        frames, events = scans[at].lost_by_cut()
        for later in scans[at + 1:]:
            held = later.held()
            frames, events = frames + held[0], events + held[1]
        root = self.layout.root
        error = JournalDamageError(str(files[at][1].relative_to(root)), damage.offset, frames,
                                   events, str(kept[0].relative_to(root)))
        if not self.accept_loss:
            raise error
        loss = {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                "journal": error.journal, "offset": damage.offset,
                "cut_at": scans[at].committed, "frames_lost": frames, "events_lost": events,
                "kept": [str(k.relative_to(root)) for k in kept]}
        append_line(self.layout.journal_losses,
                    orjson.dumps(loss, option=orjson.OPT_SORT_KEYS) + b"\n")
        self.losses.append(loss)
        # Later files first: a crash before the cut then leaves the damage to be found again.
        for _, p in files[at + 1:]:
            p.unlink()  # a copy is kept aside (an empty file held nothing)
        jr.fsync_dir(self.layout.journal)
        with open(files[at][1], "r+b") as fh:
            fh.truncate(scans[at].committed)
            os.fsync(fh.fileno())
        scans[at] = scans[at].cut()
        del files[at + 1:]
        return scans[:at + 1]

    def _keep_aside(self, number: int, path: Path) -> Path:
        """A durable copy of journal file ``number`` in ``journal/damaged/`` (made once per
        content)."""
        data = path.read_bytes()
        kept = self.layout.damaged_journal(number, hashlib.sha256(data).hexdigest())
        if not kept.exists():
            if not kept.parent.is_dir():
                private_dir(kept.parent)
                jr.fsync_dir(kept.parent.parent)
            create_private(kept, data)
        return kept

    def remove_empty(self, chunks: Sequence[TailChunk]) -> None:
        """Remove the journal files that held nothing (replayed chunks are sealed like any
        other; new appends go to a fresh file)."""
        for c in chunks:
            if not c:
                self.layout.journal_file(c.journal).unlink(missing_ok=True)

    def _replay_file(self, number: int, path: Path, scan: jr.JournalScan,
                     sizes: dict[str, int], receipt_seqs: dict[str, list[int]]) -> TailChunk:
        records = scan.records
        if scan.torn:  # a torn or unacknowledged batch at the end: cut it off
            with open(path, "r+b") as fh:
                fh.truncate(scan.committed)
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
                expected = sizes.get(tenant, 0)
                if rec.seq != expected:
                    raise LedgerError(
                        f"journal {path.name}: tenant {tenant!r} event {fields['event_id']!r} "
                        f"has seq {rec.seq}, expected {expected}; run `llmring ledger verify`")
                sizes[tenant] = expected + 1
                rows.append(row_from_canonical(fields, rec))
                tenants.append(tenant)
                digests.append(rec.digest or None)
            elif isinstance(rec, jr.PairRecord):
                chunk.pairs.append(rec.data)
            elif isinstance(rec, jr.ReceiptRecord):
                tenant = orjson.loads(rec.canonical)["tenant"]
                expected = sizes.get(tenant, 0)
                if rec.seq != expected:
                    raise LedgerError(
                        f"journal {path.name}: tenant {tenant!r} receipt entry has seq "
                        f"{rec.seq}, expected {expected}; run `llmring ledger verify`")
                sizes[tenant] = expected + 1
                receipt_seqs.setdefault(tenant, []).append(rec.seq)
                receipts.append((rec, tenant, []))
            elif isinstance(rec, jr.MembershipRecord):
                if not receipts or receipts[-1][0].seq != rec.receipt_seq:
                    raise LedgerError(f"journal {path.name}: membership of seq "
                                      f"{rec.receipt_seq} does not follow its receipt entry")
                receipts[-1][2].append(rec.ranges)
        for rec, tenant, parts in receipts:
            chunk.receipts.append(ReceiptEntry.of(tenant, rec.seq, rec.recorded_at_us,
                                                  rec.canonical, b"".join(parts)))
        start = 0
        for end in range(1, len(rows) + 1):  # one part per run of one tenant's events
            if end == len(rows) or tenants[end] != tenants[start]:
                chunk.add(TailPart.replayed(tenants[start], digests[start:end],
                                            rows[start:end]))
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

    def catch_up_index(self, ids: Idempotency, chunks: Sequence[TailChunk]) -> None:
        """Make the index cover the sealed segments (after a lost or stale index file),
        then the replayed journal. After a cut at journal damage it is rebuilt: it may
        name events that were cut (their seqs go to new events)."""
        state = self.manifest.state
        index = ids.index
        head = index.head()
        if head != state.head or self.losses:
            after = None if head is None or self.losses else state.records_after(head)
            if after is None:  # rebuilt from the whole live set
                index.clear()
                after = [{"op": "seal", "add": [s.as_dict() for s in state.live.values()]}]
            index.begin()
            for seg in segments_to_index(after):
                if seg.path in state.live:
                    ids.index_segment(seg)
            index.set_head(state.head)
            index.commit(durable=True)
        index.begin()
        for chunk in chunks:
            for part in chunk.parts:
                ids.index_part(part, replace=True)
            for pair in chunk.pairs:
                ids.index_pair(pair)
        index.commit()

    @staticmethod
    def _cut_where_replay_differs(tail: Tail, tenant: str, tree: TreeStore) -> None:
        for chunk in tail.frozen:
            for part in chunk.parts:
                if part.tenant != tenant or part.replayed_leaves is None:
                    continue
                bad = _first_difference(tree, *part.replayed_leaves)
                if bad is not None:
                    tree.truncate(bad)
                    return

    def fill_tree(self, tail: Tail, tenant: str, tree: TreeStore, size: int) -> None:
        """Append to ``tree`` the leaf hashes of the tenant's entries it lacks, from the
        sealed segments and the tail's chunks waiting for a seal. The tree is first
        checked against the journal's hashes of the replayed events it already has (its
        files are written without a sync, and the tail reads its leaf hashes there) and
        cut at the first that differs."""
        self._cut_where_replay_differs(tail, tenant, tree)
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
        for chunk in tail.frozen:
            for part in chunk.parts:
                if part.tenant != tenant or part.replayed_leaves is None:
                    continue
                seqs, packed = part.replayed_leaves
                for k, s in enumerate(seqs.tolist()):
                    if s >= have:
                        hashes[s] = packed[k * HASH_SIZE:(k + 1) * HASH_SIZE]
            for entry in chunk.receipts:
                if entry.tenant == tenant and entry.seq >= have:
                    hashes[entry.seq] = entry.leaf_hash
        missing = [s for s in range(have, size) if s not in hashes]
        if missing:
            raise LedgerError(f"tenant {tenant!r}: events {missing[:5]} are missing from the "
                              "log; run `llmring ledger verify`")
        tree.append([hashes[s] for s in range(have, size)])


def _first_difference(tree: TreeStore, seqs: np.ndarray, packed: bytes) -> int | None:
    """The first of ``seqs`` (ascending) whose hash in ``tree`` is not its hash in
    ``packed`` (among those the tree has), or None."""
    have = seqs[seqs < tree.size]
    if not len(have):
        return None
    first = int(have[0])
    stored = np.frombuffer(tree.leaf_hash_buffer(first, int(have[-1]) + 1),
                           dtype=np.uint8).reshape(-1, HASH_SIZE)[have - first]
    given = np.frombuffer(packed, dtype=np.uint8).reshape(-1, HASH_SIZE)[:len(have)]
    differs = np.flatnonzero((stored != given).any(axis=1))
    return int(have[differs[0]]) if len(differs) else None


def segments_to_index(records: Sequence[Mapping[str, Any]]) -> list[Segment]:
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


def row_from_canonical(fields: dict[str, Any], rec: jr.EventRecord) -> tuple[Any, ...]:
    """The tail row (``ROW_FIELDS`` order) of a journaled event."""
    meta = fields["metadata"]
    metadata_json = canonical_json(meta, reference=bool(meta) and _check_metadata(meta)).decode()
    return row_of(fields, seq=rec.seq, ts_us=ts_to_us(datetime.fromisoformat(fields["ts"])),
                  recorded_at_us=rec.recorded_at_us, metadata_json=metadata_json,
                  leaf_hash=leaf_hash_of(rec.canonical))


__all__ = ["Recovery", "Replayed", "release_lock", "row_from_canonical", "segments_to_index",
           "take_lock"]
