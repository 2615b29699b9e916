"""Durability over HTTP: a real ``llmring serve`` killed with SIGKILL at random moments,
while clients post single events and batches, loses no event it acknowledged with a 200,
stores none twice, leaves no batch half-applied, and the directory still verifies."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.support import serverproc
from tests.support.durability import assert_nothing_acknowledged_lost

KILLS = 20
WRITERS = 3


def _event(event_id: str, w: int) -> dict[str, object]:
    return {"event_id": event_id, "provider": "openai", "model": f"gpt-4o-{w}",
            "input_tokens": 10 + w, "output_tokens": 3, "cost": "0.0001",
            "ts": f"2025-10-0{1 + w % 3}T12:00:00Z"}


class Load:
    """Writers posting to the server until it dies; what it acknowledged is recorded."""

    def __init__(self, server: serverproc.Server, run: int, seed: int) -> None:
        self.server = server
        self.run = run
        self.rng = random.Random(seed)
        self.acked: set[str] = set()
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._writer, args=(w,), daemon=True)
                        for w in range(WRITERS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a writer hung on a dead server"

    def _writer(self, w: int) -> None:
        project = ("alpha", "beta")[w % 2]
        with httpx.Client(base_url=self.server.url, timeout=10,
                          headers=self.server.headers(project)) as client:
            i = 0
            while True:
                try:
                    if i % 4 == 3:  # a batch: all or nothing; its size is in its ids
                        n = self.rng.randint(2, 40) if i % 20 != 19 else 700
                        ids = [f"r{self.run}-w{w}-b{i}x{n}-{j}" for j in range(n)]
                        r = client.post("/api/v1/log/batch",
                                        json={"events": [_event(e, w) for e in ids]})
                    else:
                        ids = [f"r{self.run}-w{w}-{i}"]
                        r = client.post("/api/v1/log", json=_event(ids[0], w))
                except httpx.HTTPError:
                    return  # the server is gone: what was not answered is not acknowledged
                assert r.status_code == 200, r.text
                with self.lock:
                    self.acked.update(ids)
                    if len(ids) > 1:
                        self.batches.append(ids)
                i += 1


def test_sigkill_of_the_server_under_http_load_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = {p: serverproc.create_key(data, p) for p in ("alpha", "beta")}
    rng = random.Random(20261204)
    acked: set[str] = set()
    batches = 0
    for run in range(KILLS):
        server = serverproc.start(data, projects=())
        server.keys.update(keys)
        load = Load(server, run, rng.randrange(1 << 30))
        load.start()
        time.sleep(rng.uniform(0.2, 1.2))
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait() == -signal.SIGKILL
        load.join()
        acked |= load.acked

        assert_nothing_acknowledged_lost(data, acked, run)
        batches += len(load.batches)
    assert len(acked) > 1000 and batches > 20, "too little load to prove anything"
