"""The CLI's dates are in a time zone as people mean them. Run as a subprocess under the
environment's ``TZ`` (the machine's zone) or given ``--tz``: a day ``YYYY-MM-DD`` runs
from that day's midnight there to the next, a datetime without an offset is a wall-clock
time there, one with an offset is that instant. ``receipts preview``, ``usage report
--by day`` and ``record --ts`` agree with figures computed here with ``zoneinfo``, name
the zone they used, and through a real server (itself in another zone) they answer as
the embedded ledger does."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.model.event import format_ts, ts_to_us
from tests.support import serverproc
from tests.support.serverproc import LLMRING, Server

ZONES = ["America/Los_Angeles", "UTC", "Asia/Tokyo"]
DAYS = [date(2025, 11, 1), date(2025, 11, 2), date(2025, 11, 3)]
"""Los Angeles turns its clocks back on 2 November 2025: a 25-hour day."""


def _instants() -> list[datetime]:
    """A call at, a microsecond before and a second after every midnight of each zone
    around DAYS (each is near some zone's midnight), and one at each UTC noon."""
    out: set[datetime] = set()
    for zone in ZONES:
        for day in [DAYS[0] - timedelta(days=1), *DAYS, DAYS[-1] + timedelta(days=1)]:
            midnight = datetime.combine(day, time(), ZoneInfo(zone)).astimezone(UTC)
            out |= {midnight - timedelta(microseconds=1), midnight,
                    midnight + timedelta(seconds=1)}
            out.add(datetime.combine(day, time(12), UTC))
    return sorted(out)


INSTANTS = _instants()
COST_NANOS = [1_000 * (i + 1) for i in range(len(INSTANTS))]  # each call's own cost


def _by_local_day(zone: str) -> dict[str, tuple[int, int]]:
    """Calls and cost per calendar day in ``zone``, computed here with zoneinfo."""
    calls: Counter[str] = Counter()
    cost: Counter[str] = Counter()
    for at, nanos in zip(INSTANTS, COST_NANOS, strict=True):
        day = at.astimezone(ZoneInfo(zone)).date().isoformat()
        calls[day] += 1
        cost[day] += nanos
    return {day: (calls[day], cost[day]) for day in calls}


def _days_total(zone: str, first: date, last: date) -> tuple[int, int]:
    days = _by_local_day(zone)
    picked = [days.get((first + timedelta(days=n)).isoformat(), (0, 0))
              for n in range((last - first).days + 1)]
    return sum(c for c, _ in picked), sum(n for _, n in picked)


def run(data: Path, *args: str, tz: str | None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """``llmring --data DATA ARGS…`` as a subprocess with ``TZ`` set to ``tz`` (None:
    unset, the system's zone)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TZ", "LLMRING_LEDGER_DIR", "LLMRING_PROJECT", "LLMRING_SERVER_URL",
                        "LLMRING_API_KEY")}
    if tz is not None:
        env["TZ"] = tz
    result = subprocess.run([*LLMRING, "--data", str(data), *args], capture_output=True,
                            text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def _calls_file(path: Path) -> Path:
    path.write_text("".join(json.dumps(
        {"event_id": f"z-{i}", "ts": format_ts(ts_to_us(at)), "provider": "openai",
         "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 1,
         "cost": f"0.{nanos:09d}"}) + "\n"
        for i, (at, nanos) in enumerate(zip(INSTANTS, COST_NANOS, strict=True))))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the calls at INSTANTS (ingested with their UTC times)."""
    root = tmp_path_factory.mktemp("zones")
    run(root / "data", "ingest", str(_calls_file(root / "calls.jsonl")), tz="UTC")
    return root / "data"


# -- the machine's zone --------------------------------------------------------------------
@pytest.mark.parametrize("zone", ZONES)
def test_preview_of_whole_days_totals_the_days_of_the_machines_zone(data: Path, zone: str
                                                                    ) -> None:
    """``receipts preview --start D --end D`` under TZ=zone certifies the calls of that
    local day (the 25-hour one too), and a range of days those of every day in it."""
    for first, last in ((DAYS[1], DAYS[1]), (DAYS[0], DAYS[2])):
        p = as_json(run(data, "receipts", "preview", "--start", first.isoformat(),
                        "--end", last.isoformat(), "--json", tz=zone))
        assert (p["total_logs"], p["total_cost_nanos"]) == _days_total(zone, first, last)
        assert p["tz"] == zone


@pytest.mark.parametrize("zone", ZONES)
def test_usage_report_by_day_uses_the_days_of_the_machines_zone(data: Path, zone: str
                                                                 ) -> None:
    """``usage report --by day`` under TZ=zone groups by that zone's calendar days and
    says which zone it used (a field of --json, the table's title)."""
    out = as_json(run(data, "usage", "report", "--by", "day", "--json", tz=zone))
    assert out["tz"] == zone
    assert {r["day"]: (r["calls"], r["cost_nanos"]) for r in out["rows"]} == \
        _by_local_day(zone)
    table = run(data, "usage", "report", "--by", "day", "--start", DAYS[1].isoformat(),
                "--end", DAYS[1].isoformat(), tz=zone).stdout
    assert f"{DAYS[1]} ({zone})" in table.splitlines()[0]


@pytest.mark.parametrize("zone", ZONES)
def test_record_ts_is_a_wall_clock_time_or_a_midnight_in_the_machines_zone(
        tmp_path: Path, zone: str) -> None:
    """``record --ts``: a datetime without offset is that wall-clock time in the zone, a
    date its midnight there, a datetime with an offset that instant, whatever the zone;
    the acknowledgement names the zone."""
    here = ZoneInfo(zone)
    cases = {
        "2025-11-02T00:30:00": datetime(2025, 11, 2, 0, 30, tzinfo=here),
        "2025-11-03": datetime(2025, 11, 3, tzinfo=here),
        "2025-11-02T00:30:00+05:00": datetime(2025, 11, 1, 19, 30, tzinfo=UTC),
    }
    for n, (given, meant) in enumerate(cases.items()):
        ack = as_json(run(tmp_path / "data", "record", "--provider", "openai", "--model",
                          "m", "--cost", "0.001", "--event-id", f"r-{n}", "--ts", given,
                          "--json", tz=zone))
        assert ack["ts"] == format_ts(ts_to_us(meant.astimezone(UTC))), given
        assert ack["tz"] == zone


def test_tz_given_overrides_the_machines_zone(data: Path, tmp_path: Path) -> None:
    """``--tz`` wins over TZ: Tokyo's machine asks for Los Angeles' days and times and
    gets them, shown as such."""
    zone = "America/Los_Angeles"
    p = as_json(run(data, "receipts", "preview", "--start", str(DAYS[1]), "--end",
                    str(DAYS[1]), "--tz", zone, "--json", tz="Asia/Tokyo"))
    assert (p["total_logs"], p["total_cost_nanos"]) == _days_total(zone, DAYS[1], DAYS[1])
    assert p["tz"] == zone
    shown = run(data, "receipts", "preview", "--start", str(DAYS[1]), "--end", str(DAYS[1]),
                "--tz", zone, tz="Asia/Tokyo").stdout
    assert f"{DAYS[1]} ({zone})" in shown
    recorded = run(tmp_path / "data", "record", "--provider", "openai", "--model", "m",
                   "--cost", "0.001", "--ts", "2025-11-03T08:00:00", "--tz", zone,
                   tz="Asia/Tokyo").stdout
    assert "2025-11-03T16:00:00.000000Z" in recorded
    assert f"2025-11-03 08:00:00-08:00 ({zone})" in recorded


def test_a_machine_zone_that_cannot_be_named_is_utc(data: Path) -> None:
    """An empty TZ or a POSIX rule (no IANA name) is read as UTC, and said so."""
    for tz in ("", "XYZ-3"):
        out = as_json(run(data, "usage", "report", "--by", "day", "--json", tz=tz))
        assert out["tz"] == "UTC"
        assert {r["day"]: (r["calls"], r["cost_nanos"]) for r in out["rows"]} == \
            _by_local_day("UTC")


@pytest.mark.parametrize(("args", "tz", "zone"), [
    (("usage", "report", "--tz", "Mars/Olympus_Mons"), "UTC", "Mars/Olympus_Mons"),
    (("receipts", "preview", "--start", "2025-11-01", "--end", "2025-11-02", "--tz",
      "Mars/Olympus_Mons"), "UTC", "Mars/Olympus_Mons"),
    (("record", "--provider", "p", "--model", "m", "--ts", "2025-11-01", "--tz",
      "Nowhere/Else"), "UTC", "Nowhere/Else"),
    (("usage", "report", "--tz", "right/UTC"), "UTC", "right/UTC"),
    (("usage", "report"), "right/UTC", "right/UTC"),
])
def test_an_unknown_zone_is_a_usage_error_naming_it(data: Path, tmp_path: Path,
                                                    args: tuple[str, ...], tz: str, zone: str
                                                    ) -> None:
    """A zone no one knows, or one Python knows but the report's query engine does not
    (``right/UTC``, given or the machine's), is exit 2 with one line naming it; a
    ``record`` so refused writes nothing."""
    where = tmp_path / "fresh" if args[0] == "record" else data
    result = run(where, *args, tz=tz, check=False)
    assert result.returncode == 2, result.stderr
    assert f"unknown time zone {zone!r}" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert where.exists() == (where == data)


# -- through a real server -----------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``llmring serve`` in Madrid's zone, holding the same calls in project "alpha"."""
    root = tmp_path_factory.mktemp("zones-server")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TZ", "Europe/Madrid")
        srv = serverproc.start(root / "data", projects=("alpha",))
    try:
        run(root / "none", "--server", srv.url, "--api-key", srv.keys["alpha"], "ingest",
            str(_calls_file(root / "calls.jsonl")), tz="UTC")
        yield srv
    finally:
        srv.stop()


def test_through_a_server_the_cli_means_the_same_instants(server: Server, data: Path,
                                                          tmp_path: Path) -> None:
    """The CLI sends instants: under TZ=Asia/Tokyo, --server and the embedded ledger
    give the same preview and report, Tokyo's days, whatever the server's zone."""
    zone = "Asia/Tokyo"
    through = ("--server", server.url, "--api-key", server.keys["alpha"])
    preview = ("preview", "--start", str(DAYS[0]), "--end", str(DAYS[1]), "--json")
    remote = as_json(run(tmp_path / "none", *through, "receipts", *preview, tz=zone))
    local = as_json(run(data, "receipts", *preview, tz=zone))
    assert (remote["total_logs"], remote["total_cost_nanos"]) == \
        (local["total_logs"], local["total_cost_nanos"]) == _days_total(zone, DAYS[0], DAYS[1])
    report = ("usage", "report", "--by", "day", "--json")
    remote_rows = as_json(run(tmp_path / "none", *through, *report, tz=zone))
    local_rows = as_json(run(data, *report, tz=zone))
    assert remote_rows["rows"] == local_rows["rows"]
    assert {r["day"]: (r["calls"], r["cost_nanos"]) for r in remote_rows["rows"]} == \
        _by_local_day(zone)
    assert not (tmp_path / "none").exists()
