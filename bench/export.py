"""Benchmark of an export's memory: the peak resident set of a real ``llmring serve``
process while it answers ``GET /api/v1/exports/events?format=jsonl`` for a project of
1,000,000 events (target: the server's peak RSS stays <= 300 MiB).

One command: ``python bench/export.py`` (options: ``--events``, ``--format``, ``--dir``).
The project's events are written first with the embedded API (``Ledger.append_many``,
sealed), the server is started on the directory, and the export is read as it streams;
the server's ``VmHWM`` (peak RSS, ``/proc/PID/status``) is read before and after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EventFactory, environment, verdict
from server import Server

TARGET_MIB = 300


def status_mib(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` memory figure (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def fill(data: Path, events: int, batch: int = 10_000) -> None:
    from ledger import Ledger

    factory = EventFactory(seed=7)
    with Ledger(data) as ledger:
        for start in range(0, events, batch):
            ledger.append_many(factory.batch(min(batch, events - start)), tenant="single")
        ledger.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    parser.add_argument("--dir", type=Path, default=Path("/work/bench-data/export"))
    args = parser.parse_args()
    print(environment(), flush=True)
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    data = args.dir / "data"
    t0 = time.perf_counter()
    fill(data, args.events)
    print(f"wrote {args.events:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
    server = Server(data)
    try:
        pid = server.proc.pid
        before_rss, before_peak = status_mib(pid, "VmRSS"), status_mib(pid, "VmHWM")
        lines = size = 0
        t0 = time.perf_counter()
        with httpx.stream("GET", server.url + "/api/v1/exports/events",
                          params={"format": args.format}, headers=server.headers("single"),
                          timeout=600) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - t0
        peak = status_mib(pid, "VmHWM")
    finally:
        server.stop()
    print(f"exported {size / 2**20:,.0f} MiB ({lines:,} lines) in {seconds:.1f} s; server RSS "
          f"before {before_rss:.0f} MiB (peak so far {before_peak:.0f} MiB)", flush=True)
    ok = peak <= TARGET_MIB
    print(f"server peak RSS during a {args.format} export of {args.events:,} events: "
          f"{peak:.0f} MiB (target <= {TARGET_MIB} MiB)  {verdict(ok)}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
