"""The audit: re-derive every hash of a data directory from its raw files.

``verify_directory`` reads (never takes the writer's lock; writes only
``verify-state.json``, what a passing audit checked: ``ledger.core.audit_since``) and
checks, the segments in ``jobs`` processes:

1. the manifest: every line parses, is canonical, numbered in order, and carries the
   SHA-256 of the line before it (the hash chain); with object storage, its records'
   objects (``ledger.storage.manifest_objects``) are numbered without a gap and equal
   its lines (``manifest-objects``);
2. every live segment: the file exists, its SHA-256 and row count match the manifest,
   and its seqs lie in the manifest's range;
3. every event, sealed or still in the journal: its canonical bytes are recomputed from
   its fields and hashed, and the result must equal the stored leaf hash;
4. every tenant's log: seqs are exactly 0..n-1 (no gap, no repeat) and event ids are
   unique;
5. every tenant's tree files: the stored leaf hashes equal the events' leaf hashes in
   seq order, and every stored interior tile hash is recomputed from the level below;
6. every receipt entry (docs/formats.md): its stored receipt is canonical RFC 8785 JSON that
   hashes to its leaf hash, its seq takes part in the gap-free log with the events, it
   has its membership (and no membership lacks its receipt), its certified events are
   events older than it, their leaf hashes give its ``merkle_root`` and their number its
   ``certified_count``, and its signature verifies with the directory's public keys;
7. every signed checkpoint in ``checkpoints/``: its signature verifies with the
   directory's keys, and the log's root at its size is its root (a checkpoint beyond the
   log's size means entries were removed; another root, that history was rewritten);
8. the journal: no file is damaged inside (a torn tail is only a note), no cut at damage
   was accepted (``journal/losses.jsonl``), and every intact event of a damaged journal
   kept aside (``journal/damaged/``) is in the log: else the log is shorter than what its
   journal acknowledged.
9. the Iceberg table (``ledger.storage.iceberg``), if the directory has one: its
   current snapshot lists exactly the live event segments of the manifest records it
   says it reflects (a table behind the manifest, publishing still to catch up, is a
   note; any other difference is a problem of kind ``iceberg``).

Each finding names what is wrong and where.

Memory is bounded whatever the size of the log (``ledger.core.audit_log``): each
segment's entries are spilled to a temporary folder as they arrive, and each project's
log is then read back in seq order block by block, its roots, frontier and tree levels
hashed as a stream (``ledger.tlog.stream``).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ledger.core.audit_log import Gathered, GatheredLog, OrderedLog
from ledger.errors import ConfigError, StorageUriError
from ledger.model.batch import stored_leaf_hashes
from ledger.model.dimensions import column_name
from ledger.model.event import canonical_bytes_of_stored, canonical_json, leaf_hash_of
from ledger.model.schema import EVENT_SCHEMA, ROW_FIELDS, STORED_FIELDS
from ledger.storage import journal as jr
from ledger.storage.dimensions import derived_columns, with_dimensions
from ledger.storage.iceberg import IDENTIFIER, IcebergTable, metadata_location, read_published
from ledger.storage.layout import JOURNAL_SUFFIX, DataDir, ProjectDir
from ledger.storage.manifest import ManifestState, check_chain, read_lines
from ledger.storage.manifest_objects import DIGITS
from ledger.storage.objectstore import open_storage
from ledger.storage.receipt_entries import seqs_of, unpack_ranges
from ledger.storage.segments import SegmentStore
from ledger.tlog.checkpoint import NoteError, SignedCheckpoint, Verifier, verify_checkpoint
from ledger.tlog.merkle import EMPTY_ROOT, HASH_SIZE, fold_right, tree_levels_from_buffer
from ledger.tlog.signing import KeyRingError, read_keys
from ledger.tlog.stream import BLOCK_LEAVES, LeafStream
from ledger.tlog.tiles import TILE_HEIGHT, level_file

Progress = Callable[[int, int], None]
PARALLEL_MIN_ROWS = 200_000  # sealed rows from which a verify uses every core by default


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    where: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "message": self.message}

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.message}"


@dataclass
class AuditReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments_checked: int = 0
    events_checked: int = 0
    receipts_checked: int = 0
    checkpoints_checked: int = 0
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # each project's log as perfect subtrees (height, hash), left to right: the state an
    # incremental verify (``ledger.core.audit_since``) extends
    frontiers: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict, repr=False)
    # per checkpoints file: how far it was read (``ledger.core.audit_since`` resumes there)
    checkpoint_files: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, where: str, message: str) -> None:
        self.problems.append(Problem(kind, where, message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [p.as_dict() for p in self.problems],
            "notes": self.notes,
            "segments_checked": self.segments_checked,
            "events_checked": self.events_checked,
            "receipts_checked": self.receipts_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "tenants": self.tenants,
        }


@dataclass
class _TenantLog:
    """A project's entries as the checks of segments and journals find them (the full
    audit moves seqs, hashes and ids to a ``Gathered`` spill after each one)."""

    seqs: list[pa.Array] = field(default_factory=list)
    hashes: list[pa.Array] = field(default_factory=list)
    ids: list[pa.Array] = field(default_factory=list)
    receipts: list[tuple[int, bytes, str]] = field(default_factory=list)  # seq, JSON, where
    members: dict[int, list[np.ndarray]] = field(default_factory=dict)  # receipt seq → runs


def verify_directory(path: str | os.PathLike[str], *, progress: Progress | None = None,
                     jobs: int | None = None, since_checkpoint: bool = False,
                     old_layout: bool | None = None,
                     storage: str | None = None) -> AuditReport:
    """The full audit, reading the segments where they live (the directory's object
    store, ``storage`` being the URI it must have if given). ``jobs`` processes check the
    segments (hashes, leaf hashes
    recomputed); None: every core when the directory holds ``PARALLEL_MIN_ROWS`` sealed
    rows or more, else one. A passing audit records what it checked in
    ``verify-state.json`` (one file for every project); ``since_checkpoint`` checks only
    what is new since then (``ledger.core.audit_since``).

    ``old_layout``: check the directory as in the layout before projects had their
    own units (True) or as per-project units (False); by default as it is.
    ``llmring ledger migrate`` checks both sides of its conversion so (the old layout's
    check records nothing and checks no Iceberg table)."""
    layout = DataDir(path)
    root = layout.root
    report = AuditReport()
    if old_layout is None:
        old_layout = layout.holds_legacy()
    # Each project's unit (``projects/<t>/``), or the one of a directory in the layout
    # before projects had their own.
    units: list[DataDir] = ([layout.legacy()] if old_layout else
                            [layout.project(t) for t in layout.project_names()])
    if not any(u.manifest.exists() or u.journal.exists() for u in units):
        report.add("directory", str(root), "not a ledger data directory (no manifest.jsonl "
                   "and no journal/)")
        return report
    if since_checkpoint and not old_layout:
        from ledger.core.audit_since import verify_since

        return verify_since(layout, jobs=jobs, progress=progress)
    trees = units[0] if old_layout else layout
    logs: dict[str, _TenantLog] = {}
    try:
        objects = open_storage(layout, storage, record=False)
    except StorageUriError:
        raise
    except ConfigError as exc:  # reported with the checkpoints, whose origin it holds
        report.notes.append(f"segments read from the directory itself: {exc}")
        objects = None
    store = SegmentStore(layout, objects)
    gathered = Gathered()  # the entries found, spilled to a temporary folder
    checked: dict[str, tuple[list[bytes], ManifestState]] = {}  # per project
    states: list[ManifestState] = []
    segments = []
    for unit in units:
        lines, state = _check_manifest(unit, report)
        states.append(state)
        if isinstance(unit, ProjectDir):
            checked[unit.tenant] = (lines, state)
        for seg in sorted(state.live.values(), key=lambda s: (s.tenant, s.kind, s.seq_min)):
            if isinstance(unit, ProjectDir) and seg.tenant != unit.tenant:
                report.add("manifest", _rel(unit.manifest, root),
                           f"names {seg.path}, a file of project {seg.tenant!r}, not of "
                           f"{unit.tenant!r}")
                continue
            segments.append(seg)
    if objects is not None and not old_layout:
        for tenant, (lines, _) in sorted(checked.items()):
            _check_manifest_objects(store, tenant, lines, report)
    def spill(done: int, total: int) -> None:
        # check_segments reports progress once each segment's entries are in ``logs``
        gathered.take(logs)
        if progress is not None:
            progress(done, total)

    check_segments(layout, segments, report, logs, jobs=jobs, progress=spill, store=store)
    for unit, state in zip(units, states, strict=True):
        files = [p for number, p in jr.journal_files(unit.journal)
                 if number > state.sealed_journal]
        for i, jpath in enumerate(files):
            _check_journal(jpath, i < len(files) - 1, report, logs)
            gathered.take(logs)
    for unit in units:
        _check_losses(unit, report)
        _check_kept_journals(unit, report, gathered)

    if not old_layout:
        _check_iceberg(layout, store, {t: s.records for t, (_, s) in checked.items()},
                       report)

    checkpoints = _load_checkpoints(layout, report)
    for tenant, log in sorted(logs.items()):
        _check_log(trees, tenant, log, gathered.log(tenant), report,
                   checkpoints.pop(tenant, []))
    for tenant, signed in sorted(checkpoints.items()):
        if signed:
            top = max(signed, key=lambda c: c.checkpoint.size)
            report.add("checkpoint", f"project {tenant}",
                       f"a checkpoint of its log at size {top.checkpoint.size} was signed, "
                       "but the directory holds no entry of that log (it was deleted)")
    gathered.close()
    if report.ok and not old_layout:
        from ledger.core.audit_since import record_verified

        record_verified(layout, checked, report)
    return report


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def _check_manifest_objects(store: SegmentStore, tenant: str, lines: list[bytes],
                            report: AuditReport) -> None:
    """A project's manifest records on object storage
    (``ledger.storage.manifest_objects``) against its local manifest: one object per
    record, numbered without a gap, each the same bytes as the local line. Records only
    one side holds yet are a note (a crash between the object and the line, or records
    from before the directory had objects): the writer levels them on its next open."""
    from pyarrow import fs as pafs

    folder = store.abspath(f"projects/{tenant}/manifest")
    where = f"s3://{folder}"
    infos = store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    expected = [f"{n:0{DIGITS}d}.json" for n in range(len(names))]
    if names != expected:
        report.add("manifest-objects", where, "the record objects are not numbered 0.."
                   f"{len(names) - 1} without a gap: {sorted(set(names) - set(expected))[:3]}")
        return
    for n, name in enumerate(names[:len(lines)]):
        with store.fs.open_input_stream(f"{folder}/{name}") as f:
            theirs = f.read()
        if theirs != lines[n]:
            report.add("manifest-objects", f"{where}/{name}",
                       f"differs from record {n} of the project's local manifest")
            return
    if len(names) != len(lines):
        more, fewer = ("bucket", "local manifest") if len(names) > len(lines) else \
            ("local manifest", "bucket")
        report.notes.append(f"project {tenant}: the {more} holds {abs(len(names) - len(lines))} "
                            f"manifest records the {fewer} does not yet; the writer levels "
                            "them on its next open")


def _check_manifest(unit: DataDir, report: AuditReport
                    ) -> tuple[list[bytes], ManifestState]:
    """A unit's manifest lines and state, its chain checked (a missing manifest: empty)."""
    where = _rel(unit.manifest, unit.root)
    lines, torn = read_lines(unit.manifest)
    if torn:
        report.notes.append(f"{where} ends in a torn line (a crash mid-append); the "
                            "writer cuts it off on its next open")
    state, chain = check_chain(lines)
    for c in chain:
        report.add("manifest", f"{where} line {c.line}", c.message)
    return lines, state


def _check_iceberg(layout: DataDir, store: SegmentStore,
                   records: dict[str, list[dict[str, Any]]], report: AuditReport) -> None:
    """The Iceberg table against the projects' manifests: when it reflects every
    project's records (level), its current file set equals their live event segments
    exactly; when it is behind, a note (the next seal or open publishes the rest)."""
    if metadata_location(layout) is None:
        return
    where = f"Iceberg table {IDENTIFIER}"
    try:
        published = read_published(layout)
    except Exception as exc:  # any damage of the table's files or catalog
        report.add("iceberg", where, f"cannot be read: {exc}")
        return
    if published is None:
        return
    if any(n > len(records.get(t, ())) for t, n in published.records.items()):
        # a live writer committed since: read the manifests again
        records = {t: check_chain(read_lines(layout.project(t).manifest)[0])[0].records
                   for t in layout.project_names()}
    for tenant, n in sorted(published.records.items()):
        have = len(records.get(tenant, ()))
        if not 0 <= n <= have:
            report.add("iceberg", where, f"says it reflects {n} manifest records of project "
                       f"{tenant!r}, but its manifest has {have}")
            return
    behind = {t: (published.records.get(t, 0), len(r)) for t, r in records.items()
              if published.records.get(t, 0) < len(r)}
    if behind:
        report.notes.append(f"{where} is behind the manifests of "
                            + ", ".join(f"{t} ({n} of {have} records)"
                                        for t, (n, have) in sorted(behind.items()))
                            + ": the next seal or open publishes the rest")
        return
    table = IcebergTable(layout, store)
    want = set()
    for recs in records.values():
        state = ManifestState()
        for record in recs:
            state.apply(record)
        want.update(table.location(s.path) for s in state.segments())
    for loc in sorted(published.files - want):
        report.add("iceberg", where, f"lists {loc}, which is not a live event segment of "
                   "the manifests")
    for loc in sorted(want - published.files):
        report.add("iceberg", where, f"does not list the live event segment {loc}")


def check_segments(layout: DataDir, segments: list[Any], report: AuditReport,
                   logs: dict[str, _TenantLog], *, jobs: int | None = None,
                   progress: Progress | None = None,
                   store: SegmentStore | None = None) -> None:
    """Check each segment (``_check_segment``, read through ``store``: by default the
    directory's own) and gather its entries into ``logs``. With more than one job, this
    process and ``jobs`` - 1 worker processes (each opening the directory's store) take
    the segments one at a time from a shared counter, so this process works while the
    workers start; the findings are merged in the order of ``segments`` (the report is
    the same whatever the number of processes)."""
    if jobs is None:
        rows = sum(s.rows for s in segments)
        jobs = (os.cpu_count() or 1) if rows >= PARALLEL_MIN_ROWS else 1
    jobs = max(1, min(jobs, len(segments)))
    total = len(segments)
    store = store or SegmentStore(layout, open_storage(layout, record=False))
    if jobs == 1:
        for done, seg in enumerate(segments, 1):
            _check_segment(store, seg, report, logs)
            if progress is not None:
                progress(done, total)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded process
    claimed = context.Value("q", 0)  # the next segment to take
    parts: dict[int, tuple[AuditReport, dict[str, _TenantLog]]] = {}
    merged = 0

    def merge_ready() -> None:
        nonlocal merged
        while merged in parts:
            _merge(report, logs, *parts.pop(merged))
            merged += 1
            if progress is not None:
                progress(merged, total)

    def collect(pending: list[Future[Any]], *, wait_all: bool) -> list[Future[Any]]:
        """Take the workers' finished segments into ``parts`` and merge what is in order
        (as they finish, so no segment's entries wait in memory for the end)."""
        if wait_all:
            wait(pending)
        left = []
        for future in pending:
            if not future.done():
                left.append(future)
                continue
            got = None if future.cancelled() else future.result()
            if got is not None:
                parts[got[0]] = got[1:]
        merge_ready()
        return left

    with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=context,
                             initializer=_share_segments,
                             initargs=(str(layout.root), segments, claimed)) as pool:
        pending = [pool.submit(_check_claimed) for _ in range(total)]
        while (i := _claim(claimed)) < total:
            part, found = AuditReport(), {}
            _check_segment(store, segments[i], part, found)
            parts[i] = (part, found)
            pending = collect(pending, wait_all=False)
        for future in pending:
            future.cancel()  # those no worker started: nothing is left to claim
        collect(pending, wait_all=True)


_worker: dict[str, Any] = {}  # a worker process's directory, segments and shared counter


def _share_segments(root: str, segments: list[Any], claimed: Any) -> None:
    """A worker process's start: what ``_check_claimed`` takes its segments from."""
    layout = DataDir(root)
    _worker.update(store=SegmentStore(layout, open_storage(layout, record=False)),
                   segments=segments, claimed=claimed)


def _claim(claimed: Any) -> int:
    with claimed.get_lock():
        i = claimed.value
        claimed.value = i + 1
    return int(i)


def _check_claimed() -> tuple[int, AuditReport, dict[str, _TenantLog]] | None:
    """In a worker process: check the next segment no process took (None: none left)."""
    segments = _worker["segments"]
    i = _claim(_worker["claimed"])
    if i >= len(segments):
        return None
    report = AuditReport()
    logs: dict[str, _TenantLog] = {}
    _check_segment(_worker["store"], segments[i], report, logs)
    return i, report, logs


def _merge(report: AuditReport, logs: dict[str, _TenantLog], part: AuditReport,
           found: dict[str, _TenantLog]) -> None:
    report.problems.extend(part.problems)
    report.notes.extend(part.notes)
    report.segments_checked += part.segments_checked
    report.events_checked += part.events_checked
    report.receipts_checked += part.receipts_checked
    for tenant, got in found.items():
        log = logs.setdefault(tenant, _TenantLog())
        log.seqs += got.seqs
        log.hashes += got.hashes
        log.ids += got.ids
        log.receipts += got.receipts
        for rseq, runs in got.members.items():
            log.members.setdefault(rseq, []).extend(runs)


def _load_checkpoints(layout: DataDir, report: AuditReport,
                      since: dict[str, dict[str, Any]] | None = None
                      ) -> dict[str, list[SignedCheckpoint]]:
    """Every stored checkpoint whose signature verifies with the directory's keys, per
    project; a damaged or badly signed one is a problem. ``since`` (per file, where a
    passing audit stopped reading it: ``report.checkpoint_files``): only the lines after
    that, when its last line read is still there as it was (else the whole file)."""
    cdir = layout.checkpoints
    files = sorted(cdir.glob("*.jsonl")) if cdir.is_dir() else []
    if not files:
        return {}
    try:
        origin = orjson.loads(layout.config.read_bytes())["origin"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        report.add("checkpoint", "config.json", "missing or damaged, so the checkpoints' "
                   "origin cannot be checked")
        return {}
    try:
        verifiers = [Verifier.from_info(i) for i in read_keys(layout.keys)]
    except KeyRingError as exc:
        report.add("checkpoint", "keys/keys.json", str(exc))
        return {}
    out: dict[str, list[SignedCheckpoint]] = {}
    for path in files:
        where = str(path.relative_to(layout.root))
        first, offset, data = _unread_lines(path, (since or {}).get(path.name))
        last: dict[str, Any] | None = None
        for number, line in enumerate(data.split(b"\n"), first):
            at, offset = offset, offset + len(line) + 1
            if not line:
                continue
            last = {"count": number, "last_start": at,
                    "head": hashlib.sha256(line).hexdigest()}
            try:
                signed = SignedCheckpoint.from_json(orjson.loads(line))
                cp = verify_checkpoint(signed.note, verifiers)
            except (orjson.JSONDecodeError, NoteError, ValueError, TypeError) as exc:
                report.add("checkpoint", f"{where} line {number}",
                           f"not a validly signed checkpoint: {exc}")
                continue
            if not cp.origin.startswith(origin + "/"):
                report.add("checkpoint", f"{where} line {number}",
                           f"origin {cp.origin!r} is not a log of this ledger ({origin!r})")
                continue
            out.setdefault(cp.origin[len(origin) + 1:], []).append(signed)
            report.checkpoints_checked += 1
        if last is not None:
            report.checkpoint_files[path.name] = last
        elif since and path.name in since:
            report.checkpoint_files[path.name] = since[path.name]
    return out


def _unread_lines(path: Path, mark: dict[str, Any] | None) -> tuple[int, int, bytes]:
    """The lines of a checkpoints file after ``mark`` (its last line read: number, byte
    offset, SHA-256), with the number and offset of the first; the whole file if the
    line at ``mark`` is not that line any more."""
    # a bad mark (unreadable, or not the line it names): the whole file is read
    with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
        if mark is not None:
            with open(path, "rb") as fh:
                fh.seek(int(mark["last_start"]))
                data = fh.read()
            line, newline, rest = data.partition(b"\n")
            if newline and hashlib.sha256(line).hexdigest() == mark["head"]:
                return (int(mark["count"]) + 1, int(mark["last_start"]) + len(line) + 1,
                        rest)
    return 1, 0, path.read_bytes()


def check_checkpoints(tenant: str, signed: list[SignedCheckpoint], roots: dict[int, bytes],
                      size: int, report: AuditReport) -> None:
    """Each signed checkpoint of a log of ``size`` entries against the log's ``roots`` by
    size (a size not in ``roots`` is not checked: an incremental verify knows only the
    roots since its last run)."""
    for s in signed:
        cp = s.checkpoint
        where = f"project {tenant} checkpoint at size {cp.size}"
        if cp.size > size:
            report.add("checkpoint", where, f"the log has only {size} entries: entries it "
                       "certified were removed (the log was truncated or replaced)")
        elif cp.size in roots and roots[cp.size] != cp.root:
            report.add("checkpoint", where,
                       f"signed root {cp.root.hex()}, but the log's root at that size is "
                       f"{roots[cp.size].hex()}: history was rewritten (entries changed, "
                       "reordered or replaced)")


def _check_segment(store: SegmentStore, seg: Any, report: AuditReport,
                   logs: dict[str, _TenantLog]) -> None:
    where = seg.path
    if not store.exists(seg.path):
        report.add("segment-missing", where, "named by the manifest but the file is missing")
        return
    digest = store.sha256(seg.path)
    if digest != seg.sha256:
        report.add("segment-hash", where,
                   f"SHA-256 is {digest}, the manifest says {seg.sha256}: the file was altered")
    try:
        table = store.read(seg)
    except Exception as exc:  # a corrupt file: pyarrow raises several error types
        report.add("segment-unreadable", where, f"cannot be read as Parquet: {exc}")
        return
    report.segments_checked += 1
    if table.num_rows != seg.rows:
        report.add("segment-rows", where,
                   f"holds {table.num_rows} rows, the manifest says {seg.rows}")
    if seg.kind == "receipts":
        _check_receipt_rows(table, seg, report, logs)
        return
    if seg.kind == "membership":
        log = logs.setdefault(seg.tenant, _TenantLog())
        d = table.to_pydict()
        for rseq, lo, hi in zip(d["receipt_seq"], d["seq_lo"], d["seq_hi"], strict=True):
            log.members.setdefault(rseq, []).append(np.array([[lo, hi]], dtype=np.int64))
        return
    if seg.kind != "events":
        return
    missing = [c for c in ROW_FIELDS if c not in table.column_names]
    if missing:
        report.add("segment-schema", where, f"lacks columns {', '.join(missing)}")
        return
    seqs = table.column("seq")
    if table.num_rows and (pc.min(seqs).as_py() < seg.seq_min
                           or pc.max(seqs).as_py() > seg.seq_max):
        report.add("segment-seq", where, "holds seqs outside the manifest's range "
                   f"{seg.seq_min}..{seg.seq_max}")
    _check_leaves(table, seg.tenant, where, report)
    _check_dimensions(table, where, report)
    log = logs.setdefault(seg.tenant, _TenantLog())
    log.seqs.append(seqs.combine_chunks())
    log.hashes.append(table.column("leaf_hash").combine_chunks())
    log.ids.append(table.column("event_id").combine_chunks())


def _check_receipt_rows(table: pa.Table, seg: Any, report: AuditReport,
                        logs: dict[str, _TenantLog]) -> None:
    where = seg.path
    d = table.to_pydict()
    log = logs.setdefault(seg.tenant, _TenantLog())
    for seq, text, leaf in zip(d["seq"], d["receipt"], d["leaf_hash"], strict=True):
        _check_receipt_entry(seg.tenant, seq, text.encode(), leaf, f"{where} seq {seq}",
                             report, log)
    log.seqs.append(pa.array(d["seq"], pa.int64()))
    log.hashes.append(table.column("leaf_hash").combine_chunks())
    if d["seq"] and (min(d["seq"]) < seg.seq_min or max(d["seq"]) > seg.seq_max):
        report.add("segment-seq", where, "holds seqs outside the manifest's range "
                   f"{seg.seq_min}..{seg.seq_max}")


def _check_receipt_entry(tenant: str, seq: int, canonical: bytes, leaf: bytes | None,
                         where: str, report: AuditReport, log: _TenantLog) -> None:
    if leaf is not None and leaf_hash_of(canonical) != leaf:
        report.add("leaf-hash", where, "the receipt entry does not hash to its stored leaf "
                   "hash: the receipt was altered")
    try:
        receipt = orjson.loads(canonical)
        if canonical_json(receipt, reference=True) != canonical:
            report.add("receipt", where, "the stored receipt is not canonical RFC 8785 JSON")
        if receipt.get("tenant") != tenant:
            report.add("receipt", where, f"the receipt names project {receipt.get('tenant')!r}")
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        report.add("receipt", where, f"the stored receipt is not valid JSON: {exc}")
        return
    log.receipts.append((seq, canonical, where))
    report.receipts_checked += 1


def _check_dimensions(table: pa.Table, where: str, report: AuditReport) -> None:
    """Each derived dimension column (``ledger.storage.dimensions``) must hold exactly
    the values of its key in the segment's ``metadata``: a report by it must not differ
    from one that reads the JSON."""
    keys = derived_columns(table)
    if not keys:
        return
    expected = with_dimensions(table.select(EVENT_SCHEMA.names), keys)
    for key in keys:
        name = column_name(key)
        if not table.column(name).cast(pa.string()).equals(expected.column(name)):
            report.add("segment-dimension", where,
                       f"column {name!r} does not hold the values of metadata key {key!r}")


def _check_leaves(table: pa.Table, tenant: str, where: str, report: AuditReport) -> None:
    """Recompute every event's leaf hash from its stored fields: all rows in bulk
    (``stored_leaf_hashes``), then the rows whose hash differs (all of them if the bulk
    path cannot read the columns) one by one, which says what is wrong with each."""
    try:
        leaves = stored_leaf_hashes(table, tenant)
    except (TypeError, ValueError, OverflowError):
        rows = None
    else:
        rows = _differing(leaves, table.column("leaf_hash"))
    if rows is None or len(rows):
        _check_leaves_one_by_one(table if rows is None else table.take(rows), tenant, where,
                                 report)
    report.events_checked += table.num_rows


def _differing(leaves: list[bytes], stored: pa.ChunkedArray) -> np.ndarray:
    """The rows whose stored leaf hash is not the recomputed one."""
    column = stored.combine_chunks()
    if column.type == pa.binary(HASH_SIZE) and not column.null_count:
        have = np.frombuffer(column.buffers()[1], np.uint8)[
            column.offset * HASH_SIZE:(column.offset + len(column)) * HASH_SIZE]
        want = np.frombuffer(b"".join(leaves), np.uint8)
        return np.flatnonzero((have != want).reshape(-1, HASH_SIZE).any(axis=1))
    return np.array([i for i, (a, b) in enumerate(zip(leaves, column.to_pylist(),
                                                      strict=True)) if a != b], np.int64)


def _check_leaves_one_by_one(table: pa.Table, tenant: str, where: str,
                             report: AuditReport) -> None:
    """Each row's canonical bytes and leaf hash (``ts`` is formatted by Arrow and the
    stored canonical metadata text is spliced in); a problem per row that fails."""
    ts = table.column("ts")
    if not pa.types.is_timestamp(ts.type):
        ts = ts.cast(pa.timestamp("us", tz="UTC"))
    ts_text = pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    metadata = table.column("metadata").to_pylist()
    cols = [table.column(name).to_pylist() for name in STORED_FIELDS]
    seqs = table.column("seq").to_pylist()
    ids = table.column("event_id").to_pylist()
    stored = table.column("leaf_hash").to_pylist()
    bad = 0
    for i, values in enumerate(zip(*cols, strict=True)):
        try:
            canonical = canonical_bytes_of_stored(dict(zip(STORED_FIELDS, values, strict=True)),
                                                  tenant, ts_text[i], metadata[i])
        except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
            report.add("event", f"{where} seq {seqs[i]}", f"cannot be canonicalized: {exc}")
            continue
        if leaf_hash_of(canonical) != stored[i]:
            bad += 1
            if bad <= 20:
                report.add("leaf-hash", f"{where} seq {seqs[i]} ({ids[i]})",
                           "the event's fields do not hash to its stored leaf hash: the event "
                           "was altered")
    if bad > 20:
        report.add("leaf-hash", where, f"{bad - 20} more events do not match their leaf hash")


def _check_journal(path: Path, closed: bool, report: AuditReport,
                   logs: dict[str, _TenantLog]) -> None:
    scan = jr.scan_journal(path, closed=closed)
    records = scan.records
    if scan.damage is not None:
        report.add("journal-damaged", f"journal/{path.name} byte {scan.damage.offset}",
                   f"the journal is damaged inside, with {scan.damage.frames_beyond} intact "
                   f"frames ({scan.damage.events_beyond} events) after the damage: the writer "
                   "refuses to open until it is restored or the loss accepted (--accept-loss)")
    elif scan.torn:
        report.notes.append(f"journal/{path.name}: {scan.length - scan.committed} bytes of an "
                            "unacknowledged or torn batch at the end (cut off on next open)")
    per: dict[str, tuple[list[int], list[bytes], list[str]]] = {}
    receipt_tenant: dict[int, str] = {}
    for rec in records:
        if isinstance(rec, jr.ReceiptRecord):
            try:
                tenant = orjson.loads(rec.canonical)["tenant"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                report.add("journal", f"journal/{path.name} seq {rec.seq}",
                           "record is not a canonical receipt")
                continue
            log = logs.setdefault(tenant, _TenantLog())
            receipt_tenant[rec.seq] = tenant
            _check_receipt_entry(tenant, rec.seq, rec.canonical, None,
                                 f"journal/{path.name} seq {rec.seq}", report, log)
            seqs, hashes, _ = per.setdefault(tenant, ([], [], []))
            seqs.append(rec.seq)
            hashes.append(leaf_hash_of(rec.canonical))
            continue
        if isinstance(rec, jr.MembershipRecord):
            tenant = receipt_tenant.get(rec.receipt_seq, "")
            log = logs.setdefault(tenant, _TenantLog())
            log.members.setdefault(rec.receipt_seq, []).append(unpack_ranges(rec.ranges))
            continue
        if not isinstance(rec, jr.EventRecord):
            continue
        named = _tenant_and_event_id(rec)
        if named is None:
            report.add("journal", f"journal/{path.name} seq {rec.seq}",
                       "record is not a canonical event")
            continue
        tenant, event_id = named
        seqs, hashes, ids = per.setdefault(tenant, ([], [], []))
        seqs.append(rec.seq)
        hashes.append(leaf_hash_of(rec.canonical))
        ids.append(event_id)
        report.events_checked += 1
    for tenant, (seqs, hashes, ids) in per.items():
        log = logs.setdefault(tenant, _TenantLog())
        log.seqs.append(pa.array(seqs, pa.int64()))
        log.hashes.append(pa.array(hashes, pa.binary(HASH_SIZE)))
        log.ids.append(pa.array(ids, pa.string()))


def _check_losses(layout: DataDir, report: AuditReport) -> None:
    """Every cut at journal damage accepted with ``--accept-loss`` is a finding: the
    acknowledged appends after the damage are not in the log."""
    path = layout.journal_losses
    if not path.exists():
        return
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"{_rel(path, layout.root)} line {number}"
        try:
            loss = orjson.loads(line)
            message = (f"on {loss['at']} {loss['journal']} was cut at byte {loss['cut_at']} "
                       f"(damage at byte {loss['offset']}) with --accept-loss: "
                       f"{loss['events_lost']} acknowledged events in "
                       f"{loss['frames_lost']} intact frames after it were dropped (kept "
                       f"in {', '.join(loss['kept'])})")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            message = f"a record of an accepted journal loss, unreadable ({exc})"
        report.add("journal-loss", where, message)


def _check_kept_journals(layout: DataDir, report: AuditReport, gathered: Gathered) -> None:
    """The intact events of each damaged journal kept aside must all be in the log."""
    folder = layout.damaged_journals
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{JOURNAL_SUFFIX}")):
        scan = jr.scan_journal(path)
        records = [*scan.records, *(scan.damage.beyond if scan.damage else ())]
        named = [n for rec in records if isinstance(rec, jr.EventRecord)
                 and (n := _tenant_and_event_id(rec)) is not None]
        present = {tenant: gathered.log(tenant).present_ids(
                       [i for t, i in named if t == tenant])
                   for tenant in {t for t, _ in named}}
        missing = ["/".join(n) for n in named if n[1] not in present[n[0]]]
        if missing:
            report.add("log-shorter-than-journal", f"journal/damaged/{path.name}",
                       f"{len(missing)} acknowledged events of this damaged journal are not "
                       f"in the log (e.g. {', '.join(missing[:3])})")


def _check_log(layout: DataDir, tenant: str, log: _TenantLog, gathered: GatheredLog,
               report: AuditReport, checkpoints: list[SignedCheckpoint]) -> None:
    """A project's log: its seqs exactly 0..n-1, its event ids unique, its roots at the
    signed checkpoints' sizes, its receipts and its tree files. The log is read in seq
    order from ``gathered`` block by block and hashed as a stream."""
    ordered = gathered.ordered()
    n = ordered.n
    where = f"project {tenant}"
    if ordered.seqs is not None:  # not exactly 0..n-1
        _check_seqs(ordered.seqs, where, report)
    repeated = gathered.duplicate_ids()
    if repeated:
        report.add("event-id-duplicate", where, f"event ids recorded twice: {repeated}")
    sizes = {c.checkpoint.size for c in checkpoints if c.checkpoint.size <= n}
    stream = LeafStream(sizes | {n}, every=TILE_HEIGHT, block_leaves=BLOCK_LEAVES)
    tree = _TreeCheck(layout.tree(tenant), n)
    for start in range(0, n, BLOCK_LEAVES):
        block = ordered.leaves.read(start, min(n, start + BLOCK_LEAVES))
        tree.leaves(start, block)
        tree.levels(stream.feed(block))
    nodes, report.frontiers[tenant] = stream.finish()
    tree.levels(nodes)
    roots = stream.roots
    check_checkpoints(tenant, checkpoints, roots, n, report)
    report.tenants[tenant] = {"size": n, "root": roots[n].hex(),
                              "receipts": len(log.receipts)}
    _check_receipts(layout, tenant, log, ordered, report)
    tree.report(where, report)


def _check_seqs(seqs: np.ndarray, where: str, report: AuditReport) -> None:
    """The findings of a log whose sorted seqs are not exactly 0..n-1."""
    if not len(seqs):
        return
    first = int(seqs[0])
    if first != 0:
        report.add("seq-gap", where, f"the log starts at seq {first}, not 0 (events "
                   "deleted or a segment removed)")
    steps = np.diff(seqs)
    repeats = int(np.count_nonzero(steps == 0))
    if repeats:
        at = int(np.argmax(steps == 0))
        report.add("seq-duplicate", where, f"seq {seqs[at]} appears more than once "
                   f"({repeats} repeats)")
    gaps = steps > 1
    if gaps.any():
        at = int(np.argmax(gaps))
        report.add("seq-gap", where, f"the log has a gap after seq {seqs[at]}: seqs up to "
                   f"{seqs[at + 1]} are missing (events deleted or a segment removed)")


class _TreeCheck:
    """A project's stored tree files (``ledger.tlog.tiles``) against its leaf hashes
    and the tile hashes computed from them, compared block by block as the log is
    streamed; at most one finding per level, reported in level order."""

    def __init__(self, tdir: Path, n: int) -> None:
        self._tdir, self._n = tdir, n
        self._missing = not level_file(tdir, 0).exists()
        self._fds: dict[int, int] = {}
        self._counts: dict[int, int] = {}  # stored entries per level
        self._leaf: int | None = None  # the first stored leaf hash that differs
        self._bad: dict[int, int] = {}  # level → its first tile hash that differs

    def _stored(self, level: int, index: int, count: int) -> bytes:
        """Up to ``count`` stored entries of ``level`` from ``index`` (fewer at its end)."""
        if level not in self._fds:
            try:
                fd = os.open(level_file(self._tdir, level), os.O_RDONLY)
            except OSError:  # a missing level holds nothing
                self._fds[level], self._counts[level] = -1, 0
            else:
                self._fds[level] = fd
                self._counts[level] = os.fstat(fd).st_size // HASH_SIZE
        count = min(count, self._counts[level] - index)
        if count <= 0:
            return b""
        return os.pread(self._fds[level], count * HASH_SIZE, index * HASH_SIZE)

    def leaves(self, start: int, block: bytes) -> None:
        """The log's leaf hashes from position ``start``, against level 0."""
        if self._missing or self._leaf is not None:
            return
        stored = self._stored(0, start, len(block) // HASH_SIZE)
        if stored != block[:len(stored)]:
            self._leaf = start + _first_difference(stored, block)

    def levels(self, nodes: list[tuple[int, int, bytes]]) -> None:
        """Computed tile hashes (height, first index, packed) against the stored levels."""
        if self._missing:
            return
        for height, index, packed in nodes:
            level = height // TILE_HEIGHT
            if level in self._bad:
                continue
            stored = self._stored(level, index, len(packed) // HASH_SIZE)
            if stored != packed[:len(stored)]:
                self._bad[level] = index + _first_difference(stored, packed)

    def report(self, where: str, report: AuditReport) -> None:
        """The findings, then the files closed."""
        if self._missing:
            report.add("tree", where, f"{level_file(self._tdir, 0)} is missing (the writer "
                       "rebuilds it on open)")
            return
        self._stored(0, 0, 0)
        if self._leaf is not None:
            report.add("tree", f"{where} tree leaf {self._leaf}",
                       "the tree's stored leaf hash differs from the event's leaf hash")
        if self._counts[0] > self._n:
            report.add("tree", where, f"the tree holds {self._counts[0]} leaves but the log "
                       f"has {self._n} events")
        for level, i in sorted(self._bad.items()):
            report.add("tree", f"{where} tree level {level} tile hash {i}",
                       "stored interior hash does not match the hashes below it")
        for fd in self._fds.values():
            if fd >= 0:
                os.close(fd)
        self._fds.clear()


def _first_difference(stored: bytes, computed: bytes) -> int:
    """The index of the first 32-byte hash of ``stored`` that differs from ``computed``."""
    a = np.frombuffer(stored, np.uint8).reshape(-1, HASH_SIZE)
    b = np.frombuffer(computed[:len(stored)], np.uint8).reshape(-1, HASH_SIZE)
    return int(np.argmax((a != b).any(axis=1)))


def _check_receipts(layout: DataDir, tenant: str, log: _TenantLog, ordered: OrderedLog,
                    report: AuditReport) -> None:
    """Each receipt against its membership, the member events (their leaf hashes read
    from ``ordered`` by position) and the public keys."""
    from ledger.tlog.signing import KeyRingError, PublicKeyFormatError, load_public_keys

    keys_file = layout.keys_file
    keys = None
    if log.receipts:
        try:
            keys = load_public_keys(keys_file) if keys_file.exists() else None
        except (PublicKeyFormatError, KeyRingError) as exc:
            report.add("keys", str(keys_file), f"cannot be read: {exc}")
        if keys is None and keys_file.exists() is False:
            report.notes.append(f"project {tenant}: no {keys_file}, so receipt signatures "
                                "were not checked")
    receipt_seqs = np.array(sorted(s for s, _, _ in log.receipts), dtype=np.int64)
    for seq, canonical, where in log.receipts:
        receipt = orjson.loads(canonical)
        rid = receipt.get("receipt_id")
        runs = log.members.pop(seq, None)
        ranges = _disjoint_runs(runs) if ordered.seqs is None else None
        if ranges is not None:  # not expanded to every certified seq
            _check_receipt_runs(report, where, receipt, seq, ranges, receipt_seqs, ordered,
                                keys)
            continue
        members = receipt_members(report, where, receipt, runs)
        if members is None:
            continue
        if len(members) and (members[-1] >= seq or np.isin(members, receipt_seqs).any()):
            report.add("membership", where, f"receipt {rid}'s membership names entries that "
                       "are not events older than the receipt")
            continue
        pos = ordered.positions(members)
        if pos is None:
            report.add("membership", where, f"receipt {rid} certifies seqs missing from the "
                       "log")
            continue
        check_receipt_root(report, where, receipt, ordered.leaves.gather(pos), keys)
    for seq in log.members:
        report.add("membership", f"project {tenant} receipt seq {seq}",
                   "membership names a receipt entry that does not exist")


def _disjoint_runs(runs: list[np.ndarray] | None) -> np.ndarray | None:
    """A membership's inclusive runs (lo, hi) sorted, when each is well formed and none
    overlaps another (as a writer makes them); None otherwise or if there is none."""
    if not runs:
        return None
    ranges = np.concatenate(runs).reshape(-1, 2)
    ranges = ranges[np.argsort(ranges[:, 0], kind="stable")]
    if (not len(ranges) or (ranges[:, 1] < ranges[:, 0]).any()
            or (ranges[1:, 0] <= ranges[:-1, 1]).any()):
        return None
    return ranges


def _check_receipt_runs(report: AuditReport, where: str, receipt: dict[str, Any], seq: int,
                        ranges: np.ndarray, receipt_seqs: np.ndarray, ordered: OrderedLog,
                        keys: Any) -> None:
    """A receipt whose membership is disjoint ``ranges`` over a log whose seq i is at
    position i: the checks of ``receipt_members`` and ``_check_receipts`` (same findings),
    on the runs, the certified leaf hashes read run by run in bounded pieces."""
    rid = receipt.get("receipt_id")
    lo, hi = ranges[:, 0], ranges[:, 1]
    count = int((hi - lo + 1).sum())
    _check_certified_count(report, where, receipt, count)
    at = np.searchsorted(receipt_seqs, lo)
    has_receipt = (at < len(receipt_seqs)) & (receipt_seqs[np.minimum(
        at, len(receipt_seqs) - 1)] <= hi) if len(receipt_seqs) else np.zeros(0, bool)
    if hi[-1] >= seq or has_receipt.any():
        report.add("membership", where, f"receipt {rid}'s membership names entries that "
                   "are not events older than the receipt")
        return
    if lo[0] < 0 or hi[-1] >= ordered.n:
        report.add("membership", where, f"receipt {rid} certifies seqs missing from the "
                   "log")
        return

    def certified() -> Iterator[bytes]:
        for first, last in ranges.tolist():
            for start in range(first, last + 1, BLOCK_LEAVES):
                yield ordered.leaves.read(start, min(last + 1, start + BLOCK_LEAVES))

    check_receipt_root(report, where, receipt, certified(), keys)


def _tenant_and_event_id(rec: jr.EventRecord) -> tuple[str, str] | None:
    """The project and event id a journal record names; None if it is not a canonical
    event."""
    try:
        fields = orjson.loads(rec.canonical)
        return fields["tenant"], fields["event_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def receipt_members(report: AuditReport, where: str, receipt: dict[str, Any],
                    runs: list[np.ndarray] | None) -> np.ndarray | None:
    """The sorted seqs a receipt's membership ``runs`` name, its ``certified_count``
    checked against them; None (reported) when it has no membership."""
    rid = receipt.get("receipt_id")
    if runs is None:
        report.add("membership", where, f"receipt {rid} has no membership: the events it "
                   "certifies are not recorded")
        return None
    members = seqs_of(np.concatenate(runs)) if runs else np.empty(0, np.int64)
    members.sort()
    _check_certified_count(report, where, receipt, len(members))
    return members


def _check_certified_count(report: AuditReport, where: str, receipt: dict[str, Any],
                           count: int) -> None:
    """A receipt's ``certified_count`` against the ``count`` events of its membership."""
    if count != receipt.get("certified_count"):
        report.add("receipt", where, f"receipt {receipt.get('receipt_id')} certifies {count} "
                   f"events by its membership but says certified_count "
                   f"{receipt.get('certified_count')}")


def check_receipt_root(report: AuditReport, where: str, receipt: dict[str, Any],
                       certified: bytes | Iterable[bytes], keys: Any) -> None:
    """A receipt's Merkle root against the leaf hashes of the events it certifies
    (``certified``, packed in seq order, whole or in pieces), and its signature against
    ``keys`` if given."""
    from ledger.receipts.verification import verify_receipt

    rid = receipt.get("receipt_id")
    if isinstance(certified, bytes):
        got, _ = tree_levels_from_buffer(certified)
    else:  # streamed: a stack of perfect subtrees, no level kept
        stream = LeafStream()
        for piece in certified:
            stream.feed(piece)
        _, frontier = stream.finish()
        got = fold_right([h for _, h in frontier]) if frontier else EMPTY_ROOT
    if got.hex() != receipt.get("merkle_root"):
        report.add("receipt-root", where, f"receipt {rid}: the certified events' leaf "
                   f"hashes give root {got.hex()}, the receipt says "
                   f"{receipt.get('merkle_root')}: an event or the membership was altered")
    if keys is not None:
        result = verify_receipt(receipt, keys)
        if not result.valid:
            report.add("receipt-signature", where, f"receipt {rid}: {result.message}")
