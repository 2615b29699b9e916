"""Rollups: calls, tokens and cost grouped by model, alias, provider and calendar periods
(day, week, month) in an IANA time zone.

Grouping by a calendar period is done in two stages, so that the time-zone conversion
(slow per row) runs once per 15-minute bucket instead of once per event: first the
events are summed per UTC quarter hour (integer arithmetic on the timestamp), then each
bucket is converted to local time and the buckets are summed per period. This is exact
because every UTC offset and every offset change of the IANA database since 2000 (the
earliest ``ts`` the ledger accepts) falls on a quarter hour, so a quarter hour never
straddles a local midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from projections.events import ENTRY_KINDS
from projections.snapshot import Snapshot, run

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
BUCKET_SECONDS = 900  # stage-one buckets: UTC quarter hours


class RollupError(ValueError):
    pass


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


def check_timezone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RollupError(f"unknown time zone {tz!r}: use an IANA name such as "
                          "'UTC' or 'Europe/Madrid'") from None
    return tz


def rollup(snapshot: Snapshot, tenant: str, by: list[str], *, tz: str = "UTC",
           start: datetime | None = None, end: datetime | None = None) -> list[RollupRow]:
    """Aggregate the tenant's calls grouped by ``by`` (any of DIMENSIONS)."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise RollupError(f"cannot group by {', '.join(unknown)}; choose from "
                          f"{', '.join(DIMENSIONS)}")
    check_timezone(tz)
    clauses, params = [ENTRY_KINDS], {"tz": tz}
    if start is not None:
        clauses.append("ts >= $start")
        params["start"] = start.astimezone(UTC)
    if end is not None:
        clauses.append("ts < $end")
        params["end"] = end.astimezone(UTC)
    where = " AND ".join(clauses)
    group = ", ".join(f"k{i}" for i in range(len(by)))
    sums = ("count(*)", "sum(input_tokens)", "sum(output_tokens)", "sum(cost_nanos)",
            "count(*) FILTER (WHERE cost_source = 'unpriced')")
    if any(d in PERIODS for d in by):
        plain = [d for d in by if d not in PERIODS]
        inner_keys = [f"{DIMENSIONS[d]} AS {d}" for d in plain]
        inner_keys.append(f"epoch_us(ts) // {BUCKET_SECONDS * 1_000_000} AS bucket")
        inner = (f"SELECT {', '.join(inner_keys)}, "
                 + ", ".join(f"{x} AS s{j}" for j, x in enumerate(sums))
                 + f" FROM {{src}} WHERE {where} GROUP BY ALL")
        bucket_ts = f"to_timestamp(bucket * {BUCKET_SECONDS})"
        keys = [(DIMENSIONS[d].format(t=bucket_ts) if d in PERIODS else d) + f" AS k{i}"
                for i, d in enumerate(by)]
        outer = ", ".join(f"sum(s{j})::BIGINT" for j in range(len(sums)))
        sql = (f"SELECT {', '.join(keys)}, {outer} FROM ({inner}) "
               f"GROUP BY {group} ORDER BY {group}")
    else:
        keys = [f"{DIMENSIONS[d]} AS k{i}" for i, d in enumerate(by)]
        select = ", ".join([*keys, *sums])
        sql = f"SELECT {select} FROM {{src}} WHERE {where}"
        if by:
            sql += f" GROUP BY {group} ORDER BY {group}"
    if "$tz" not in sql:
        params.pop("tz")
    # Days are UTC in the partition paths: widen by a day on each side for any zone.
    prune = {
        "first_day": (start.astimezone(UTC) - timedelta(days=1)).date() if start else None,
        "last_day": (end.astimezone(UTC) + timedelta(days=1)).date() if end else None,
    }
    rows = run(snapshot, tenant, sql, params, **prune)  # type: ignore[arg-type]
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
