"""Against a real ``llmring serve``: an id a caller sends in the ledger's generated shape,
with a ``ts`` that is not the time the id names, stays one event after the server stopped,
its ``index.sqlite`` was deleted and a new server rebuilt it; ``llmring ledger verify``
finds no duplicate (docs/decisions.md, "Generated ids")."""

from __future__ import annotations

from pathlib import Path

import httpx

from ledger.model.event import new_event_id
from tests.support import serverproc

CALL = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100,
        "output_tokens": 20, "cost": 0.0025, "timestamp": "2025-10-01T12:00:00Z"}
IDS = [new_event_id(1_717_200_000_000 + k) for k in range(3)]  # 2024-06-01, not the ts


def post_all(server: serverproc.Server) -> list[dict]:
    with httpx.Client(base_url=server.url, headers=server.headers("alpha"), timeout=60) as c:
        one = c.post("/api/v1/log", json={**CALL, "event_id": IDS[0]})
        many = c.post("/api/v1/log/batch",
                      json={"events": [{**CALL, "event_id": e} for e in IDS[1:]]})
        assert one.status_code == 200, one.text
        assert many.status_code == 200, many.text
        return [one.json(), *many.json()["logs"]]


def test_generated_shape_ids_resent_after_the_index_is_rebuilt_are_repeats(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = serverproc.start(data, projects=("alpha",))
    try:
        first = post_all(server)
    finally:
        assert server.stop() == 0  # graceful (SIGTERM): the journal is sealed
    assert all(log["created"] for log in first)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (data / name).unlink(missing_ok=True)
    server = serverproc.start(data, projects=("alpha",))
    try:
        again = post_all(server)
        with httpx.Client(base_url=server.url, headers=server.headers("alpha")) as c:
            assert c.get("/api/v1/logs").json()["total"] == len(IDS)
    finally:
        assert server.stop() in (0, -15)
    assert [log["seq"] for log in again] == [log["seq"] for log in first]
    assert not any(log["created"] for log in again)
    verified = serverproc.cli(data, "ledger", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
