"""Benchmark of the HTTP server (``llmring serve`` as a real process on 127.0.0.1):

(a) single-event ``POST /api/v1/log`` from 32 concurrent clients, each request answered
    only once durable (target >= 2,000 events/s); during that load, a separate client
    polls ``GET /api/v1/receipts/uncertified`` and its latency p99 is reported;
(b) batch ingestion, ``POST /api/v1/log/batch`` with 10,000 events per request
    (target >= 50,000 events/s);
(c) ``POST /api/v1/receipts/generate`` with ``since_last_receipt`` over 100,000
    uncertified events (target <= 2 s).

One command: ``python bench/server.py`` (options: ``--quick``, ``--dir``, ``--only``,
``--budgets``: the same with budgets evaluated on every append). Medians of
``--repeats`` runs; the runs are printed in brackets. The load generator runs on the
same machine as the server (it competes for the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EventFactory, environment, report_latency, report_rate, verdict

LLMRING = [sys.executable, "-c", "from ledger.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wire(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    out["timestamp"] = out.pop("ts").isoformat()
    return out


class Server:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.keys = {p: self._key(p) for p in ("single", "batch", "gen1", "gen2", "gen3",
                                               "gen4", "gen5")}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(data.parent / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*LLMRING, "--data", str(data), "serve", "--port", str(port), "--log-level",
             "warning"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the server did not start; see " + str(data.parent / "server.log"))

    def _key(self, project: str) -> str:
        out = subprocess.run([*LLMRING, "--data", str(self.data), "keys", "create",
                              "--project", project], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    def headers(self, project: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[project], "Content-Type": "application/json"}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


class Connection:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams: the load generator
    shares the machine with the server, and httpx spends milliseconds of CPU per request
    (it, not the server, was the bottleneck)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        data = await self.reader.readexactly(length)
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def single_run(server: Server, events: list[bytes], clients: int, seconds: float
                     ) -> tuple[float, list[float]]:
    """Events/s of single POSTs from ``clients`` concurrent clients (one connection each),
    and the latencies of GET uncertified polled meanwhile."""
    headers = server.headers("single")
    done = 0
    stop = time.perf_counter() + seconds
    poll_latencies: list[float] = []

    async def writer(i: int) -> None:
        nonlocal done
        conn = Connection(server.url)
        k = i
        try:
            while time.perf_counter() < stop:
                status, body = await conn.request("POST", "/api/v1/log", headers,
                                                  events[k % len(events)])
                if status != 200:
                    raise SystemExit(f"POST /api/v1/log: {status} {body[:300]!r}")
                done += 1
                k += clients
        finally:
            conn.close()

    async def poller() -> None:
        conn = Connection(server.url)
        try:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                status, body = await conn.request(
                    "GET", "/api/v1/receipts/uncertified?limit=100", headers)
                if status != 200:
                    raise SystemExit(f"GET uncertified: {status} {body[:300]!r}")
                poll_latencies.append(time.perf_counter() - t)
                await asyncio.sleep(0.05)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(clients)), poller())
    elapsed = time.perf_counter() - started
    return done / elapsed, poll_latencies


def batch_bodies(events: list[dict[str, Any]], size: int) -> list[bytes]:
    return [orjson.dumps({"events": [wire(e) for e in events[i:i + size]]})
            for i in range(0, len(events), size)]


def post_batches(server: Server, project: str, bodies: list[bytes]) -> float:
    """Seconds to post every body in turn (two requests in flight)."""
    headers = server.headers(project)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
            queue = list(bodies)

            async def lane() -> None:
                while queue:
                    body = queue.pop(0)
                    r = await http.post("/api/v1/log/batch", content=body, headers=headers)
                    if r.status_code != 200:
                        raise SystemExit(f"POST batch: {r.status_code} {r.text[:300]}")

            await asyncio.gather(lane(), lane())

    t = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/work/bench-data/server")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batch-events", type=int, default=200_000)
    ap.add_argument("--generate-events", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--budgets", action="store_true",
                    help="give the (a) and (b) projects three budgets each (day, week, "
                         "month; never reached) so every append is evaluated against them")
    ap.add_argument("--only", choices=["single", "batch", "generate"],
                    help="run one measurement: (a) single, (b) batch or (c) generate")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.batch_events, args.generate_events = 1, 2, 20_000, 10_000
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    print(environment(), flush=True)
    print(f"server data: {root / 'data'}; load generator: one asyncio process on the "
          "same cores (raw HTTP/1.1 keep-alive connections for (a), httpx for (b), (c))",
          flush=True)
    server = Server(root / "data")
    ok = True
    try:
        for project in ("single", "batch") if args.budgets else ():
            for period in ("day", "week", "month"):
                resp = httpx.put(f"{server.url}/api/v1/budgets/per-{period}",
                                 headers=server.headers(project),
                                 json={"amount": "1000000000", "period": period,
                                       "tz": "America/Los_Angeles"})
                if resp.status_code != 200:
                    raise SystemExit(f"budget: {resp.status_code} {resp.text[:300]}")
        if args.budgets:
            print("with 3 budgets on each of the (a) and (b) projects", flush=True)
        factory = EventFactory(seed=7)
        single_events = [orjson.dumps(wire(e)) for e in factory.batch(20_000)]
        rates, polls = [], []
        for _ in range(args.repeats if args.only in (None, "single") else 0):
            rate, lat = asyncio.run(single_run(server, single_events, args.clients,
                                               args.seconds))
            rates.append(rate)
            polls.extend(lat)
        if rates:
            ok &= report_rate(
                f"(a) POST /api/v1/log, {args.clients} concurrent clients, durable", rates,
                2_000)
            polls.sort()
            p99 = polls[min(len(polls) - 1, int(len(polls) * 0.99))]
            print(f"    GET /api/v1/receipts/uncertified under that load: p50 "
                  f"{statistics.median(polls) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms "
                  f"(n={len(polls)})", flush=True)

        rates = []
        for r in range(args.repeats if args.only in (None, "batch") else 0):
            bodies = batch_bodies(EventFactory(seed=100 + r).batch(args.batch_events), 10_000)
            seconds = post_batches(server, "batch", bodies)
            rates.append(args.batch_events / seconds)
        if rates:
            ok &= report_rate("(b) POST /api/v1/log/batch, 10,000 events per request",
                              rates, 50_000)

        times = []
        for r in range(min(args.repeats, 5) if args.only in (None, "generate") else 0):
            project = f"gen{r + 1}"
            bodies = batch_bodies(EventFactory(seed=200 + r).batch(args.generate_events),
                                  10_000)
            post_batches(server, project, bodies)
            t = time.perf_counter()
            resp = httpx.post(server.url + "/api/v1/receipts/generate",
                              headers=server.headers(project),
                              json={"since_last_receipt": True}, timeout=600)
            times.append(time.perf_counter() - t)
            if resp.status_code != 200 or resp.json()["certified_count"] != args.generate_events:
                raise SystemExit(f"generate: {resp.status_code} {resp.text[:300]}")
        if times:
            ok &= report_latency(
                f"(c) generate since-last over {args.generate_events:,} events", times, 2.0)
    finally:
        server.stop()
    print(f"overall: {verdict(ok)}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
