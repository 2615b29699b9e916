"""Date bounds: the one parser of "a start or end" for queries, reports, receipt date
ranges and the CLI's ``--start``/``--end``/``--ts`` options.

A bound is a ``date`` or ``YYYY-MM-DD`` text (a whole day: its midnight, or as an end the
next midnight, so the end day is included), a ``datetime`` or ISO 8601 / RFC 3339 text
(that instant; naive = UTC), or epoch seconds (an ``int`` or ``float``). The answer is an
aware UTC ``datetime``; anything else, or a bound outside years 1 to 9999 once made UTC,
is refused with one clear message.

The supported range of every instant the API takes (a bound here, an event's ``ts``, a
receipt's period) is the UTC calendar of years 1 to 9999 (``MIN_INSTANT`` ..
``MAX_INSTANT``): ``utc_instant`` is the one conversion to UTC, and it refuses (None) an
instant whose offset takes it outside, so nothing downstream does arithmetic on one.
``utc_days`` is the UTC days a window can touch, for pruning day-partitioned files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from ledger.errors import RequestError

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME_EXAMPLE = "2025-06-01T09:30:00Z"
MIN_INSTANT = datetime.min.replace(tzinfo=UTC)
MAX_INSTANT = datetime.max.replace(tzinfo=UTC)
RANGE_TEXT = "UTC years 1 to 9999"


def utc_instant(value: datetime) -> datetime | None:
    """``value`` as an aware UTC datetime (naive = UTC); None when its UTC value lies
    outside years 1 to 9999 (an offset took it past either end)."""
    try:
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except OverflowError:
        return None


def utc_days(start: datetime | None, end: datetime | None, *,
             widen: int = 0) -> tuple[date | None, date | None]:
    """The first and last UTC day that ``start <= t < end`` can touch (None: unbounded),
    each widened by ``widen`` days, never past the calendar's ends."""
    def shifted(day: date, days: int) -> date:
        return date.fromordinal(min(max(day.toordinal() + days, 1), date.max.toordinal()))

    first = None if start is None else shifted(start.astimezone(UTC).date(), -widen)
    last = None
    if end is not None:
        end = end.astimezone(UTC)
        last = shifted(end.date(), widen - (end.time() == time()))
    return first, last


def parse_bound(value: Any, *, name: str = "date", end: bool = False, zone: tzinfo = UTC,
                error: Callable[[str], Exception] = RequestError) -> datetime:
    """``value`` as an aware UTC datetime. ``end``: a whole day ends at the next midnight
    (that day is included); ``zone``: where a whole day's midnight is (datetimes without
    an offset are UTC whatever ``zone``). ``name`` starts every message; ``error`` is the
    exception class raised with it (the caller's own refusal: ``ReceiptRequestError``,
    ``CliError`` …)."""
    given = value
    if isinstance(value, str):
        text = value.strip()
        if _DATE_RE.fullmatch(text):
            try:
                value = date.fromisoformat(text)
            except ValueError:
                raise error(f"{name}: {given!r} is not a valid date") from None
        else:
            try:
                value = datetime.fromisoformat(text.replace("z", "Z"))
            except ValueError:
                raise error(f"{name}: {given!r} is not a date (YYYY-MM-DD) or an ISO 8601 "
                            f"datetime (e.g. {DATETIME_EXAMPLE})") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            value = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise error(f"{name}: {given!r} is not epoch seconds within years 1 to "
                        "9999") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        if end and value == date.max:  # its end, the next midnight, is past 9999
            raise error(f"{name}: {given!r} is out of range ({RANGE_TEXT})")
        value = datetime.combine(value + timedelta(days=1) if end else value, time(),
                                 tzinfo=zone)
    if isinstance(value, datetime):
        instant = utc_instant(value)
        if instant is None:
            raise error(f"{name}: {given!r} is out of range ({RANGE_TEXT})")
        return instant
    raise error(f"{name} must be a date, a datetime, ISO 8601 text or epoch seconds, not "
                f"{type(given).__name__}")


__all__ = ["DATETIME_EXAMPLE", "MAX_INSTANT", "MIN_INSTANT", "RANGE_TEXT", "parse_bound",
           "utc_days", "utc_instant"]
