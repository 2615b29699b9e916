"""The names of every file and folder of a data directory, in one place.

``DataDir`` is built once per open directory and handed to whatever needs a path in it::

    config.json                             settings fixed on first use (the origin)
    owners.json, owners.lock                which server owns which project (--owns)
    projects/<t>/                           one project's own unit (``ProjectDir``):
        LOCK                                its writer's lock (holds its pid)
        manifest.jsonl                      the hash-chained commit log of its segments
        journal/<n:08d>.wal                 its appends not yet sealed
        journal/damaged/<n:08d>-<h>.wal     a damaged journal file (and any after it), kept
                                            aside; <h>: 16 hex of its SHA-256
        journal/losses.jsonl                each cut of damaged journal accepted (--accept-loss)
        index.sqlite                        its id index (derived)
        index.closed                        the index's state when its writer last closed it
        index.corrupt-<UTC time>.sqlite     an unreadable index, kept aside (and its -wal)
        tree/level-<L>.bin                  its log tree (derived)
        rtree/<receipt id>.bin              per-receipt tile caches (derived)
    events/tenant=<t>/date=<d>/seg-….parquet  event segments (one dataset for every project)
    pairs/tenant=<t>/pairs-….parquet        conversation pairings
    receipts/tenant=<t>/rcpt-….parquet      receipt entries
    membership/tenant=<t>/mem-….parquet     which events each receipt certifies
    keys/keys.json, keys/<key id>.key       the signing keys
    checkpoints/<origin>.jsonl              every signed checkpoint
    cosignatures/<origin>.jsonl             witnesses' cosignatures on them
    witnesses.policy                        the witnesses the server submits checkpoints to
    witness-state.json                      per witness and log: the size it last cosigned
    verify-state.json                       what the last passing `ledger verify` checked
    api-keys.json                           the server's API keys
    budgets.json                            the projects' budgets (and webhook secrets)
    dimensions.json                         the projects' declared metadata dimensions
    budget-alerts.jsonl                     each budget threshold crossed, and its delivery
    prices/tenant=<t>.json                  a project's price overrides
    content/tenant=<t>/<2 hex>/<sha256>.json  conversation content
    iceberg/catalog.sqlite                  the Iceberg SQL catalog (table ledger.events)
    iceberg/ledger.db/events/metadata/…     the Iceberg table's metadata (ledger.storage.iceberg)

Segment paths are stored in the manifest relative to the directory, so ``partition``
gives them relative; everything else is an absolute ``Path``.

A directory written before projects had their own units keeps ``LOCK``,
``manifest.jsonl``, ``journal/``, ``index.sqlite``, ``tree/tenant=<t>/`` and
``rtree/tenant=<t>/`` at the top: ``DataDir.legacy()`` names them (``llmring ledger
migrate`` reads them, ``holds_legacy`` tells such a directory apart; ``ledger.storage.migrate``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SEGMENT_KINDS = ("events", "pairs", "receipts", "membership")  # manifest kinds, top folders
JOURNAL_SUFFIX = ".wal"
KEYS_FILE = "keys.json"  # in the keys folder (and in any folder a KeyRing keeps)


def journal_name(number: int) -> str:
    """The name of journal file ``number`` (``00000012.wal``)."""
    return f"{number:08d}{JOURNAL_SUFFIX}"


@dataclass(frozen=True, slots=True)
class DataDir:
    """The paths of one data directory (nothing is created or read here)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    # -- files and folders at the top -----------------------------------------------------
    @property
    def lock(self) -> Path:
        """The top-level lock: the writer's lock of a directory in the layout before
        projects had their own units (``llmring ledger migrate`` takes it)."""
        return self.root / "LOCK"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        """(In a ``ProjectDir``: the project's; here: the one of the layout before.)"""
        return self.root / "manifest.jsonl"

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def index(self) -> Path:
        return self.root / "index.sqlite"

    @property
    def projects(self) -> Path:
        """The folder of the projects' own units."""
        return self.root / "projects"

    def project(self, tenant: str) -> ProjectDir:
        """The paths of one project's unit (its lock, journal, manifest, index, trees)."""
        return ProjectDir(self.root, tenant)

    def project_names(self) -> list[str]:
        """The projects with a unit here, sorted (folders whose name is no project name,
        such as a half-built ``_…`` one, are not projects)."""
        from ledger.model.tenant import is_name

        if not self.projects.is_dir():
            return []
        return sorted(p.name for p in self.projects.iterdir()
                      if p.is_dir() and is_name(p.name))

    def legacy(self) -> LegacyDir:
        """The paths of this directory in the layout before projects had own units."""
        return LegacyDir(self.root)

    def index_aside(self, stamp: str) -> Path:
        """Where an unreadable index is moved (``stamp``: when), kept for inspection."""
        return self.root / f"index.corrupt-{stamp}.sqlite"

    @property
    def index_closed(self) -> Path:
        """The index file's size, time and inode when its writer last closed it cleanly
        (written at close, removed at open; ``ledger.storage.index``)."""
        return self.index.with_name("index.closed")

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def keys_file(self) -> Path:
        return self.keys / KEYS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def cosignatures(self) -> Path:
        return self.root / "cosignatures"

    @property
    def witness_policy(self) -> Path:
        return self.root / "witnesses.policy"

    @property
    def witness_state(self) -> Path:
        return self.root / "witness-state.json"

    @property
    def verify_state(self) -> Path:
        return self.root / "verify-state.json"

    @property
    def api_keys(self) -> Path:
        return self.root / "api-keys.json"

    @property
    def budgets(self) -> Path:
        return self.root / "budgets.json"

    @property
    def dimensions(self) -> Path:
        return self.root / "dimensions.json"

    @property
    def budget_alerts(self) -> Path:
        return self.root / "budget-alerts.jsonl"

    @property
    def content(self) -> Path:
        return self.root / "content"

    @property
    def owners(self) -> Path:
        """The ownership map: which server owns which project (``ledger.storage.owners``)."""
        return self.root / "owners.json"

    @property
    def owners_lock(self) -> Path:
        return self.root / "owners.lock"

    @property
    def before_projects(self) -> Path:
        """Where ``llmring ledger migrate`` keeps the top-level files of the layout before
        projects had their own units, until the user removes them."""
        return self.root / "before-projects"

    @property
    def iceberg_warehouse(self) -> Path:
        """The Iceberg warehouse: the catalog and the tables' metadata (never segments)."""
        return self.root / "iceberg"

    @property
    def iceberg_catalog(self) -> Path:
        """The Iceberg SQL catalog (SQLite) naming the table ``ledger.events``."""
        return self.iceberg_warehouse / "catalog.sqlite"

    @property
    def prices(self) -> Path:
        """The folder of the projects' price override files."""
        return self.root / "prices"

    # -- per journal file, project, receipt ------------------------------------------------
    def journal_file(self, number: int) -> Path:
        return self.journal / journal_name(number)

    @property
    def damaged_journals(self) -> Path:
        """The folder of damaged journal files kept aside (never replayed, never deleted)."""
        return self.journal / "damaged"

    def damaged_journal(self, number: int, sha256_hex: str) -> Path:
        """Where journal file ``number`` with that content is kept aside (the same
        content is kept once however often it is refused)."""
        return self.damaged_journals / f"{number:08d}-{sha256_hex[:16]}{JOURNAL_SUFFIX}"

    @property
    def journal_losses(self) -> Path:
        """The record of every cut at journal damage accepted with ``--accept-loss``."""
        return self.journal / "losses.jsonl"

    def tree(self, tenant: str) -> Path:
        """The folder of a project's log tree."""
        return self.projects / tenant / "tree"

    def receipt_tree(self, tenant: str, receipt_id: str) -> Path:
        """The tile cache of one receipt's tree."""
        return self.projects / tenant / "rtree" / f"{receipt_id}.bin"

    def price_file(self, tenant: str) -> Path:
        """A project's price overrides (``llmring prices``)."""
        return self.prices / f"tenant={tenant}.json"

    def content_file(self, tenant: str, digest: str) -> Path:
        return self.content / f"tenant={tenant}" / digest[:2] / f"{digest}.json"

    @staticmethod
    def partition(kind: str, tenant: str, date: str | None = None) -> str:
        """The folder of a segment, relative to the root: ``events/tenant=<t>/date=<d>``
        for events, ``<kind>/tenant=<t>`` for pairs, receipts and membership."""
        if kind not in SEGMENT_KINDS:
            raise ValueError(f"unknown segment kind {kind!r}")
        if kind == "events":
            return f"events/tenant={tenant}/date={date}"
        return f"{kind}/tenant={tenant}"

    def segment_folders(self) -> list[Path]:
        """The top folders that hold segment files."""
        return [self.root / kind for kind in SEGMENT_KINDS]

    def holds_ledger(self) -> bool:
        """Whether a ledger was ever opened here (its lock, a project's unit, or the
        layout before)."""
        return self.lock.exists() or bool(self.project_names()) or self.holds_legacy()

    def holds_legacy(self) -> bool:
        """Whether the directory is in the layout before projects had own units (a
        top-level manifest, which its writer created on first open): ``llmring ledger
        migrate`` converts it (moving the manifest aside is its switch)."""
        return self.manifest.exists()


@dataclass(frozen=True, slots=True)
class ProjectDir(DataDir):
    """The paths of one project's unit under ``projects/<tenant>/``; everything shared
    (config, keys, checkpoints, segments, content...) is the data directory's. The write
    core (journal, manifest, index, recovery, trees) takes it where it took a ``DataDir``."""

    tenant: str

    def __init__(self, root: str | os.PathLike[str], tenant: str) -> None:
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "tenant", tenant)

    @property
    def base(self) -> Path:
        """The project's folder."""
        return self.root / "projects" / self.tenant

    @property
    def lock(self) -> Path:
        return self.base / "LOCK"

    @property
    def manifest(self) -> Path:
        return self.base / "manifest.jsonl"

    @property
    def journal(self) -> Path:
        return self.base / "journal"

    @property
    def index(self) -> Path:
        return self.base / "index.sqlite"

    def index_aside(self, stamp: str) -> Path:
        return self.base / f"index.corrupt-{stamp}.sqlite"

    def segment_folders(self) -> list[Path]:
        """The partitions of this project's segment files (the only ones its writer may
        clean up)."""
        return [self.root / kind / f"tenant={self.tenant}" for kind in SEGMENT_KINDS]

    def holds_ledger(self) -> bool:
        return self.manifest.exists() or self.journal.is_dir()


@dataclass(frozen=True, slots=True)
class LegacyDir(DataDir):
    """A data directory in the layout before projects had own units: one lock, journal,
    manifest and index at the top, trees under ``tree/tenant=<t>``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    def tree(self, tenant: str) -> Path:
        return self.root / "tree" / f"tenant={tenant}"

    def receipt_tree(self, tenant: str, receipt_id: str) -> Path:
        return self.root / "rtree" / f"tenant={tenant}" / f"{receipt_id}.bin"

    def holds_ledger(self) -> bool:
        return self.holds_legacy()


__all__ = ["JOURNAL_SUFFIX", "KEYS_FILE", "SEGMENT_KINDS", "DataDir", "LegacyDir", "ProjectDir",
           "journal_name"]
