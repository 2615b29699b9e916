"""Calendar periods in a time zone (``ledger.model.periods``): a day, an ISO week or a month
runs from local midnight to local midnight, so across a daylight-saving change a day is
23 or 25 hours, months end where the calendar says (leap years included), weeks start
on Monday, and the periods of a zone tile time: every instant is in exactly one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.model.periods import period_of


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_los_angeles_day_across_the_spring_change_is_23_hours() -> None:
    p = period_of("day", "America/Los_Angeles", utc(2026, 3, 8, 20))  # noon PDT
    assert (p.start, p.end) == (utc(2026, 3, 8, 8), utc(2026, 3, 9, 7))
    assert p.end - p.start == timedelta(hours=23)
    assert p.as_json() == {"start": "2026-03-08T00:00:00-08:00",
                           "end": "2026-03-09T00:00:00-07:00", "tz": "America/Los_Angeles"}


def test_a_los_angeles_day_across_the_autumn_change_is_25_hours() -> None:
    p = period_of("day", "America/Los_Angeles", utc(2026, 11, 1, 9, 30))  # 01:30 twice
    assert (p.start, p.end) == (utc(2026, 11, 1, 7), utc(2026, 11, 2, 8))
    assert p.end - p.start == timedelta(hours=25)


def test_a_los_angeles_evening_is_still_that_day_though_utc_has_moved_on() -> None:
    p = period_of("day", "America/Los_Angeles", utc(2026, 12, 5, 7, 59))  # 23:59 PST
    assert p.local()[0] == "2026-12-04T00:00:00-08:00"
    assert period_of("day", "America/Los_Angeles", utc(2026, 12, 5, 8)).start == p.end


def test_a_los_angeles_month_across_the_change_and_its_week() -> None:
    month = period_of("month", "America/Los_Angeles", utc(2026, 3, 15))
    assert (month.start, month.end) == (utc(2026, 3, 1, 8), utc(2026, 4, 1, 7))
    week = period_of("week", "America/Los_Angeles", utc(2026, 3, 8, 20))  # a Sunday
    assert week.local() == ("2026-03-02T00:00:00-08:00", "2026-03-09T00:00:00-07:00")
    assert week.end - week.start == timedelta(days=7, hours=-1)


@pytest.mark.parametrize(("instant", "start", "end"), [
    # 2026-01-31T15:00Z is 1 February 00:00 in Tokyo: February already.
    (utc(2026, 1, 31, 15), utc(2026, 1, 31, 15), utc(2026, 2, 28, 15)),
    (utc(2026, 1, 31, 14, 59, 59), utc(2025, 12, 31, 15), utc(2026, 1, 31, 15)),
    (utc(2028, 2, 10), utc(2028, 1, 31, 15), utc(2028, 2, 29, 15)),  # a leap February
    (utc(2026, 12, 31, 15), utc(2026, 12, 31, 15), utc(2027, 1, 31, 15)),  # a new year
    (utc(2026, 4, 30, 14, 59), utc(2026, 3, 31, 15), utc(2026, 4, 30, 15)),  # 30 days
])
def test_tokyo_months_end_on_the_calendars_last_day(instant: datetime, start: datetime,
                                                    end: datetime) -> None:
    p = period_of("month", "Asia/Tokyo", instant)
    assert (p.start, p.end) == (start, end) and p.contains(instant)


def test_weeks_start_on_monday() -> None:
    p = period_of("week", "Asia/Tokyo", utc(2026, 12, 5, 12))  # Saturday in Tokyo
    assert p.local() == ("2026-11-30T00:00:00+09:00", "2026-12-07T00:00:00+09:00")
    assert p.start.astimezone(UTC).weekday() == 6  # Sunday 15:00 UTC
    sunday_night = period_of("week", "UTC", utc(2026, 12, 6, 23, 59))
    assert sunday_night.start == utc(2026, 11, 30)
    assert period_of("week", "UTC", utc(2026, 12, 7)).start == utc(2026, 12, 7)


def test_the_end_belongs_to_the_next_period() -> None:
    p = period_of("day", "UTC", utc(2026, 12, 5, 12))
    assert p.contains(p.start) and not p.contains(p.end)
    assert period_of("day", "UTC", p.end).start == p.end


@pytest.mark.parametrize("tz", ["America/Los_Angeles", "Asia/Tokyo", "Europe/Paris",
                                "America/Santiago", "Australia/Lord_Howe",
                                "Pacific/Apia"])
@pytest.mark.parametrize("kind", ["day", "week", "month"])
def test_periods_tile_time(tz: str, kind: str) -> None:
    """Every instant (each half hour of two years) is in the period computed for it, and
    each period starts where the one before ends, in zones with a midnight change
    (Santiago), half-hour changes (Lord Howe) and a skipped day (Apia, 2011)."""
    t = utc(2010, 12, 1) if tz == "Pacific/Apia" else utc(2025, 6, 1)
    p = period_of(kind, tz, t)
    for _ in range(2 * 24 * 365 * 2):
        assert p.contains(t), (kind, tz, t, p)
        t += timedelta(minutes=30)
        if t >= p.end:
            q = period_of(kind, tz, t)
            assert q.start == p.end, (kind, tz, p, q)
            p = q
