"""The read side: DuckDB queries over the ledger's segments and unsealed tail.

Nothing in this package writes. Every query runs over a ``Snapshot``: the live segment
files named by the manifest (never a directory listing) plus the journal tail as Arrow.
"""

from projections.snapshot import SegmentRef, Snapshot

__all__ = ["SegmentRef", "Snapshot"]
