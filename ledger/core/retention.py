"""Retention: delete stored conversation content older than an age, keep every proof.

An event commits to its conversation content by ``content_sha256`` (docs/formats.md); the
content itself lives apart (``ledger.storage.content``). Pruning deletes content files whose every
referencing event is older than the cutoff (identical content is stored once per project,
so a file still named by a newer event is kept). Events, their leaf hashes, receipts,
proofs and checkpoints are untouched, so every one of them still verifies; only the
messages are gone, and asking for them says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.errors import RetentionError
from ledger.storage.content import ContentStore
from projections.snapshot import run

_AGE = re.compile(r"\s*([0-9]{1,12})\s*([smhdw])\s*")  # the whole text (fullmatch)
MAX_AGE = timedelta(days=1000 * 366)  # a cutoff stays well inside the calendar
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class PruneResult:
    tenant: str
    cutoff: str
    files: int
    bytes: int
    kept_shared: int  # content older than the cutoff still named by a newer event
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.tenant, "cutoff": self.cutoff, "files_deleted": self.files,
                "bytes_deleted": self.bytes, "kept_shared": self.kept_shared,
                "dry_run": self.dry_run}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` as a duration."""
    m = _AGE.fullmatch(text) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0:
        raise RetentionError(f"cannot read the age {text!r}: give a positive number and a "
                             "unit, e.g. 90d, 12h, 2w")
    try:
        age = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:
        age = MAX_AGE + MAX_AGE
    if age > MAX_AGE:
        raise RetentionError(f"the age {text!r} is more than 1000 years")
    return age


def prune_content(ledger: Any, tenant: str, older_than: timedelta, *,
                  now: datetime | None = None, dry_run: bool = False) -> PruneResult:
    """Delete the tenant's conversation content whose newest event is older than
    ``older_than`` (relative to ``now``, default the current time)."""
    cutoff = (now or datetime.now(UTC)) - older_than
    # Content with an event older than the cutoff, and whether a newer event names it too.
    rows = run(ledger.snapshot(), tenant,
               "SELECT content_sha256, max(ts) < $cutoff FROM {src} "
               "WHERE content_sha256 IS NOT NULL GROUP BY content_sha256 "
               "HAVING min(ts) < $cutoff", {"cutoff": cutoff}) or []
    store = ContentStore(ledger.layout)
    files = size = kept = 0
    dirs = set()
    for digest, all_old in rows:
        if not all_old:
            kept += 1
            continue
        path = store.path(tenant, digest)
        try:
            n = path.stat().st_size
        except FileNotFoundError:
            continue  # pruned before, or never stored
        if not dry_run:
            path.unlink()
            dirs.add(path.parent)
        files += 1
        size += n
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return PruneResult(tenant, cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), files, size, kept,
                       dry_run)


__all__ = ["PruneResult", "RetentionError", "parse_age", "prune_content"]
