"""Receipt entries in a tenant's log: how they are held in the tail and stored in segments.

A receipt is a log entry of kind ``receipt`` (docs/formats.md): it takes the tenant's next
``seq``, its canonical bytes are the RFC 8785 JSON of the whole signed receipt, its leaf
hash is ``SHA-256(0x00 ‖ bytes)`` and it is a leaf of the tenant's tree like any event.

This module owns the storage shapes of those entries, not their content (that is
``ledger.receipts.issuance``):

* ``receipts/tenant=<t>/rcpt-<id>.parquet`` (manifest kind ``receipts``): one row per
  receipt entry: ``receipt_id, seq, recorded_at, timestamp, certified_count, receipt``
  (the canonical JSON text) and ``leaf_hash``.
* ``membership/tenant=<t>/mem-<id>.parquet`` (manifest kind ``membership``): which events
  each receipt certifies, as runs of consecutive event seqs: ``receipt_id, receipt_seq,
  seq_lo, seq_hi`` (inclusive) and ``position`` (the receipt-tree leaf index of
  ``seq_lo``). One row per run rather than per event: a "since last" receipt over ten
  million events is one row, and the uncertified set is an interval complement.

Both are written by the same seal and committed by the same manifest record, and in the
journal a receipt and its membership are one batch, so neither ever exists without the
other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import orjson
import pyarrow as pa

from ledger.model.event import leaf_hash_of, ts_to_us

TS = pa.timestamp("us", tz="UTC")

RECEIPT_SCHEMA = pa.schema([
    ("receipt_id", pa.string()),
    ("seq", pa.int64()),
    ("recorded_at", TS),
    ("timestamp", TS),
    ("certified_count", pa.int64()),
    ("receipt", pa.string()),
    ("leaf_hash", pa.binary(32)),
])

MEMBERSHIP_SCHEMA = pa.schema([
    ("receipt_id", pa.string()),
    ("receipt_seq", pa.int64()),
    ("seq_lo", pa.int64()),
    ("seq_hi", pa.int64()),
    ("position", pa.int64()),
])


@dataclass(frozen=True, slots=True)
class ReceiptEntry:
    """One receipt entry of a tenant's log, as the ledger holds it until it is sealed."""

    tenant: str
    seq: int
    recorded_at_us: int
    timestamp_us: int
    receipt_id: str
    certified_count: int
    canonical: bytes
    leaf_hash: bytes
    ranges: np.ndarray  # shape (k, 2), int64, inclusive runs of event seqs, ascending

    @classmethod
    def of(cls, tenant: str, seq: int, recorded_at_us: int, canonical: bytes,
           ranges: bytes) -> ReceiptEntry:
        """The entry of a receipt's canonical bytes and its packed ranges (as journaled)."""
        receipt = orjson.loads(canonical)
        return cls(
            tenant=tenant, seq=seq, recorded_at_us=recorded_at_us,
            timestamp_us=ts_to_us(datetime.fromisoformat(receipt["timestamp"])),
            receipt_id=receipt["receipt_id"], certified_count=int(receipt["certified_count"]),
            canonical=canonical, leaf_hash=leaf_hash_of(canonical),
            ranges=unpack_ranges(ranges))


def runs_of(seqs: np.ndarray) -> np.ndarray:
    """Inclusive runs ``[[lo, hi], …]`` of consecutive values in an ascending int array."""
    seqs = np.asarray(seqs, dtype=np.int64)
    if seqs.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(seqs) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [seqs.size - 1]))
    return np.stack((seqs[starts], seqs[ends]), axis=1)


def seqs_of(ranges: np.ndarray) -> np.ndarray:
    """Every seq of inclusive runs, ascending (the inverse of ``runs_of``)."""
    ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    if ranges.size == 0:
        return np.empty(0, dtype=np.int64)
    lengths = ranges[:, 1] - ranges[:, 0] + 1
    offsets = np.repeat(ranges[:, 0] - np.concatenate(([0], np.cumsum(lengths)[:-1])),
                        lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def pack_ranges(ranges: np.ndarray) -> bytes:
    return np.ascontiguousarray(ranges, dtype="<i8").tobytes()


def unpack_ranges(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i8").astype(np.int64).reshape(-1, 2)


def receipts_table(entries: list[ReceiptEntry]) -> pa.Table:
    return pa.Table.from_arrays([
        pa.array([e.receipt_id for e in entries], pa.string()),
        pa.array([e.seq for e in entries], pa.int64()),
        pa.array([e.recorded_at_us for e in entries], pa.int64()).cast(TS),
        pa.array([e.timestamp_us for e in entries], pa.int64()).cast(TS),
        pa.array([e.certified_count for e in entries], pa.int64()),
        pa.array([e.canonical.decode() for e in entries], pa.string()),
        pa.array([e.leaf_hash for e in entries], pa.binary(32)),
    ], schema=RECEIPT_SCHEMA)


def membership_table(entries: list[ReceiptEntry]) -> pa.Table:
    ids, rseqs, los, his, positions = [], [], [], [], []
    for e in entries:
        r = e.ranges
        lengths = r[:, 1] - r[:, 0] + 1
        ids.extend([e.receipt_id] * len(r))
        rseqs.append(np.full(len(r), e.seq, dtype=np.int64))
        los.append(r[:, 0])
        his.append(r[:, 1])
        positions.append(np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64))
    return pa.Table.from_arrays([
        pa.array(ids, pa.string()), pa.array(_cat(rseqs)), pa.array(_cat(los)),
        pa.array(_cat(his)), pa.array(_cat(positions)),
    ], schema=MEMBERSHIP_SCHEMA)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def tail_tables(entries: list[ReceiptEntry]) -> tuple[pa.Table, pa.Table]:
    """The unsealed receipt entries as (receipts, membership) tables with a ``tenant``
    column, for the projections."""
    receipts = receipts_table(entries).append_column(
        "tenant", pa.array([e.tenant for e in entries], pa.string()))
    members = membership_table(entries)
    tenants = [e.tenant for e in entries for _ in range(len(e.ranges))]
    return receipts, members.append_column("tenant", pa.array(tenants, pa.string()))
