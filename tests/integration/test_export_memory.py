"""Exports stream in bounded memory (docs/http-api.md): a real ``llmring serve`` exporting
a project of 120,000 events as JSON lines grows its peak resident set by a bounded amount,
far below what holding the export in memory costs (the old ~10 KB per event: ~1.1 GiB
here), and clients that goes away mid-export leaves the server serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from ledger import Ledger
from tests.support import serverproc

EVENTS = 120_000
GROWTH_LIMIT_MIB = 150  # DuckDB's start-up, one window's query, one batch's encoding


def status_mib(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak so far) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[serverproc.Server]:
    """A server over a project ("alpha") of ``EVENTS`` events spread over 30 days, written
    with the embedded API and sealed (as a server that ran for a month holds them)."""
    data = tmp_path_factory.mktemp("export") / "data"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Ledger(data, pricer=None) as ledger:
        for first in range(0, EVENTS, 10_000):
            ledger.append_many([{
                "provider": "openai", "model": "gpt-4o-mini", "alias": "fast",
                "input_tokens": i % 5000, "output_tokens": i % 700, "cost": "0.00042",
                "ts": start + timedelta(seconds=(i * 7919) % (30 * 86400)),
                "metadata": {"team": "search", "user": f"u{i % 977}"},
            } for i in range(first, first + 10_000)], tenant="alpha")
        ledger.flush()
    server = serverproc.start(data, projects=("alpha",))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_jsonl_export_streams_in_bounded_memory(big: serverproc.Server) -> None:
    """The whole project comes out, in log order, while the server's peak RSS grows by
    less than GROWTH_LIMIT_MIB (not in proportion to the events)."""
    pid = big.proc.pid
    before = status_mib(pid, "VmRSS")
    lines = 0
    last_seq = -1
    rest = b""
    with httpx.stream("GET", big.url + "/api/v1/exports/events", params={"format": "jsonl"},
                      headers=big.headers("alpha"), timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for chunk in r.iter_bytes():
            *complete, rest = (rest + chunk).split(b"\n")
            for line in complete:
                seq = orjson.loads(line)["seq"]
                assert seq == last_seq + 1
                last_seq = seq
                lines += 1
    assert rest == b"" and lines == EVENTS
    growth = status_mib(pid, "VmHWM") - before
    assert growth < GROWTH_LIMIT_MIB, f"the export grew the server by {growth:.0f} MiB"


def test_clients_leaving_mid_export_leave_nothing_behind(big: serverproc.Server) -> None:
    """An export abandoned after its first bytes (in every format) stops and frees what it
    held: abandoning more exports does not grow the server, which keeps taking writes
    and answering exports."""
    pid = big.proc.pid
    for _ in range(2):  # warm: what the exports need at their peak, and the allocator's
        for fmt in ("jsonl", "csv", "parquet"):
            _abandon(big, fmt)
    peak = status_mib(pid, "VmHWM")
    for _ in range(2):
        for fmt in ("jsonl", "csv", "parquet"):
            _abandon(big, fmt)
    # What an abandoned export left behind would add up and raise the peak; the resident
    # set itself goes up and down by tens of MiB as the allocator and DuckDB return memory.
    growth = status_mib(pid, "VmHWM") - peak
    assert growth < 24, f"6 more abandoned exports raised the server's peak by {growth:.0f} MiB"
    with httpx.Client(base_url=big.url, headers=big.headers("alpha"), timeout=60) as c:
        r = c.post("/api/v1/log", json={"provider": "openai", "model": "gpt-4o-mini",
                                        "input_tokens": 1, "output_tokens": 1, "cost": "0"})
        assert r.status_code == 200, r.text
        window = {"start": "2026-01-03", "end": "2026-01-03", "format": "csv"}
        assert len(c.get("/api/v1/exports/events", params=window).text.splitlines()) > 1


def _abandon(server: serverproc.Server, fmt: str) -> None:
    """Start an export, read its first bytes, hang up; return once the server is idle
    again (its CPU time stands still), so the export's work has stopped."""
    with httpx.stream("GET", server.url + "/api/v1/exports/events", params={"format": fmt},
                      headers=server.headers("alpha"), timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_raw())
    stat = Path(f"/proc/{server.proc.pid}/stat")
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        cpu = sum(int(v) for v in stat.read_text().rsplit(")", 1)[1].split()[11:13])
        if cpu == last:
            return
        last = cpu
        time.sleep(0.25)  # CPU time is counted in 10 ms ticks: a quarter second unchanged
    raise AssertionError("the server kept working after the client hung up")
