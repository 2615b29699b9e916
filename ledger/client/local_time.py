"""The Python clients' reading of a date bound: in the machine's local time zone.

A Python program's ``datetime.now()`` and ``date.today()`` are local, so the clients
(``ledger.client.async_api``, and ``LLMRing`` through them) make every bound without a
zone local before it is sent: a naive ``datetime`` (or ISO 8601 text without an offset)
is that wall-clock time in the machine's zone (``TZ`` honoured); a ``date`` (or
``YYYY-MM-DD`` text) is that whole local day: from its local midnight, or, as an end,
up to the next local midnight, so the day is included. The result is an aware
``datetime``, which both transports carry as the same instant. A bound with an offset,
epoch seconds, and text that is not a date are passed on unchanged (the ledger's own
rules and refusals, ``ledger.model.dates.parse_bound``). The HTTP API, which cannot know
the caller's zone, keeps naive = UTC.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

from ledger.errors import RequestError
from ledger.model.dates import RANGE_TEXT

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def local_bound(value: Any, *, end: bool = False, name: str = "date") -> Any:
    """``value`` as the clients send it: an aware ``datetime`` in the local zone for a
    naive datetime or a date (``end``: a date's next local midnight); anything else
    unchanged. A local time that cannot be placed (outside years 1 to 9999) raises
    ``RequestError`` naming ``name``."""
    if isinstance(value, str):
        value = _parsed(value)
    if isinstance(value, datetime):
        return value if value.utcoffset() is not None else _local(value, value, name)
    if isinstance(value, date):
        if end and value == date.max:
            raise RequestError(f"{name}: {value!r} is out of range ({RANGE_TEXT})")
        day = value + timedelta(days=1) if end else value
        return _local(datetime.combine(day, time()), value, name)
    return value


def _parsed(text: str) -> Any:
    """Text as a date or a datetime when it is one; else the text itself."""
    stripped = text.strip()
    try:
        if _DATE_RE.fullmatch(stripped):
            return date.fromisoformat(stripped)
        return datetime.fromisoformat(stripped.replace("z", "Z"))
    except ValueError:
        return text


def _local(naive: datetime, given: Any, name: str) -> datetime:
    try:
        return naive.astimezone()
    except (OverflowError, OSError, ValueError):
        raise RequestError(f"{name}: {given!r} is out of range ({RANGE_TEXT})") from None


__all__ = ["local_bound"]
