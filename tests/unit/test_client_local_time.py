"""The Python clients read dates in the machine's local zone (``TZ``), as
``datetime.now()`` does: a naive datetime is local wall-clock time, a date is a whole
local day (an end includes it), and both transports are sent the same instant. The HTTP
API keeps naive = UTC."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ledger.api import operations as ops
from ledger.client.async_api import EmbeddedClient
from ledger.client.local_time import local_bound
from ledger.errors import RequestError
from ledger.model.dates import parse_bound

CALL = {"provider": "openai", "model": "gpt-4o-mini", "alias": "fast", "input_tokens": 10,
        "output_tokens": 5}


@pytest.fixture
def zone() -> Iterator[Any]:
    """Set the process's ``TZ`` (``zone("Asia/Tokyo")``), restored afterwards."""
    before = os.environ.get("TZ")

    def set_zone(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("name,offset", [("Asia/Tokyo", 9), ("UTC", 0),
                                         ("America/Los_Angeles", -8)])
def test_a_naive_datetime_is_local_wall_clock_time(zone: Any, name: str,
                                                   offset: int) -> None:
    zone(name)
    sent = local_bound(datetime(2025, 12, 1, 9, 30))
    assert sent.utcoffset() == timedelta(hours=offset)
    assert sent == utc(2025, 12, 1, 9, 30) - timedelta(hours=offset)
    assert local_bound("2025-12-01T09:30:00") == sent  # naive ISO text: the same


def test_a_date_is_the_whole_local_day_and_an_end_includes_it(zone: Any) -> None:
    zone("Asia/Tokyo")
    assert local_bound(date(2025, 10, 1)) == utc(2025, 9, 30, 15)
    assert local_bound(date(2025, 10, 31), end=True) == utc(2025, 10, 31, 15)
    assert local_bound("2025-10-31", end=True) == utc(2025, 10, 31, 15)


def test_a_local_day_follows_daylight_saving_time(zone: Any) -> None:
    """9 March 2025 in Los Angeles has 23 hours: PST midnight to PDT midnight."""
    zone("America/Los_Angeles")
    start = local_bound(date(2025, 3, 9))
    end = local_bound(date(2025, 3, 9), end=True)
    assert (start, end) == (utc(2025, 3, 9, 8), utc(2025, 3, 10, 7))
    assert end - start == timedelta(hours=23)


def test_bounds_with_a_zone_epoch_seconds_and_other_text_pass_unchanged(zone: Any) -> None:
    zone("Asia/Tokyo")
    aware = datetime(2025, 10, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert local_bound(aware) is aware
    assert local_bound("2025-10-01T00:00:00Z") == utc(2025, 10, 1)
    assert local_bound(1_700_000_000) == 1_700_000_000
    assert local_bound("not-a-date") == "not-a-date"  # the ledger refuses it by name
    assert local_bound(None) is None


def test_a_day_past_the_calendar_is_a_clear_error(zone: Any) -> None:
    zone("UTC")
    with pytest.raises(RequestError, match=r"end_date: .* out of range"):
        local_bound(date.max, end=True, name="end_date")


def test_both_transports_get_the_same_instant(zone: Any) -> None:
    """Over HTTP the bound travels as ISO text with its offset; locally as the aware
    datetime: the ledger reads the same UTC instant from either."""
    zone("America/Los_Angeles")
    sent = local_bound(datetime(2025, 10, 31, 23, 30))
    _, _, body = ops.PREVIEW_RECEIPT.http_request({"start_date": sent})
    assert body["start_date"] == "2025-10-31T23:30:00-07:00"
    assert parse_bound(body["start_date"]) == parse_bound(sent) == utc(2025, 11, 1, 6, 30)


@pytest.mark.parametrize("name", ["Asia/Tokyo", "America/Los_Angeles"])
def test_the_embedded_client_selects_the_local_day(zone: Any, tmp_path: Path,
                                                   name: str) -> None:
    """A call at 23:30 local on 31 October is in October's local days, whatever its
    UTC date, and one at 00:30 local on 1 November is not."""
    zone(name)
    local = datetime(2025, 10, 31, 23, 30).astimezone()
    inside, outside = local, local + timedelta(hours=1)

    async def main() -> tuple[Any, Any, Any]:
        async with EmbeddedClient(tmp_path / "data", "acme") as client:
            await client.log_batch([{**CALL, "ts": t.isoformat(), "cost": c}
                                    for t, c in ((inside, 1.0), (outside, 2.0))])
            by_date = await client.preview_receipt(start_date=date(2025, 10, 1),
                                                   end_date=date(2025, 10, 31))
            by_naive = await client.preview_receipt(start_date=datetime(2025, 10, 1),
                                                    end_date=datetime(2025, 11, 1))
            listed = await client.list_logs(start=date(2025, 11, 1), end=date(2025, 11, 1))
            return by_date, by_naive, listed

    by_date, by_naive, listed = asyncio.run(main())
    assert by_date["total_logs"] == by_naive["total_logs"] == 1
    assert by_date["total_cost"] == by_naive["total_cost"] == 1.0
    assert listed["total"] == 1 and listed["logs"][0]["cost_nanos"] == 2_000_000_000
