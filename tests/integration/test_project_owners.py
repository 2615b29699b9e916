"""Two real ``llmring serve`` processes share one data directory and split its projects
(``--owns``, ``--url``): a write to the other's project is refused with 421 naming the
owner (and a client following it succeeds); a third server cannot take a held project;
SIGKILL of either under load loses no acknowledged event; and no checkpoint of any
project is ever signed at one size with two roots."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import httpx
import orjson

from ledger import Ledger
from ledger.api.apikeys import ApiKeyStore
from ledger.client.async_api import ServerClient
from ledger.core.audit import verify_directory
from ledger.errors import OWNER_HEADER
from tests.support import serverproc


def _owner(data: Path, project: str, port: int, key: str) -> serverproc.Server:
    url = f"http://127.0.0.1:{port}"
    server = serverproc.start(data, projects=(), port=port,
                              extra=("--owns", project, "--url", url))
    server.keys[project] = key
    return server


def _load(server: serverproc.Server, project: str, prefix: str, acked: set[str],
          stop: threading.Event) -> threading.Thread:
    """Append single events and batches to ``project`` until ``stop`` (or the server
    dies), adding each acknowledged id to ``acked``."""
    def run() -> None:
        call = {"provider": "openai", "model": "m", "input_tokens": 1, "output_tokens": 1,
                "cost": "0.001"}
        with httpx.Client(base_url=server.url, headers=server.headers(project),
                          timeout=10) as http:
            i = 0
            while not stop.is_set():
                try:
                    if i % 4 == 3:
                        ids = [f"{prefix}-{i}-{j}" for j in range(20)]
                        r = http.post("/api/v1/log/batch",
                                      json={"events": [{**call, "event_id": e} for e in ids]})
                    else:
                        ids = [f"{prefix}-{i}"]
                        r = http.post("/api/v1/log", json={**call, "event_id": ids[0]})
                except httpx.HTTPError:
                    return  # killed
                if r.status_code == 200:
                    acked.update(ids)
                i += 1
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _kill_under_load(server: serverproc.Server, project: str, prefix: str,
                     acked: set[str]) -> None:
    stop = threading.Event()
    thread = _load(server, project, prefix, acked, stop)
    deadline = len(acked) + 60
    while len(acked) < deadline and thread.is_alive():  # some acknowledged writes first
        threading.Event().wait(0.01)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    stop.set()
    thread.join(timeout=30)


def _checkpoint_roots(data: Path) -> dict[tuple[str, int], set[str]]:
    roots: dict[tuple[str, int], set[str]] = {}
    for path in (data / "checkpoints").glob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            cp = orjson.loads(line)
            roots.setdefault((cp["origin"], cp["size"]), set()).add(cp["root"])
    return roots


def test_two_servers_split_the_projects_without_loss_or_fork(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Ledger(data, pricer=None, checkpoint_interval=None):
        pass  # the directory, in its layout
    store = ApiKeyStore(data)
    keys = {p: store.create(p)[0] for p in ("alpha", "beta")}
    ports = {"alpha": serverproc.free_port(), "beta": serverproc.free_port()}
    servers = {p: _owner(data, p, ports[p], keys[p]) for p in ("alpha", "beta")}
    try:
        a, b = servers["alpha"], servers["beta"]
        # A write to the other server's project: 421, the owner named in body and header.
        r = httpx.post(b.url + "/api/v1/log", headers=a.headers("alpha"),
                       json={"provider": "p", "model": "m", "event_id": "misdirected"})
        assert r.status_code == 421, r.text
        assert r.json()["code"] == "misdirected" and r.json()["owner"] == a.url
        assert r.headers[OWNER_HEADER] == a.url

        async def follow() -> tuple[dict, str]:
            async with ServerClient(b.url, keys["alpha"]) as client:
                ack = await client.log_usage({"provider": "p", "model": "m",
                                              "event_id": "followed"})
                return ack, client.transport.base_url  # type: ignore[attr-defined]
        ack, now_at = asyncio.run(follow())
        assert ack["log_id"] == "followed" and now_at == a.url  # followed, and stays

        # A third server cannot take a project another live process holds.
        third = serverproc.cli(data, "serve", "--port", str(serverproc.free_port()),
                               "--owns", "alpha", check=False)
        assert third.returncode == 2 and "in use by another process" in third.stderr
        assert "Traceback" not in third.stderr

        acked: dict[str, set[str]] = {"alpha": {"followed"}, "beta": set()}
        for project in ("alpha", "beta"):  # SIGKILL each under load, then restart it
            _kill_under_load(servers[project], project, project, acked[project])
            servers[project] = _owner(data, project, ports[project], keys[project])
    finally:
        for server in servers.values():
            server.stop()
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        for project, ids in acked.items():
            assert len(ids) > 50  # writes were acknowledged before each kill
            stored = [e.event_id for e in led.events(project, limit=led.size(project) + 1)]
            assert len(stored) == len(set(stored)), "stored twice"
            assert ids <= set(stored), f"lost: {sorted(ids - set(stored))[:5]}"
    report = verify_directory(data)
    assert report.ok, report.problems
    forks = {k: v for k, v in _checkpoint_roots(data).items() if len(v) > 1}
    assert not forks, forks
