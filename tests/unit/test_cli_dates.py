"""The CLI's one reading of dates (``ledger.cli.context``): the machine's zone as the C
library reads ``TZ`` (UTC when it names no zone), and date options read in a zone — a day
is midnight to midnight there (25 hours when the clocks go back), a datetime without an
offset is a wall-clock time there, one with an offset is that instant."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ledger.cli.context import CliError, Zone, machine_zone, parse_when, window_text

LA = ZoneInfo("America/Los_Angeles")
TOKYO = ZoneInfo("Asia/Tokyo")


def _zoneinfo_file(name: str) -> Path | None:
    for root in zoneinfo.TZPATH:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


@pytest.mark.parametrize(("tz", "name"), [
    ("Asia/Tokyo", "Asia/Tokyo"), (":America/Los_Angeles", "America/Los_Angeles"),
    ("UTC", "UTC"), ("", "UTC"), ("XYZ-3", "UTC"), ("Nowhere/Else", "UTC"),
    ("../../etc/passwd", "UTC"),
])
def test_the_machines_zone_is_tz_when_it_names_one_else_utc(
        monkeypatch: pytest.MonkeyPatch, tz: str, name: str) -> None:
    monkeypatch.setenv("TZ", tz)
    assert machine_zone() == name


def test_tz_as_a_zoneinfo_path_names_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _zoneinfo_file("Asia/Tokyo")
    if path is None:
        pytest.skip("no system zoneinfo directory")
    monkeypatch.setenv("TZ", str(path))
    assert machine_zone() == "Asia/Tokyo"


def test_without_tz_the_machines_zone_is_a_name_python_knows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    assert ZoneInfo(machine_zone()) is not None


def test_a_day_is_midnight_to_midnight_in_the_zone_25_hours_when_clocks_go_back() -> None:
    start = parse_when("2025-11-02", option="--start", zone=LA)
    end = parse_when("2025-11-02", option="--end", zone=LA, end=True)
    assert start == datetime(2025, 11, 2, 7, tzinfo=UTC)
    assert end - start == timedelta(hours=25)
    assert parse_when("2025-11-02", option="--start", zone=TOKYO) == \
        datetime(2025, 11, 1, 15, tzinfo=UTC)


def test_a_datetime_without_offset_is_wall_clock_time_with_one_is_that_instant() -> None:
    assert parse_when("2025-11-02T09:30", option="--ts", zone=TOKYO) == \
        datetime(2025, 11, 2, 0, 30, tzinfo=UTC)
    for zone in (LA, TOKYO, UTC):
        assert parse_when("2025-11-02T09:30:00+09:00", option="--ts", zone=zone) == \
            parse_when("2025-11-02T00:30:00Z", option="--ts", zone=zone) == \
            datetime(2025, 11, 2, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "zone", "message"), [
    ("June 2nd", LA, "--start: 'June 2nd' is not a date"),
    ("2025-02-30", LA, "--start: '2025-02-30' is not a valid date"),
    ("0001-01-01T00:00:00", TOKYO, "--start: '0001-01-01T00:00:00' is out of range"),
    ("0001-01-01", TOKYO, "--start: '0001-01-01' is out of range"),
])
def test_a_bad_or_out_of_range_date_is_a_cli_error_naming_the_option(
        text: str, zone: ZoneInfo, message: str) -> None:
    with pytest.raises(CliError, match="^" + message.replace("(", r"\(")):
        parse_when(text, option="--start", zone=zone)


def test_a_window_is_shown_in_its_zone_whole_days_as_dates() -> None:
    zone = Zone("America/Los_Angeles", LA)
    days = (parse_when("2025-10-01", option="--start", zone=LA),
            parse_when("2025-10-31", option="--end", zone=LA, end=True))
    assert window_text(*days, zone) == "2025-10-01 – 2025-10-31 (America/Los_Angeles)"
    assert window_text(days[0], None, zone) == "2025-10-01 – now (America/Los_Angeles)"
    assert window_text(datetime(2025, 10, 1, 16, tzinfo=UTC),
                       datetime(2025, 10, 2, 0, tzinfo=UTC), zone) == \
        "2025-10-01 09:00:00-07:00 up to 2025-10-01 17:00:00-07:00 (America/Los_Angeles)"
