"""Calendar periods in a time zone: the day, the ISO week (Monday to Monday) or the month
that holds an instant, as the UTC instants where it starts and ends.

A period starts at local midnight of its first day in the zone and ends at local
midnight of the day after its last, so its length follows the zone's clock: a day is 23
or 25 hours across a daylight-saving change, and a month is as long as the month. A
midnight the zone skips (a change at 00:00) is read as the instant of the change; a
midnight it repeats as its first occurrence. Budgets use this
(``ledger.api.budgets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Period:
    """One calendar period: ``kind`` (day, week or month) in zone ``tz``, from ``start``
    (inclusive) to ``end`` (exclusive), both aware UTC datetimes."""

    kind: str
    tz: str
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def local(self) -> tuple[str, str]:
        """``start`` and ``end`` as local ISO 8601 text with the zone's offset
        (``2026-03-08T00:00:00-08:00``)."""
        zone = ZoneInfo(self.tz)
        return (self.start.astimezone(zone).isoformat(),
                self.end.astimezone(zone).isoformat())

    def as_json(self) -> dict[str, str]:
        start, end = self.local()
        return {"start": start, "end": end, "tz": self.tz}


def _first_day(kind: str, day: date) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {kind!r}")


def _next_first_day(kind: str, first: date) -> date:
    if kind == "day":
        return first + timedelta(days=1)
    if kind == "week":
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant of local midnight starting ``day`` (fold 0: a skipped midnight is
    the instant of the change, a repeated one its first occurrence)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def period_of(kind: str, tz: str, instant: datetime) -> Period:
    """The ``kind`` period of zone ``tz`` that holds ``instant`` (aware)."""
    zone = ZoneInfo(tz)
    first = _first_day(kind, instant.astimezone(zone).date())
    start = _midnight(first, zone)
    end = _midnight(_next_first_day(kind, first), zone)
    if instant >= end:  # the hour before a repeated midnight, its second time round
        first, start = _next_first_day(kind, first), end
        end = _midnight(_next_first_day(kind, first), zone)
    return Period(kind, tz, start, end)


__all__ = ["PERIODS", "Period", "period_of"]
