"""Rollups: calls, tokens and cost grouped by model, alias, provider and calendar periods
(day, week, month) in an IANA time zone."""

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
    "day": "strftime(timezone($tz, ts), '%Y-%m-%d')",
    "week": "strftime(date_trunc('week', timezone($tz, ts)), '%G-W%V')",
    "month": "strftime(timezone($tz, ts), '%Y-%m')",
}


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
    keys = [f"{DIMENSIONS[d]} AS k{i}" for i, d in enumerate(by)]
    group = ", ".join(f"k{i}" for i in range(len(by)))
    select = ", ".join([*keys, "count(*)", "sum(input_tokens)", "sum(output_tokens)",
                        "sum(cost_nanos)", "count(*) FILTER (WHERE cost_source = 'unpriced')"])
    sql = f"SELECT {select} FROM {{src}} WHERE {' AND '.join(clauses)}"
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
