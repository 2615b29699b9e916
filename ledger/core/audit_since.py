"""The incremental audit (``llmring ledger verify --since-checkpoint``) and the record of
what the last passing audit checked (``verify-state.json``).

A verify that passes (full or incremental) writes ``verify-state.json``, one file for
the data directory holding every project: per project's unit, the number of manifest
records it checked, the byte offsets and SHA-256 of the last one, the live set those
records add up to; and each project's log as its perfect subtrees (the "frontier":
enough to extend the root without the old leaves).

``verify_since`` then checks only what is new, chained to what was checked:

* the manifest: the last checked record still hashes to the recorded head, and every
  record after it is canonical, numbered in order and chained from it;
* every segment the new records add (file hash, rows, each event's leaf hash recomputed
  from its fields, dimensions; receipts and memberships), in ``jobs`` processes;
* the unsealed journal, as the full audit does;
* per project: the new entries' seqs continue the checked log gap-free; rows rewritten by
  a compaction equal the checked leaves (read from the tree's leaf file, checked before);
  the root is extended from the frontier and every new signed checkpoint (size at or
  beyond the checked size) must match it; the tree's new leaves and the interior tile
  hashes above them are recomputed; each new receipt's certified events give its root
  and its signature verifies;
* the signed checkpoints appended since (each ``checkpoints/*.jsonl`` is read from the
  last line checked, if that line is still there as it was; else the whole file).

Not re-checked: files and records already checked (a change to them is found by a full
verify), event-id uniqueness against old entries, and the damaged journals kept aside.
The state file itself is trusted: a full verify does not read it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ledger.core.audit import (
    AuditReport,
    Progress,
    _check_journal,
    _check_losses,
    _load_checkpoints,
    _TenantLog,
    check_checkpoints,
    check_receipt_root,
    check_segments,
    receipt_members,
    verify_directory,
)
from ledger.storage import journal as jr
from ledger.storage.durable import write_atomic
from ledger.storage.layout import DataDir
from ledger.storage.manifest import ManifestState, Segment, check_chain
from ledger.storage.objectstore import open_storage
from ledger.storage.segments import SegmentStore
from ledger.tlog.checkpoint import SignedCheckpoint
from ledger.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    fold_right,
    pair_hashes,
    tree_levels_from_buffer,
)
from ledger.tlog.tiles import TILE_WIDTH, level_file

STATE_FORMAT = 2  # 2: one entry per project's unit (1: one top-level manifest)
Frontier = list[tuple[int, bytes]]  # perfect subtrees (height, hash), left to right


# -- the state file ---------------------------------------------------------------------------
def record_verified(layout: DataDir, checked: dict[str, tuple[list[bytes], ManifestState]],
                    report: AuditReport) -> None:
    """After a passing audit: what it checked of each project's unit (its manifest lines
    and state), for the next ``verify_since``."""
    manifests = {}
    for tenant, (lines, _) in checked.items():
        end = sum(len(line) + 1 for line in lines)
        last = lines[-1] if lines else b""
        manifests[tenant] = {
            "count": len(lines), "end": end,
            "last_start": end - len(last) - 1 if lines else 0,
            "head": hashlib.sha256(last).hexdigest() if lines else None}
    _write_state(layout, manifests, {t: s for t, (_, s) in checked.items()}, report)


def _write_state(layout: DataDir, manifests: dict[str, dict[str, Any]],
                 states: dict[str, ManifestState], report: AuditReport) -> None:
    body = {
        "format": STATE_FORMAT,
        "units": {t: {"manifest": manifests[t], "sealed_journal": states[t].sealed_journal,
                      "live": [states[t].live[p].as_dict() for p in sorted(states[t].live)]}
                  for t in sorted(manifests)},
        "checkpoints": report.checkpoint_files,
        "projects": {t: {"size": report.tenants[t]["size"],
                         "receipts": report.tenants[t]["receipts"],
                         "frontier": [[h, x.hex()] for h, x in f]}
                     for t, f in sorted(report.frontiers.items())},
    }
    try:
        write_atomic(layout.verify_state, orjson.dumps(body))
    except OSError as exc:  # a read-only directory still verifies
        report.notes.append(f"could not record what was checked in {layout.verify_state} "
                            f"({exc.strerror}): a later --since-checkpoint checks everything")


def _read_state(layout: DataDir) -> dict[str, Any] | None:
    try:
        body = orjson.loads(layout.verify_state.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return body if isinstance(body, dict) and body.get("format") == STATE_FORMAT else None


# -- the incremental audit ----------------------------------------------------------------------
def verify_since(layout: DataDir, *, jobs: int | None = None,
                 progress: Progress | None = None) -> AuditReport:
    """Check what is new since the state a passing audit recorded (module docstring); with
    no usable state, the full audit (which records one). A project with no unit in the
    state (new since) is checked from its first manifest record."""
    saved = _read_state(layout)
    if saved is None:
        report = verify_directory(layout.root, jobs=jobs, progress=progress)
        report.notes.append("no verify-state.json from a passing verify: checked everything")
        return report
    report = AuditReport()
    fresh_unit = {"manifest": {"count": 0, "end": 0, "last_start": 0, "head": None},
                  "sealed_journal": 0, "live": []}
    manifests: dict[str, dict[str, Any]] = {}
    states: dict[str, ManifestState] = {}
    new: list[Segment] = []
    for tenant in layout.project_names():
        unit = layout.project(tenant)
        where = str(unit.manifest.relative_to(layout.root))
        saved_unit = saved["units"].get(tenant, fresh_unit)
        m = saved_unit["manifest"]
        state = ManifestState(live={d["path"]: Segment.from_dict(d)
                                    for d in saved_unit["live"]},
                              sealed_journal=int(saved_unit["sealed_journal"]))
        old_live = dict(state.live)
        data = _read_from(unit.manifest, int(m["last_start"]))
        last, _, rest = data.partition(b"\n")
        if m["head"] is not None and hashlib.sha256(last).hexdigest() != m["head"]:
            report.add("manifest", f"{where} line {m['count']}",
                       "the last record the previous verify checked was altered: run a "
                       "full verify")
            return report
        if m["head"] is None:
            rest = data
        lines = rest.split(b"\n")
        if lines[-1]:
            report.notes.append(f"{where} ends in a torn line (a crash mid-append); the "
                                "writer cuts it off on its next open")
        lines = lines[:-1]
        _, chain = check_chain(lines, first=int(m["count"]), after=m["head"] or "0" * 64,
                               state=state)
        for c in chain:
            report.add("manifest", f"{where} line {c.line}", c.message)
        new.extend(s for p, s in state.live.items() if old_live.get(p) != s)
        count = int(m["count"]) + len(lines)
        end_here = int(m["last_start"]) + (0 if m["head"] is None else len(last) + 1)
        end = end_here + sum(len(line) + 1 for line in lines)
        if lines:
            tail = {"head": hashlib.sha256(lines[-1]).hexdigest(),
                    "last_start": end - len(lines[-1]) - 1}
        else:
            tail = {"head": m["head"], "last_start": int(m["last_start"])}
        manifests[tenant] = {"count": count, "end": end, **tail}
        states[tenant] = state

    new.sort(key=lambda s: (s.tenant, s.kind, s.seq_min))
    logs: dict[str, _TenantLog] = {}
    check_segments(layout, new, report, logs, jobs=jobs, progress=progress)
    kept_aside = False
    for tenant, state in states.items():
        unit = layout.project(tenant)
        files = [p for number, p in jr.journal_files(unit.journal)
                 if number > state.sealed_journal]
        for i, jpath in enumerate(files):
            _check_journal(jpath, i < len(files) - 1, report, logs)
        _check_losses(unit, report)
        kept_aside = kept_aside or (unit.damaged_journals.is_dir()
                                    and any(unit.damaged_journals.iterdir()))
    if kept_aside:
        report.notes.append("damaged journals are kept aside: only a full verify checks "
                            "that the log holds their events")

    checkpoints = _load_checkpoints(layout, report, saved.get("checkpoints"))
    store = SegmentStore(layout, open_storage(layout, record=False))
    projects = saved["projects"]
    for tenant in sorted(set(projects) | set(logs)):
        before = projects.get(tenant, {"size": 0, "frontier": []})
        frontier = [(int(h), bytes.fromhex(x)) for h, x in before["frontier"]]
        _check_growth(layout, store, states.get(tenant, ManifestState()), tenant,
                      int(before["size"]), frontier, logs.get(tenant, _TenantLog()),
                      checkpoints.pop(tenant, []), report,
                      receipts=int(before.get("receipts", 0)))
    for tenant, signed in sorted(checkpoints.items()):
        if signed:
            report.add("checkpoint", f"project {tenant}", "a checkpoint of a log this "
                       "directory holds no entry of was signed")
    counts = ", ".join(f"{t} {saved['units'].get(t, fresh_unit)['manifest']['count']}"
                       for t in sorted(states))
    report.notes.append(f"checked what is new since the manifest records checked before "
                        f"({counts or 'none'}; a full verify checks everything)")
    if report.ok:
        _write_state(layout, manifests, states, report)
    return report


def _read_from(path: Path, offset: int) -> bytes:
    if not path.exists():
        return b""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read()


def _check_growth(layout: DataDir, store: SegmentStore, state: ManifestState, tenant: str,
                  size: int, frontier: Frontier, log: _TenantLog,
                  checkpoints: list[SignedCheckpoint], report: AuditReport, *,
                  receipts: int) -> None:
    """One project's new entries, chained to its checked log of ``size`` entries (of
    which ``receipts`` receipt entries)."""
    where = f"project {tenant}"
    tdir = layout.tree(tenant)
    leaves0 = level_file(tdir, 0)
    stored = np.memmap(leaves0, dtype=np.uint8, mode="r") if leaves0.exists() and \
        leaves0.stat().st_size else np.empty(0, np.uint8)
    stored = stored[:len(stored) - len(stored) % HASH_SIZE].reshape(-1, HASH_SIZE)
    seqs = pa.chunked_array(log.seqs, pa.int64())
    leaf_column = pa.chunked_array(log.hashes, pa.binary(HASH_SIZE))
    if seqs.null_count:  # a damaged segment's: in Arrow's order (nulls last)
        order = pc.sort_indices(seqs)
        sorted_seqs = pc.take(seqs, order).to_numpy()
        hashes = _packed(pc.take(leaf_column, order))
    else:  # the same stable order, sorted and gathered in numpy
        flat = (np.concatenate([c.to_numpy() for c in seqs.chunks]) if seqs.num_chunks
                else np.empty(0, np.int64))
        order = np.argsort(flat, kind="stable")
        sorted_seqs = flat[order]
        hashes = _packed(leaf_column)[order]
    old = sorted_seqs < size
    if old.any():  # rewritten by a compaction, or sealed from the journal: as checked
        at = sorted_seqs[old]
        if at.max() >= len(stored) or (stored[at] != hashes[old]).any():
            report.add("leaf-hash", where, "a segment rewritten since the last verify holds "
                       "entries that differ from the log it checked")
    fresh = sorted_seqs[~old]
    n = size + len(fresh)
    if len(fresh) and not np.array_equal(fresh, np.arange(size, n)):
        report.add("seq-gap", where, f"the entries since the last verify do not continue "
                   f"its log of {size} entries gap-free (seqs {fresh[0]}..{fresh[-1]}, "
                   f"{len(fresh)} entries)")
        return
    ids = pa.chunked_array(log.ids, pa.string())
    if pc.count_distinct(ids).as_py() != len(ids):
        report.add("event-id-duplicate", where, "an event id is recorded twice among the "
                   "entries since the last verify")
    new_leaves = hashes[~old]
    sizes = {c.checkpoint.size for c in checkpoints if size <= c.checkpoint.size <= n}
    if [h for h, _ in frontier] != _bits(size):
        report.add("verify-state", where, f"verify-state.json's frontier does not fit a log "
                   f"of {size} entries: run a full verify")
        return
    roots, frontier = _extend(frontier, size, new_leaves, sizes | {n})
    check_checkpoints(tenant, checkpoints, roots, n, report)
    report.frontiers[tenant] = frontier
    receipts += sum(1 for seq, _, _ in log.receipts if seq >= size)
    report.tenants[tenant] = {"size": n, "root": roots[n].hex(), "receipts": receipts}
    _check_tree_growth(tdir, stored, size, n, new_leaves, where, report)
    _check_new_receipts(layout, store, state, tenant, log, stored, n, report)


def _packed(column: pa.ChunkedArray) -> np.ndarray:
    parts = [np.frombuffer(c.buffers()[1], dtype=np.uint8)[
        c.offset * HASH_SIZE:(c.offset + len(c)) * HASH_SIZE] for c in column.chunks]
    flat = np.concatenate(parts) if parts else np.empty(0, np.uint8)
    return flat.reshape(-1, HASH_SIZE)


def _extend(frontier: Frontier, size: int, leaves: np.ndarray, sizes: set[int]
            ) -> tuple[dict[int, bytes], Frontier]:
    """The roots at ``sizes`` (each at least ``size``) of the log whose first ``size``
    leaves are ``frontier``, followed by ``leaves``; and its frontier at the end.

    Level by level over packed hashes (``pair_hashes``: one SHA-256 per new node, in C
    when built): level ``h`` holds the complete nodes ``size >> h`` .. ``n >> h`` - 1,
    preceded by the frontier's node of height ``h`` when ``size >> h`` is odd (its left
    sibling). A root at size ``s`` folds the nodes ``(s >> h) - 1`` of the heights ``h``
    whose bit is set in ``s``, highest first (RFC 9162's split)."""
    old = dict(frontier)  # its heights are the bits of ``size`` (``_bits``)
    n = size + len(leaves)
    levels: list[tuple[int, bytes]] = []  # per height: index of the first node, nodes
    first, packed = size, leaves.tobytes()
    height = 0
    while (n >> height) > 0:
        if first & 1:
            packed, first = old[height] + packed, first - 1
        levels.append((first, packed))
        count = len(packed) // HASH_SIZE
        packed, first = bytes(pair_hashes(packed, count // 2)), first >> 1
        height += 1

    def node(h: int, index: int) -> bytes:
        start, nodes = levels[h]
        if index < start:
            return old[h]  # an old subtree the new leaves do not reach
        return nodes[HASH_SIZE * (index - start):HASH_SIZE * (index - start + 1)]

    def root(s: int) -> bytes:
        parts = [node(h, (s >> h) - 1) for h in _bits(s)]
        return fold_right(parts) if parts else EMPTY_ROOT

    return ({s: root(s) for s in sizes},
            [(h, node(h, (n >> h) - 1)) for h in _bits(n)])


def _bits(size: int) -> list[int]:
    """The heights of the perfect subtrees of a log of ``size`` leaves, highest first."""
    return [h for h in range(size.bit_length() - 1, -1, -1) if size >> h & 1]


def _check_tree_growth(tdir: Path, stored: np.ndarray, size: int, n: int,
                       new_leaves: np.ndarray, where: str, report: AuditReport) -> None:
    """The tree's leaf file from ``size`` on, and the interior tile hashes above it."""
    if len(stored) > n:
        report.add("tree", where, f"the tree holds {len(stored)} leaves but the log has {n} "
                   "entries")
    got = stored[size:n]
    if len(got) < n - size or (got != new_leaves[:len(got)]).any():
        report.add("tree", f"{where} tree leaves {size}..{n - 1}",
                   "the tree's stored leaf hashes differ from the new entries' leaf hashes")
        return
    below, old_count, count, level = level_file(tdir, 0), size, n, 1
    while count >= TILE_WIDTH:
        first = old_count // TILE_WIDTH  # the first tile the new entries touch
        tiles = count // TILE_WIDTH
        data = _read_range(below, first * TILE_WIDTH * HASH_SIZE, tiles * TILE_WIDTH * HASH_SIZE)
        path = level_file(tdir, level)
        stored_tiles = _read_range(path, first * HASH_SIZE, tiles * HASH_SIZE)
        for t in range(tiles - first):
            chunk = data[t * TILE_WIDTH * HASH_SIZE:(t + 1) * TILE_WIDTH * HASH_SIZE]
            if len(chunk) < TILE_WIDTH * HASH_SIZE:
                break
            want = tree_levels_from_buffer(chunk)[0]
            if stored_tiles[t * HASH_SIZE:(t + 1) * HASH_SIZE] not in (want, b""):
                report.add("tree", f"{where} tree level {level} tile hash {first + t}",
                           "stored interior hash does not match the hashes below it")
                break
        below, old_count, count, level = path, first, tiles, level + 1


def _read_range(path: Path, start: int, end: int) -> bytes:
    if not path.exists():
        return b""
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(max(0, end - start))


def _check_new_receipts(layout: DataDir, store: SegmentStore, state: ManifestState,
                        tenant: str, log: _TenantLog, leaves: np.ndarray, n: int,
                        report: AuditReport) -> None:
    """Each new receipt against its membership, the checked leaves and the keys."""
    from ledger.tlog.signing import KeyRingError, PublicKeyFormatError, load_public_keys

    if not log.receipts and not log.members:
        return
    keys = None
    try:
        keys = load_public_keys(layout.keys_file) if layout.keys_file.exists() else None
    except (PublicKeyFormatError, KeyRingError) as exc:
        report.add("keys", str(layout.keys_file), f"cannot be read: {exc}")
    receipt_seqs = set()
    for seg in state.segments(tenant, kind="receipts"):
        receipt_seqs.update(store.read(seg, ["seq"]).column("seq").to_pylist())
    receipt_seqs.update(seq for seq, _, _ in log.receipts)
    rseqs = np.array(sorted(receipt_seqs), dtype=np.int64)
    for seq, canonical, where in log.receipts:
        receipt = orjson.loads(canonical)
        rid = receipt.get("receipt_id")
        members = receipt_members(report, where, receipt, log.members.pop(seq, None))
        if members is None:
            continue
        if len(members) and (members[-1] >= seq or members[-1] >= min(n, len(leaves))
                             or np.isin(members, rseqs).any()):
            report.add("membership", where, f"receipt {rid}'s membership names entries that "
                       "are not events older than the receipt")
            continue
        check_receipt_root(report, where, receipt, leaves[members].tobytes(), keys)
    for seq in log.members:
        if seq not in receipt_seqs:
            report.add("membership", f"project {tenant} receipt seq {seq}",
                       "membership names a receipt entry that does not exist")
