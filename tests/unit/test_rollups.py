"""Rollups by calendar period equal a direct computation with ``zoneinfo``, in zones
with half- and quarter-hour offsets and across daylight-saving changes."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.errors import RollupError
from projections.rollups import check_timezone, rollup
from tests.conftest import usage

ZONES = ["UTC", "Europe/Madrid", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham",
         "Australia/Lord_Howe", "America/Los_Angeles", "Asia/Kolkata"]
START = datetime(2024, 1, 1, tzinfo=UTC)

timestamps = st.lists(
    st.integers(min_value=0, max_value=700 * 86_400_000_000).map(
        lambda us: START + timedelta(microseconds=us)),
    min_size=1, max_size=60)


def _expected(tss: list[datetime], zone: str, period: str) -> Counter[str]:
    z = ZoneInfo(zone)
    out: Counter[str] = Counter()
    for ts in tss:
        local = ts.astimezone(z)
        if period == "day":
            out[local.strftime("%Y-%m-%d")] += 1
        elif period == "month":
            out[local.strftime("%Y-%m")] += 1
        else:
            year, week, _ = local.isocalendar()
            out[f"{year}-W{week:02d}"] += 1
    return out


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tss=timestamps, zone=st.sampled_from(ZONES),
       period=st.sampled_from(["day", "week", "month"]))
def test_period_rollup_equals_zoneinfo(tmp_path_factory, tss, zone, period) -> None:
    path: Path = tmp_path_factory.mktemp("data")
    with Ledger(path, pricer=None) as led:
        led.append_many([usage(ts=ts.isoformat()) for ts in tss], tenant="a")
        rows = rollup(led.snapshot(), "a", [period], tz=zone)
    got = Counter({r.key[period]: r.calls for r in rows})
    assert got == _expected(tss, zone, period)


def test_events_either_side_of_a_local_midnight_fall_on_their_local_days(tmp_path: Path
                                                                        ) -> None:
    # Kathmandu is UTC+5:45: 18:14:59.999999Z is 23:59:59.999999 local, 18:15Z is midnight.
    with Ledger(tmp_path / "data", pricer=None) as led:
        led.append_many([usage(ts="2025-03-01T18:14:59.999999Z"),
                         usage(ts="2025-03-01T18:15:00Z")], tenant="a")
        rows = rollup(led.snapshot(), "a", ["model", "day"], tz="Asia/Kathmandu")
    assert [(r.key["day"], r.calls) for r in rows] == [("2025-03-01", 1), ("2025-03-02", 1)]


def test_period_rollup_sums_tokens_and_cost_per_period(tmp_path: Path) -> None:
    with Ledger(tmp_path / "data", pricer=None) as led:
        led.append_many([usage(ts="2025-03-01T10:00:00Z", input_tokens=10, cost="0.5"),
                         usage(ts="2025-03-01T11:00:00Z", input_tokens=5, cost="0.25"),
                         usage(ts="2025-03-02T11:00:00Z", input_tokens=1, cost="1")],
                        tenant="a")
        rows = rollup(led.snapshot(), "a", ["day"], tz="UTC")
    assert [(r.key["day"], r.calls, r.input_tokens, r.cost_nanos) for r in rows] == [
        ("2025-03-01", 2, 15, 750_000_000), ("2025-03-02", 1, 1, 1_000_000_000)]


def test_first_stage_buckets_fit_every_offset_and_change_of_the_zone() -> None:
    from projections.rollups import bucket_seconds

    assert bucket_seconds("Europe/Madrid") == 3600  # whole-hour offsets, changes on hours
    assert bucket_seconds("Asia/Kolkata") == 1800  # +05:30
    assert bucket_seconds("Asia/Kathmandu") == 900  # +05:45
    # Newfoundland changed its clocks at 00:01 local until 2011: minute buckets.
    assert bucket_seconds("America/St_Johns") == 60


def test_a_change_at_one_minute_past_midnight_is_counted_on_the_right_day(tmp_path: Path
                                                                           ) -> None:
    # St. John's, 2006-04-02: clocks went from 00:01 NST (-3:30) to 01:01 NDT (-2:30), at
    # 03:31Z. 03:30:30Z is 00:00:30 local on 2 April; 03:29:30Z is 23:59:30 on 1 April.
    with Ledger(tmp_path / "data", pricer=None) as led:
        led.append_many([usage(ts="2006-04-02T03:29:30Z"), usage(ts="2006-04-02T03:30:30Z"),
                         usage(ts="2006-04-02T03:31:30Z")], tenant="a")
        rows = rollup(led.snapshot(), "a", ["day"], tz="America/St_Johns")
    assert [(r.key["day"], r.calls) for r in rows] == [("2006-04-01", 1), ("2006-04-02", 2)]


@pytest.mark.parametrize("tz", ["right/UTC", "posix/Europe/Paris", "localtime"])
def test_a_zone_only_python_knows_is_refused_naming_it(tmp_path: Path, tz: str) -> None:
    """The query engine groups by zone: a zone its own list lacks is a ``RollupError``
    (400) naming the zone, not an engine error."""
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        led.append(usage(), tenant="a")
        with pytest.raises(RollupError, match=re.escape(repr(tz))):
            rollup(led.snapshot(), "a", ["day"], tz=tz)
    assert check_timezone("Europe/Paris") == "Europe/Paris"
