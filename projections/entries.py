"""The canonical bytes of a run of a project's log entries, in log order: events (their
canonical JSON, ``ledger.model.event``) and receipt entries (the signed receipt's RFC 8785
JSON), exactly the bytes whose RFC 9162 leaf hashes are the log tree's leaves. The
tlog-tiles entry bundles (``ledger.tlog.published``) are made of them."""

from __future__ import annotations

from projections import events as pe
from projections.receipts import query
from projections.snapshot import Snapshot


def entry_bytes(snapshot: Snapshot, tenant: str, start: int, end: int) -> list[bytes]:
    """The canonical bytes of entries ``start`` to ``end - 1`` of ``tenant``'s log;
    ``LookupError`` if one of them is in neither the events nor the receipt entries."""
    if start >= end:
        return []
    found: dict[int, bytes] = {}
    for event in pe.by_seq(snapshot, tenant, list(range(start, end))):
        found[event.seq] = event.canonical_bytes()
    rows = query(snapshot, tenant, "SELECT seq, receipt FROM {receipts} "
                 "WHERE seq >= ? AND seq < ?", [start, end], events=False)
    for seq, text in rows or []:
        found[int(seq)] = text.encode("utf-8")
    missing = [seq for seq in range(start, end) if seq not in found]
    if missing:
        raise LookupError(f"log entries {missing[:5]} of {tenant} were not found")
    return [found[seq] for seq in range(start, end)]


__all__ = ["entry_bytes"]
