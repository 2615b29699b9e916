"""Event listings and counts, paginated in SQL.

The log is gap-free (``seq`` runs 0..n-1 per tenant), so an unfiltered page in ``seq``
order is a known seq range: the query names it, and DuckDB skips every segment and row
group outside it using the manifest's seq ranges and the Parquet statistics. Receipt
entries share the seq space (docs/formats.md) but are not events: the few seqs they hold are
skipped when the range is computed, and they are never listed or counted here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from ledger.model.dates import utc_days
from ledger.model.event import Event
from ledger.model.schema import ROW_FIELDS
from projections.snapshot import Snapshot, run

_COLUMNS = ", ".join(
    f"epoch_us({c}) AS {c}" if c in ("ts", "recorded_at") else c for c in ROW_FIELDS)
ENTRY_KINDS = "kind IN ('usage', 'conversation')"


def _window(start: datetime | None, end: datetime | None) -> tuple[str, list, dict]:
    clauses, params = [], []
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start.astimezone(UTC))
    if end is not None:
        clauses.append("ts < ?")
        params.append(end.astimezone(UTC))
    first_day, last_day = utc_days(start, end)
    prune = {"first_day": first_day, "last_day": last_day}
    return " AND ".join(clauses) or "TRUE", params, prune


def list_events(snapshot: Snapshot, tenant: str, *, start: datetime | None = None,
                end: datetime | None = None, limit: int = 100, offset: int = 0,
                order: str = "seq") -> list[Event]:
    """One page of the tenant's events with ``start <= ts < end``; ``order`` is ``seq``
    (oldest first) or ``-seq`` (newest first)."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must be >= 0")
    if order not in ("seq", "-seq"):
        raise ValueError("order must be 'seq' or '-seq'")
    where, params, prune = _window(start, end)
    direction = "DESC" if order == "-seq" else "ASC"
    seq_range: dict = {}
    if start is None and end is None:
        receipts = snapshot.receipt_seqs.get(tenant, [])
        size = snapshot.sizes.get(tenant, 0) - len(receipts)
        lo, hi = (offset, offset + limit - 1) if order == "seq" else (
            size - offset - limit, size - offset - 1)
        lo, hi = event_seq(max(lo, 0), receipts), event_seq(hi, receipts)
        seq_range = {"seq_lo": lo, "seq_hi": hi}
        where += f" AND seq BETWEEN {lo} AND {hi}"
        offset_sql = 0
    else:
        offset_sql = offset
    sql = (f"SELECT {_COLUMNS} FROM {{src}} WHERE {where} ORDER BY seq {direction} "
           f"LIMIT {int(limit)} OFFSET {int(offset_sql)}")
    rows = run(snapshot, tenant, sql, params, **prune, **seq_range)
    return [Event.from_row(dict(zip(ROW_FIELDS, r, strict=True)), tenant) for r in rows or []]


def event_seq(position: int, receipt_seqs: list[int]) -> int:
    """The seq of the event at ``position`` (0-based, counting events only) in a log whose
    receipt entries hold ``receipt_seqs`` (ascending)."""
    if position < 0:
        return position
    seq = position
    for r in receipt_seqs:
        if r > seq:
            break
        seq += 1
    return seq


def by_seq(snapshot: Snapshot, tenant: str, seqs: list[int], *,
           day: date | None = None) -> list[Event]:
    """Events with the given seqs, in seq order; ``day``: the UTC day of all their ``ts``
    when known (only that day's segments are read)."""
    if not seqs:
        return []
    lo, hi = min(seqs), max(seqs)
    wanted = ", ".join(str(int(s)) for s in seqs)
    sql = f"SELECT {_COLUMNS} FROM {{src}} WHERE seq IN ({wanted}) ORDER BY seq"
    rows = run(snapshot, tenant, sql, seq_lo=lo, seq_hi=hi, first_day=day, last_day=day)
    return [Event.from_row(dict(zip(ROW_FIELDS, r, strict=True)), tenant) for r in rows or []]


def count_events(snapshot: Snapshot, tenant: str, *, start: datetime | None = None,
                 end: datetime | None = None) -> int:
    if start is None and end is None:
        return snapshot.sizes.get(tenant, 0) - len(snapshot.receipt_seqs.get(tenant, []))
    where, params, prune = _window(start, end)
    rows = run(snapshot, tenant, f"SELECT count(*) FROM {{src}} WHERE {where}", params, **prune)
    return int(rows[0][0]) if rows else 0
