"""``llmring ledger migrate``: converts a data directory from the layout before projects had
their own units (one lock, journal, manifest and id index at the top for every project)
to per-project units (``projects/<t>/``, ``ledger.storage.layout``).

Every event, receipt, segment file, hash, checkpoint and signature stays as it is: only
the unsigned bookkeeping moves. The steps, each safe to redo after a crash:

1. take the directory's lock (no writer may run) and ``ledger verify`` the old layout:
   any problem refuses the migration, nothing changed;
2. seal the old journal with the old write core (the same classes over the old layout),
   so every entry is in a segment the old manifest names;
3. write each project's unit: a new manifest chain whose one record (``op: "migrate"``)
   adds the project's live segment files, and copies of its tree and receipt tile caches
   (its id index is rebuilt from the segments on first open); a half-built
   ``projects/`` of an interrupted run is removed first;
4. verify the new units: every log must have the size and root it had; else the new
   units are removed and the migration refused;
5. switch: ``manifest.jsonl`` is moved into ``before-projects/`` (one rename: from then
   on the directory is in the new layout), then ``journal/``, ``index.sqlite*``,
   ``tree/`` and ``rtree/`` follow. They are kept there until the user removes them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.core.audit import AuditReport, verify_directory
from ledger.core.guard import WriteGuard
from ledger.core.idempotency import Idempotency
from ledger.core.logs import Logs
from ledger.core.recovery import Recovery, release_lock, take_lock
from ledger.core.sealer import Sealer
from ledger.core.tail import Tail, TailChunk
from ledger.errors import LedgerError, MigrationError
from ledger.storage import journal as jr
from ledger.storage.durable import fsync_dir, private_dir
from ledger.storage.index import Index
from ledger.storage.layout import DataDir, LegacyDir
from ledger.storage.manifest import Manifest, Segment
from ledger.storage.objectstore import open_storage
from ledger.storage.segments import SegmentStore

MIGRATE_OP = "migrate"  # the op of the one record each project's new manifest starts with
_OLD_TOP = ("journal", "index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "index.closed",
            "tree", "rtree")


@dataclass
class Migration:
    """What ``migrate`` did: the projects converted, the audits before and after, and
    where the old top-level files are kept."""

    projects: list[str] = field(default_factory=list)
    kept: str = ""
    before: AuditReport | None = None
    after: AuditReport | None = None
    already: bool = False  # the directory was in the per-project layout already

    def as_dict(self) -> dict[str, Any]:
        return {"projects": self.projects, "kept": self.kept, "already": self.already,
                "logs": self.after.tenants if self.after is not None else {}}


def migrate(path: str | os.PathLike[str]) -> Migration:
    """Convert the directory at ``path`` in place (see the module docstring);
    ``MigrationError`` when it cannot be done safely (nothing is switched then)."""
    layout = DataDir(path)
    if not layout.holds_legacy():
        if layout.project_names():
            _move_aside(layout)  # a run stopped after its switch: finish it
            return Migration(projects=layout.project_names(), already=True,
                             kept=str(layout.before_projects.relative_to(layout.root))
                             if layout.before_projects.exists() else "")
        raise MigrationError(f"no ledger in {layout.root} to migrate")
    fd = take_lock(layout)
    try:
        return _migrate(layout)
    finally:
        release_lock(fd)


def _migrate(layout: DataDir) -> Migration:
    root = layout.root
    before = verify_directory(root, old_layout=True)
    if not before.ok:
        raise MigrationError(_refusal("the directory does not verify as it is", before))
    live = _seal_old(layout.legacy())
    if layout.projects.exists():  # half-built by an interrupted run: not yet switched to
        shutil.rmtree(layout.projects)
    projects = sorted({s.tenant for s in live})
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for tenant in projects:
        _write_unit(layout, tenant, [s for s in live if s.tenant == tenant], at)
    fsync_dir(layout.projects)
    candidate = verify_directory(root, old_layout=False)
    logs_before = {t: (v["size"], v["root"]) for t, v in before.tenants.items()}
    logs_after = {t: (v["size"], v["root"]) for t, v in candidate.tenants.items()}
    if not candidate.ok or logs_after != logs_before:
        shutil.rmtree(layout.projects)
        if candidate.ok:
            candidate.add("migrate", str(root), f"the logs would change: {logs_before} "
                          f"became {logs_after}")
        raise MigrationError(_refusal("the converted directory would not verify", candidate))
    # The switch: one rename. From now on the directory is in the per-project layout.
    private_dir(layout.before_projects)
    os.rename(layout.manifest, layout.before_projects / layout.manifest.name)
    fsync_dir(layout.before_projects)
    fsync_dir(root)
    _move_aside(layout)
    after = verify_directory(root)
    if not after.ok:  # the files verified a moment ago: only a concurrent change does this
        raise LedgerError(_refusal("the directory does not verify after the switch", after))
    return Migration(projects=projects, before=before, after=after,
                     kept=str(layout.before_projects.relative_to(root)))


def _seal_old(layout: LegacyDir) -> list[Segment]:
    """Seal the old journal with the old write core (recovery, index, trees and sealer
    over the top-level files); the live segments, as the old manifest then says."""
    store = SegmentStore(layout, open_storage(layout, record=False))  # where they live
    manifest = Manifest(layout.manifest)
    try:
        recovery = Recovery(layout, store, manifest)
        replayed = recovery.replay()
        logs = Logs(layout, replayed.sizes, replayed.receipt_seqs,
                    lambda tenant, tree, size: recovery.fill_tree(tail, tenant, tree, size))
        tail = Tail([c for c in replayed.chunks if c], TailChunk(journal=replayed.next_journal),
                    logs.leaf_hashes)
        index = Index(layout)
        try:
            ids = Idempotency(index, manifest, store, tail, lambda tenant, event_id: None)
            recovery.catch_up_index(ids, replayed.chunks)
            recovery.remove_empty(replayed.chunks)
            journal = jr.Journal(layout.journal, replayed.next_journal)
            try:
                logs.open_trees()
                tail.forget_replayed_leaves()
                Sealer(WriteGuard(), journal, manifest, store, index, tail, logs,
                       auto_seal=False).seal()
            finally:
                journal.close()
                logs.close()
        finally:
            index.close()
        return list(manifest.state.live.values())
    finally:
        manifest.close()


def _write_unit(layout: DataDir, tenant: str, segments: list[Segment], at: str) -> None:
    """A project's unit: its manifest (one record adding its live segments) and copies of
    its tree and receipt tile caches."""
    unit = layout.project(tenant)
    private_dir(layout.projects)
    private_dir(unit.base)
    manifest = Manifest(unit.manifest)
    try:
        manifest.append(MIGRATE_OP, at, add=sorted(segments, key=lambda s: (s.kind, s.path)))
    finally:
        manifest.close()
    old = layout.legacy()
    for source, target in ((old.tree(tenant), layout.tree(tenant)),
                           (old.root / "rtree" / f"tenant={tenant}", unit.base / "rtree")):
        if source.is_dir():
            shutil.copytree(source, target)
            for p in [target, *target.rglob("*")]:
                p.chmod(0o700 if p.is_dir() else 0o600)
                if p.is_file():
                    fsync_dir(p)
    fsync_dir(unit.base)


def _move_aside(layout: DataDir) -> None:
    """Move the old top-level files left beside the new units into ``before-projects/``."""
    aside = layout.before_projects
    left = [layout.root / name for name in _OLD_TOP if (layout.root / name).exists()]
    left += sorted(layout.root.glob("index.corrupt-*"))
    if not left:
        return
    private_dir(aside)
    for p in left:
        target = aside / p.name
        if target.exists():  # (a copy moved by an earlier run would be the same name)
            raise MigrationError(f"cannot move {p} aside: {target} exists; move it yourself")
        os.rename(p, target)
    fsync_dir(aside)
    fsync_dir(layout.root)


def _refusal(why: str, report: AuditReport) -> str:
    problems = "; ".join(str(p) for p in report.problems[:5])
    more = f" (and {len(report.problems) - 5} more)" if len(report.problems) > 5 else ""
    return (f"not migrated: {why}: {problems}{more}. Nothing was switched; run "
            "`llmring ledger verify` for the full report")


__all__ = ["MIGRATE_OP", "Migration", "migrate"]
