"""``ledger.model.dates.parse_bound``: the one parser of date bounds (queries, receipt
date ranges, the CLI's options): the forms it accepts, the inclusive end of a whole day,
and clean refusals, out-of-range bounds included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ledger.cli.context import CliError
from ledger.errors import ReceiptRequestError, RequestError
from ledger.model.dates import MAX_INSTANT, MIN_INSTANT, parse_bound, utc_days, utc_instant

OCT1 = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2025-10-01", OCT1),
    (" 2025-10-01 ", OCT1),
    (date(2025, 10, 1), OCT1),
    ("2025-10-01T09:30:00Z", OCT1 + timedelta(hours=9, minutes=30)),
    ("2025-10-01t09:30:00z", OCT1 + timedelta(hours=9, minutes=30)),
    ("2025-10-01T09:30:00", OCT1 + timedelta(hours=9, minutes=30)),  # naive = UTC
    ("2025-10-01T11:30:00+02:00", OCT1 + timedelta(hours=9, minutes=30)),
    ("2025-10-01 09:30:00.250000+00:00", OCT1 + timedelta(hours=9, minutes=30,
                                                          milliseconds=250)),
    (datetime(2025, 10, 1, 9, 30), OCT1 + timedelta(hours=9, minutes=30)),
    (datetime(2025, 10, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5))),
     OCT1 + timedelta(hours=9, minutes=30)),
    (1759276800, OCT1),  # epoch seconds
    (1759276800.5, OCT1 + timedelta(milliseconds=500)),
])
def test_accepted_forms_give_an_aware_utc_instant(value: object, expected: datetime) -> None:
    got = parse_bound(value)
    assert got == expected and got.tzinfo is UTC


def test_a_whole_day_as_an_end_includes_that_day() -> None:
    assert parse_bound("2025-10-01", end=True) == OCT1 + timedelta(days=1)
    assert parse_bound(date(2025, 10, 1), end=True) == OCT1 + timedelta(days=1)
    # An instant is that instant, also as an end.
    assert parse_bound("2025-10-01T00:00:00Z", end=True) == OCT1


def test_a_whole_day_starts_at_midnight_in_the_zone_given() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert parse_bound("2025-10-01", zone=paris) == OCT1 - timedelta(hours=2)
    assert parse_bound("2025-10-01", zone=paris, end=True) == OCT1 + timedelta(hours=22)
    # a datetime without an offset is UTC whatever the zone
    assert parse_bound("2025-10-01T00:00:00", zone=paris) == OCT1


@pytest.mark.parametrize(("value", "message"), [
    ("2025-13-45", "start: '2025-13-45' is not a valid date"),
    ("June 2nd", "start: 'June 2nd' is not a date (YYYY-MM-DD) or an ISO 8601 datetime"),
    ("01/10/2025", "start: '01/10/2025' is not a date (YYYY-MM-DD)"),
    ("", "start: '' is not a date"),
    (["2025-10-01"], "start must be a date, a datetime, ISO 8601 text or epoch seconds, "
                     "not list"),
    (True, "start must be a date, a datetime, ISO 8601 text or epoch seconds, not bool"),
    (None, "start must be a date, a datetime, ISO 8601 text or epoch seconds, not "
           "NoneType"),
    (1e20, "start: 1e+20 is not epoch seconds within years 1 to 9999"),
    (float("nan"), "start: nan is not epoch seconds"),
])
def test_refusals_name_the_bound(value: object, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_bound(value, name="start")
    assert str(caught.value).startswith(message)
    assert caught.value.status == 400


@pytest.mark.parametrize(("value", "end", "zone"), [
    ("9999-12-31", True, UTC),  # the next midnight does not exist
    (date(9999, 12, 31), True, UTC),
    ("0001-01-01T00:00:00+05:00", False, UTC),  # before year 1 once made UTC
    ("9999-12-31T23:00:00-05:00", False, UTC),  # after 9999 once made UTC
    ("0001-01-01", False, ZoneInfo("Asia/Tokyo")),
    ("9999-12-31", True, ZoneInfo("America/New_York")),
])
def test_bounds_near_year_1_or_9999_are_refused_cleanly(value: object, end: bool,
                                                         zone: object) -> None:
    with pytest.raises(RequestError, match="out of range"):
        parse_bound(value, name="end", end=end, zone=zone)  # type: ignore[arg-type]


def test_the_extreme_bounds_that_exist_are_accepted() -> None:
    assert parse_bound("0001-01-01") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_bound("9999-12-31") == datetime(9999, 12, 31, tzinfo=UTC)
    assert parse_bound("9999-12-31T23:59:59.999999Z", end=True).year == 9999


def test_each_caller_gets_its_own_refusal() -> None:
    with pytest.raises(ReceiptRequestError, match=r"^end_date: 'x' is not a date"):
        parse_bound("x", name="end_date", error=ReceiptRequestError)
    with pytest.raises(CliError, match=r"^--start: 'x' is not a date"):
        parse_bound("x", name="--start", error=CliError)


def test_the_one_conversion_to_utc_refuses_what_leaves_the_calendar() -> None:
    """``utc_instant`` is how every accepted instant becomes UTC: None (refused) when an
    offset takes it past either end, never ``OverflowError``."""
    plus_one = timezone(timedelta(hours=1))
    assert utc_instant(datetime(1, 1, 1, tzinfo=plus_one)) is None
    assert utc_instant(datetime(9999, 12, 31, 23, 30, tzinfo=timezone(-timedelta(hours=1)))
                       ) is None
    assert utc_instant(datetime(1, 1, 1, 1, tzinfo=plus_one)) == MIN_INSTANT
    assert utc_instant(datetime(9999, 12, 31, 23, 59, 59, 999999)) == MAX_INSTANT


@pytest.mark.parametrize(("start", "end", "widen", "days"), [
    (MIN_INSTANT, MAX_INSTANT, 1, (date.min, date.max)),
    (None, MIN_INSTANT, 1, (None, date.min)),
    (None, MIN_INSTANT, 0, (None, date.min)),
    (datetime(2025, 3, 1, 10, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC), 0,
     (date(2025, 3, 1), date(2025, 3, 1))),
    (datetime(2025, 3, 1, 10, tzinfo=UTC), datetime(2025, 3, 2, 0, 0, 1, tzinfo=UTC), 1,
     (date(2025, 2, 28), date(2025, 3, 3))),
])
def test_the_days_a_window_touches_stop_at_the_calendar_ends(start: datetime | None,
                                                             end: datetime | None,
                                                             widen: int,
                                                             days: tuple) -> None:
    assert utc_days(start, end, widen=widen) == days
