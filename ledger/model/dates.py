"""Date bounds: the one parser of "a start or end" for queries, reports, receipt date
ranges and the CLI's ``--start``/``--end``/``--ts`` options.

A bound is a ``date`` or ``YYYY-MM-DD`` text (a whole day: its midnight, or as an end the
next midnight, so the end day is included), a ``datetime`` or ISO 8601 / RFC 3339 text
(that instant; naive = UTC), or epoch seconds (an ``int`` or ``float``). The answer is an
aware UTC ``datetime``; anything else, or a bound outside years 1 to 9999 once made UTC,
is refused with one clear message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from ledger.errors import RequestError

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME_EXAMPLE = "2025-06-01T09:30:00Z"


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
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                return value.replace(tzinfo=UTC)
            return value.astimezone(UTC)
        if isinstance(value, date):
            day = value + timedelta(days=1) if end else value
            return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    except OverflowError:
        raise error(f"{name}: {given!r} is out of range (UTC years 1 to 9999)") from None
    raise error(f"{name} must be a date, a datetime, ISO 8601 text or epoch seconds, not "
                f"{type(given).__name__}")


__all__ = ["DATETIME_EXAMPLE", "parse_bound"]
