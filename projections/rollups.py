"""Rollups: calls, tokens and cost grouped by model, alias, provider, calendar periods
(day, week, month) in an IANA time zone, and metadata keys (``meta.<key>``, or a bare key
that is not a built-in name: ``ledger.model.dimensions``; events without the key form one
group whose key is None).

Grouping by a calendar period is done in two stages, so that the time-zone conversion
(slow per row) runs once per bucket instead of once per event: first the events are
summed per UTC bucket (integer arithmetic on the timestamp), then each bucket is converted
to local time and the buckets are summed per period. This is exact when every UTC offset
the zone has had since 2000 (the earliest ``ts`` the ledger accepts), and every instant
its offset changed, is a multiple of the bucket: then a bucket never straddles a local
midnight. ``bucket_seconds`` finds the largest such bucket of an hour, half an hour, a
quarter hour or a minute for the zone (an hour for most zones: four times fewer groups
in the first stage than quarter hours).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.errors import RollupError
from ledger.model.dates import utc_days
from ledger.model.dimensions import (
    DimensionNameError,
    column_name,
    metadata_key,
    quote_ident,
    where_sql,
)
from projections.snapshot import Snapshot, cursor, run

DIMENSIONS = {
    "model": "model",
    "alias": "alias",
    "provider": "provider",
    "kind": "kind",
    "cost_source": "cost_source",
    "day": "strftime(timezone($tz, {t}), '%Y-%m-%d')",
    "week": "strftime(date_trunc('week', timezone($tz, {t})), '%G-W%V')",
    "month": "strftime(timezone($tz, {t}), '%Y-%m')",
}
PERIODS = ("day", "week", "month")
BUCKETS = (3600, 1800, 900, 60)  # stage-one bucket sizes tried, in seconds


def bucket_seconds(tz: str) -> int:
    """The largest of ``BUCKETS`` that divides every UTC offset of ``tz`` since 2000 and
    every instant its offset changed (found day by day, then to the second)."""
    return _bucket_seconds(tz, datetime.now(UTC).year + 2)


@functools.lru_cache(maxsize=64)
def _bucket_seconds(tz: str, until_year: int) -> int:
    zone = ZoneInfo(tz)

    def offset(t: int) -> int:
        off = datetime.fromtimestamp(t, zone).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    t = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(until_year, 1, 1, tzinfo=UTC).timestamp())
    current = offset(t)
    offsets, changes = {current}, []
    while t < end:
        nxt = t + 86_400
        if offset(nxt) != current:
            lo, hi = t, nxt  # offset(lo) == current != offset(hi): find the first second
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == current else (lo, mid)
            current = offset(hi)
            offsets.add(current)
            changes.append(hi)
        t = nxt
    for size in BUCKETS:
        if all(v % size == 0 for v in (*offsets, *changes)):
            return size
    return 1


@dataclass(frozen=True, slots=True)
class RollupRow:
    key: dict[str, str]
    calls: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    unpriced: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**self.key, "calls": self.calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "total_tokens": self.total_tokens,
                "cost_nanos": self.cost_nanos, "cost": self.cost_nanos / 1e9,
                "unpriced_calls": self.unpriced}


@functools.cache
def query_timezones() -> frozenset[str]:
    """The time zone names DuckDB (the query engine) knows, read once."""
    rows = cursor().execute("SELECT name FROM pg_timezone_names()").fetchall()
    return frozenset(name for (name,) in rows)


def check_timezone(tz: str) -> str:
    """``tz`` if both Python's zone database and the query engine know it (a zone only one
    of them has, such as ``right/UTC`` or ``posix/…``, cannot group a report), else raise
    ``RollupError`` naming it."""
    try:
        known = (isinstance(tz, str) and tz in query_timezones()
                 and ZoneInfo(tz) is not None)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        known = False
    if not known:
        raise RollupError(f"unknown time zone {tz!r}: use an IANA name such as "
                          "'UTC' or 'Europe/Madrid'")
    return tz


def dimension_keys(by: list[str]) -> dict[str, str]:
    """The metadata key of each metadata dimension of ``by`` (``RollupError`` naming a
    bad name)."""
    keys = {}
    for d in by:
        try:
            key = metadata_key(d)
        except DimensionNameError as exc:
            raise RollupError(f"cannot group by {d!r}: {exc}; choose from "
                              f"{', '.join(DIMENSIONS)} or a metadata key "
                              "(meta.<key>)") from None
        if key is not None:
            keys[d] = key
    if len(set(keys.values())) != len(keys):
        raise RollupError("by: each metadata key may be named once")
    return keys


def rollup(snapshot: Snapshot, tenant: str, by: list[str], *, tz: str = "UTC",
           start: datetime | None = None, end: datetime | None = None,
           where: dict[str, str] | None = None) -> list[RollupRow]:
    """Aggregate the tenant's calls grouped by ``by`` (any of DIMENSIONS, or metadata
    keys), optionally only those whose metadata matches ``where``
    (``ledger.model.dimensions.parse_where``)."""
    meta = dimension_keys(by)
    where = where or {}
    check_timezone(tz)
    # No filter on ``kind``: event segments and the tail hold only usage and conversation
    # events (the kind is validated at append), and a per-row test cost ~10% of a rollup.
    clauses, params = ["TRUE"], {"tz": tz}
    if start is not None:
        clauses.append("ts >= $start")
        params["start"] = start.astimezone(UTC)
    if end is not None:
        clauses.append("ts < $end")
        params["end"] = end.astimezone(UTC)
    columns = {k: quote_ident(column_name(k)) for k in (*meta.values(), *where)}
    if where:
        clauses.append(where_sql(where, columns))
    where_text = " AND ".join(clauses)
    exprs = {d: (columns[meta[d]] if d in meta else DIMENSIONS[d]) for d in by}
    group = ", ".join(f"k{i}" for i in range(len(by)))
    sums = ("count(*)", "sum(input_tokens)", "sum(output_tokens)", "sum(cost_nanos)",
            "count(*) FILTER (WHERE cost_source = 'unpriced')")
    if any(d in PERIODS for d in by):
        plain = [(i, d) for i, d in enumerate(by) if d not in PERIODS]
        inner_keys = [f"{exprs[d]} AS p{i}" for i, d in plain]
        size = bucket_seconds(tz)
        inner_keys.append(f"epoch_us(ts) // {size * 1_000_000} AS bucket")
        inner = (f"SELECT {', '.join(inner_keys)}, "
                 + ", ".join(f"{x} AS s{j}" for j, x in enumerate(sums))
                 + f" FROM {{src}} WHERE {where_text} GROUP BY ALL")
        bucket_ts = f"to_timestamp(bucket * {size})"
        keys = [(DIMENSIONS[d].format(t=bucket_ts) if d in PERIODS else f"p{i}")
                + f" AS k{i}" for i, d in enumerate(by)]
        outer = ", ".join(f"sum(s{j})::BIGINT" for j in range(len(sums)))
        sql = (f"SELECT {', '.join(keys)}, {outer} FROM ({inner}) "
               f"GROUP BY {group} ORDER BY {group}")
    else:
        keys = [f"{exprs[d]} AS k{i}" for i, d in enumerate(by)]
        select = ", ".join([*keys, *sums])
        sql = f"SELECT {select} FROM {{src}} WHERE {where_text}"
        if by:
            sql += f" GROUP BY {group} ORDER BY {group}"
    if "$tz" not in sql:
        params.pop("tz")
    # Days are UTC in the partition paths: widen by a day on each side for any zone.
    first_day, last_day = utc_days(start, end, widen=1)
    rows = run(snapshot, tenant, sql, params, first_day=first_day, last_day=last_day,
               keys=tuple(dict.fromkeys((*meta.values(), *where))))
    out = []
    for row in rows or []:
        n = len(by)
        calls = int(row[n])
        if calls == 0:
            continue
        out.append(RollupRow(
            key={d: row[i] for i, d in enumerate(by)}, calls=calls,
            input_tokens=int(row[n + 1] or 0), output_tokens=int(row[n + 2] or 0),
            cost_nanos=int(row[n + 3] or 0), unpriced=int(row[n + 4] or 0)))
    return out
