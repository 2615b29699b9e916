"""Budgets and their alerts against a real ``llmring serve`` process and a real webhook
receiver (an HTTP server in the test): each threshold crossed is delivered exactly once
per period with a valid HMAC, through 5xx answers (retried with backoff) and across a
restart of the server (nothing repeated, a pending alert delivered after); a hard budget
refuses further logs with 402 ``budget_exceeded`` and nothing is appended; the state is
visible over HTTP, in ``llmring budgets status`` and in ``/metrics``."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import serverproc
from tests.support.serverproc import Server
from tests.support.webhook_receiver import Received, Receiver

# Small backoff, many attempts: retries are quick and a receiver that is down for a
# while is not given up on.
FAST_RETRIES = ("--webhook-backoff", "0.05", "--webhook-backoff-max", "0.3",
                "--webhook-attempts", "200", "--webhook-timeout", "5")
CALL = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10,
        "output_tokens": 5}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def api(server: Server, project: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.headers(project), timeout=30)


def valid(request: Received, secret: str) -> bool:
    want = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers.get("x-llmring-signature", ""), want)


def delivered(requests: list[Received], project: str) -> dict[int, list[Received]]:
    """The alerts of ``project`` answered 200, by threshold."""
    out: dict[int, list[Received]] = {}
    for r in requests:
        body = r.json()
        if r.status == 200 and body["project"] == project:
            out.setdefault(body["threshold"], []).append(r)
    return out


def wait_until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def status_of(client: httpx.Client, name: str) -> dict[str, Any]:
    answer = client.get("/api/v1/budgets/status")
    assert answer.status_code == 200, answer.text
    return next(b for b in answer.json()["budgets"] if b["name"] == name)


def test_alerts_once_per_threshold_through_retries_and_a_restart(
        tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    server = serverproc.start(data, projects=("alpha", "beta", "gamma"), extra=FAST_RETRIES)
    try:
        alpha, beta, gamma = (api(server, p) for p in ("alpha", "beta", "gamma"))
        made = alpha.put("/api/v1/budgets/monthly", json={
            "amount": "1", "period": "month", "tz": "America/Los_Angeles",
            "thresholds": [75, 90, 100], "webhook": receiver.url})
        assert made.status_code == 200, made.text
        secret = made.json()["webhook_secret"]
        assert "webhook_secret" not in alpha.get("/api/v1/budgets").text

        # 75% crossed by a batch; the receiver answers 500 twice: delivered on the 3rd try.
        receiver.answers[:] = [500, 500]
        batch = alpha.post("/api/v1/log/batch", json={"events": [
            {**CALL, "cost": "0.40", "event_id": "a-1"},
            {**CALL, "cost": "0.40", "event_id": "a-2"}]})
        assert batch.status_code == 200, batch.text
        got = receiver.wait_for(lambda rs: 75 in delivered(rs, "alpha"))
        assert [r.status for r in got] == [500, 500, 200]
        assert len({r.body for r in got}) == 1  # each retry sends the same signed body
        # An identical repeat adds nothing: still below 90%.
        again = alpha.post("/api/v1/log", json={**CALL, "cost": "0.40", "event_id": "a-1"})
        assert again.status_code == 200 and again.json()["created"] is False
        assert status_of(alpha, "monthly")["spent"] == "0.800000000"

        # One log crosses 90% and 100% at once: both alerts, each once.
        one = alpha.post("/api/v1/log", json={**CALL, "cost": "0.25", "event_id": "a-3"})
        assert one.status_code == 200, one.text
        receiver.wait_for(lambda rs: {90, 100} <= set(delivered(rs, "alpha")))
        alerts = delivered(receiver.received(), "alpha")
        assert sorted(alerts) == [75, 90, 100]
        assert all(len(v) == 1 and valid(v[0], secret) for v in alerts.values())
        body = alerts[100][0].json()
        assert body["type"] == "budget.threshold_crossed" and body["budget"] == "monthly"
        assert (body["amount"], body["spent"], body["spent_nanos"]) == (
            "1.000000000", "1.050000000", 1_050_000_000)
        assert body["period"]["tz"] == "America/Los_Angeles"
        assert body["delivery_id"] == alerts[100][0].headers["x-llmring-delivery"]
        assert len({v[0].json()["delivery_id"] for v in alerts.values()}) == 3
        state = status_of(alpha, "monthly")
        assert state["crossed"] == [75, 90, 100] and state["percent"] == 105.0
        assert state["last_alert"]["state"] == "delivered" and not state["refusing"]

        # The receiver is down while beta's budget is crossed: its alert stays pending.
        beta_made = beta.put("/api/v1/budgets/weekly", json={
            "amount": "0.10", "period": "week", "tz": "Asia/Tokyo", "thresholds": [50],
            "webhook": receiver.url, "webhook_secret": "s" * 32}).json()
        assert "webhook_secret" not in beta_made  # given, not made: not echoed
        receiver.stop()
        assert beta.post("/api/v1/log", json={**CALL, "cost": "0.06"}).status_code == 200
        wait_until(lambda: status_of(beta, "weekly")["last_alert"]["attempts"] >= 1)
        assert status_of(beta, "weekly")["last_alert"]["state"] == "pending"

        # A hard budget refuses the next log, on every write route, and writes nothing.
        hard = gamma.put("/api/v1/budgets/cap", json={
            "amount": "0.5", "period": "day", "tz": "UTC", "hard": True})
        assert hard.status_code == 200 and hard.json()["hard"] is True
        assert gamma.post("/api/v1/log", json={**CALL, "cost": "0.6"}).status_code == 200
        before = gamma.get("/api/v1/logs").json()["total"]
        refusals = [
            gamma.post("/api/v1/log", json={**CALL, "cost": "0.01"}),
            gamma.post("/api/v1/log/batch", json={"events": [{**CALL, "cost": "0"}]}),
            gamma.post("/api/v1/conversations/log", json={
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": {**CALL, "cost": "0.01"}})]
        for refused in refusals:
            assert refused.status_code == 402, refused.text
            assert refused.json()["code"] == "budget_exceeded"
        assert gamma.get("/api/v1/logs").json()["total"] == before
        assert status_of(gamma, "cap")["refusing"] is True

        # llmring budgets status, through the server.
        shown = serverproc.cli(data, "--server", server.url, "--api-key",
                               server.keys["alpha"], "budgets", "status", "--json")
        assert orjson.loads(shown.stdout)["budgets"][0]["crossed"] == [75, 90, 100]
        table = serverproc.cli(data, "--server", server.url, "--api-key",
                               server.keys["gamma"], "budgets", "status").stdout
        assert "cap" in table and "yes" in table and "$0.6000" in table

        # /metrics: the budget gauges, parsed with prometheus_client's own parser.
        text = httpx.get(server.url + "/metrics").text
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text)
                   for s in family.samples if s.name.startswith("llmring_budget")}
        key = (("budget", "monthly"), ("project", "alpha"))
        assert samples[("llmring_budget_spent_nanos", key)] == 1_050_000_000
        assert samples[("llmring_budget_limit_nanos", key)] == 1_000_000_000
        assert all(samples[("llmring_budget_threshold_crossed",
                            tuple(sorted((*key, ("threshold", str(t))))))] == 1
                   for t in (75, 90, 100))
        assert samples[("llmring_budget_refusing", key)] == 0
        assert samples[("llmring_budget_refusing",
                        (("budget", "cap"), ("project", "gamma")))] == 1
        for client in (alpha, beta, gamma):
            client.close()
    finally:
        assert server.stop() == 0  # SIGTERM: a graceful stop

    # Restart on the same directory with the receiver back: the pending alert arrives,
    # once; none delivered before is sent again.
    seen = len(receiver.received())
    receiver.start()
    server = serverproc.start(data, projects=("alpha", "beta"), extra=FAST_RETRIES)
    try:
        got = receiver.wait_for(lambda rs: 50 in delivered(rs, "beta"))
        with api(server, "beta") as beta:
            wait_until(lambda: status_of(beta, "weekly")["last_alert"]["state"]
                       == "delivered")
        after = receiver.received()[seen:]
        assert [r.json()["project"] for r in after] == ["beta"]
        assert valid(after[0], "s" * 32)
        assert len(delivered(got, "beta")[50]) == 1
        assert sorted(delivered(receiver.received(), "alpha")) == [75, 90, 100]
        with api(server, "alpha") as alpha:  # the spend was read back from the events
            state = status_of(alpha, "monthly")
            assert (state["spent"], state["crossed"]) == ("1.050000000", [75, 90, 100])
    finally:
        assert server.stop() == 0
    assert sum(len(v) for v in delivered(receiver.received(), "alpha").values()) == 3


def test_the_cli_sets_lists_shows_and_removes_budgets_on_a_data_directory(
        tmp_path: Path) -> None:
    """``llmring budgets`` in embedded mode: the same operations, tables and --json, a
    hard budget refusing ``record`` with a message (exit 2), bad input exit 2 with a
    message and no traceback."""
    from click.testing import CliRunner

    from ledger.cli import cli

    def llmring(*args: str) -> Any:
        runner = CliRunner(env={"LLMRING_LEDGER_DIR": None, "LLMRING_PROJECT": None,
                                "TZ": "Asia/Tokyo"})
        return runner.invoke(cli, ["--data", str(tmp_path / "data"), "--project", "acme",
                                   *args], catch_exceptions=False)

    made = llmring("budgets", "set", "daily", "--amount", "10", "--period", "day", "--tz",
                   "Europe/Paris", "--thresholds", "75,90,100", "--webhook",
                   "https://hooks.example.com/x")
    assert made.exit_code == 0 and "$10.0000 per day (Europe/Paris)" in made.output
    assert "whsec_" in made.output  # shown once
    cap = llmring("budgets", "set", "cap", "--amount", "0.001", "--period", "month",
                  "--hard", "--json")
    assert orjson.loads(cap.output)["hard"] is True
    assert orjson.loads(cap.output)["tz"] == "Asia/Tokyo"  # the machine's zone by default
    assert llmring("record", "--provider", "p", "--model", "m", "--cost", "0.002"
                   ).exit_code == 0
    refused = llmring("record", "--provider", "p", "--model", "m", "--cost", "0.002")
    assert refused.exit_code == 2 and "budget 'cap'" in refused.output
    assert "$0.002 of $0.001" in refused.output
    listed = llmring("budgets", "list")
    assert "daily" in listed.output and "whsec_" not in listed.output
    status = orjson.loads(llmring("budgets", "status", "--json").output)
    by_name = {b["name"]: b for b in status["budgets"]}
    assert by_name["cap"]["refusing"] and by_name["cap"]["crossed"] == [75, 90, 100]
    assert by_name["daily"]["spent"] == "0.002000000"
    table = llmring("budgets", "status").output
    assert "200.00%" in table and "(no webhook)" in table
    for bad in (("--amount", "0", "--period", "day"), ("--amount", "1", "--period", "day",
                                                       "--thresholds", "a"),
                ("--amount", "1", "--period", "day", "--tz", "Nowhere/Land")):
        out = llmring("budgets", "set", "x", *bad)
        assert out.exit_code == 2 and "Traceback" not in out.output and out.output
    assert llmring("budgets", "remove", "cap").exit_code == 0
    assert llmring("budgets", "remove", "cap").exit_code == 2
    assert llmring("record", "--provider", "p", "--model", "m", "--cost", "0").exit_code == 0
