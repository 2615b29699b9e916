"""An operable server (issue 13, item 5), against a real ``llmring serve``: one access-log
line per request on the fast and the routed path, never the API key; ``/metrics`` in the
Prometheus text format with the counts of what was done; ``--no-access-log`` and
``--no-metrics``; exit status 0 after a graceful SIGTERM. And, in process, the seal and
compaction counters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledger.server.app import ServerConfig, ServerState
from tests.support.serverproc import log_text, start

ACCESS = re.compile(r"access (\S+) (\S+) (\S+) ([0-9.]+)ms project=(\S+) client=\S+$")


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000 + i,
            "output_tokens": 100 + i, **extra}


def access_lines(text: str) -> list[tuple[str, str, str, str]]:
    lines = []
    for line in text.splitlines():
        found = ACCESS.search(line)
        if found:
            method, path, status, _ms, project = found.groups()
            lines.append((method, path, status, project))
    return lines


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_request_is_logged_and_no_key_is(tmp_path: Path) -> None:
    server = start(tmp_path / "data")
    key = server.keys["alpha"]
    alpha = {"X-API-Key": key}
    bearer = {"Authorization": f"Bearer {server.keys['beta']}"}
    wrong = "llmr_not-a-real-key-0123456789"
    done: list[tuple[str, str, str, str]] = []
    with httpx.Client(base_url=server.url) as http:
        def call(method: str, path: str, project: str, **kw: Any) -> httpx.Response:
            r = http.request(method, path, **kw)
            done.append((method, path.split("?")[0], str(r.status_code), project))
            return r

        assert call("POST", "/api/v1/log", "alpha", headers=alpha,
                    json=event(0)).status_code == 200  # the fast path
        assert call("POST", "/api/v1/log/batch", "beta", headers=bearer,
                    json={"events": [event(1), event(2)]}).status_code == 200
        assert call("POST", "/api/v1/log", "alpha", headers=alpha,  # routed: refused
                    json={"provider": 5}).status_code == 422
        assert call("GET", f"/api/v1/stats?api_key={key}", "alpha",
                    headers=alpha).status_code == 200
        assert call("GET", "/api/v1/stats", "-", headers={"X-API-Key": wrong}
                    ).status_code == 401
        assert call("GET", "/api/v1/stats", "-").status_code == 401
        assert call("GET", "/no/such/path", "-").status_code == 404
        assert call("DELETE", "/health", "-").status_code == 405
        r = http.get("/x%0A2026-01-01 access GET /forged 200 1.0ms project=beta")
        assert r.status_code == 404
        done.append(("GET", "/x\\n2026-01-01%20access%20GET%20/forged%20200%201.0ms%20project"
                     "=beta", "404", "-"))
        assert call("GET", "/health", "-").status_code == 200
    assert server.stop() == 0
    text = log_text(server.data, port_of(server.url))
    # the server's own /health polls at start are logged too: this test's requests
    # are the last lines, in order
    assert access_lines(text)[-len(done):] == done
    for secret in (key, server.keys["beta"], wrong):
        assert secret not in text


def test_metrics_count_what_was_done(tmp_path: Path) -> None:
    server = start(tmp_path / "data", extra=("--seal-interval", "0"))  # no timed seal
    try:
        alpha = httpx.Client(base_url=server.url, headers=server.headers("alpha"))
        beta = httpx.Client(base_url=server.url, headers=server.headers("beta"))
        costs = {"alpha": 0, "beta": 0}
        for i in range(3):
            r = alpha.post("/api/v1/log", json=event(i))
            costs["alpha"] += r.json()["cost_nanos"]
        r = beta.post("/api/v1/log/batch", json={"events": [event(i) for i in range(5)]})
        assert r.status_code == 200, r.text
        costs["beta"] += sum(int(a["cost_nanos"]) for a in r.json()["logs"])
        # a repeat of an event id appends nothing and costs nothing more
        for _ in range(2):
            alpha.post("/api/v1/log", json=event(9, event_id="once")).raise_for_status()
        costs["alpha"] += alpha.get("/api/v1/stats").json()["cost_nanos"] - costs["alpha"]
        r = alpha.post("/api/v1/receipts/generate", json={"since_last_receipt": True})
        assert r.status_code == 200, r.text
        assert alpha.get("/api/v1/stats", headers={"X-API-Key": "wrong"}).status_code == 401
        scraped = httpx.get(server.url + "/metrics")  # no key needed
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        values = samples(scraped.text)
        journal = sum(p.stat().st_size for p in (server.data / "journal").glob("*"))
    finally:
        assert server.stop() == 0
    assert values[("llmring_events_appended_total", ())] == 3 + 5 + 1
    assert values[("llmring_receipts_issued_total", ())] == 1
    assert values[("llmring_seals_total", ())] == 0
    assert values[("llmring_compactions_total", ())] == 0
    for project, nanos in costs.items():
        assert nanos > 0
        assert values[("llmring_project_cost_nanos_total", (("project", project),))] == nanos
    assert values[("llmring_journal_bytes_appended_total", ())] > 0
    assert journal >= values[("llmring_journal_bytes_appended_total", ())]
    fsyncs = values[("llmring_journal_fsync_seconds_count", ())]
    assert fsyncs >= 1
    assert values[("llmring_journal_fsync_seconds_bucket", (("le", "+Inf"),))] == fsyncs
    requests = {labels[0][1]: v for (name, labels), v in values.items()
                if name == "llmring_http_requests_total"}
    assert requests["401"] == 1
    assert requests["200"] >= 3 + 1 + 2 + 1 + 1  # and the start's /health polls


def test_access_log_and_metrics_can_be_turned_off(tmp_path: Path) -> None:
    server = start(tmp_path / "data", extra=("--no-access-log", "--no-metrics"))
    try:
        assert httpx.get(server.url + "/metrics").status_code == 404
        r = httpx.post(server.url + "/api/v1/log", json=event(0),
                       headers=server.headers("alpha"))
        assert r.status_code == 200
    finally:
        assert server.stop() == 0
    assert access_lines(log_text(server.data, port_of(server.url))) == []


def test_seals_and_compactions_are_counted(tmp_path: Path) -> None:
    state = ServerState(ServerConfig(tmp_path / "data"))
    try:
        ledger = state.service.ledger
        for day in ("2026-01-01", "2026-01-01", "2026-01-02"):
            state.service.log_usage("alpha", event(0, timestamp=f"{day}T10:00:00Z"))
            ledger.seal()
        ledger.compact()
        values = samples(state.metrics.exposition()[0].decode())
    finally:
        state.close()
    assert values[("llmring_seals_total", ())] == 3
    assert values[("llmring_compactions_total", ())] == 1
    assert values[("llmring_events_appended_total", ())] == 3
