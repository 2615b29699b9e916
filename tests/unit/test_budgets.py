"""Budgets on a local data directory (``ledger.api.budgets`` through ``LedgerService``,
the one place every write goes through): the spend of the current period is read from
the stored events and kept as events arrive (repeats add nothing, events dated outside
the period do not count), each threshold is recorded once per period (across a reopen,
re-armed when the period rolls over), a hard budget refuses every write route with 402
and writes nothing, bad budgets are refused with 422 and change nothing, secrets stay
private; and the server's deliverer (``ledger.server.webhooks``) gives up as
documented."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger.api.service import LedgerService
from ledger.errors import BudgetExceededError, InvalidRequestError, NotFoundError
from ledger.server.webhooks import Deliverer, DeliveryPolicy
from tests.support.webhook_receiver import Receiver

CALL = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10,
        "output_tokens": 5}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 8, 12, tzinfo=UTC))


def open_service(data: Path, clock: Clock) -> LedgerService:
    svc = LedgerService(data)
    svc.budgets.clock = clock
    return svc


@pytest.fixture
def svc(tmp_path: Path, clock: Clock) -> Iterator[LedgerService]:
    s = open_service(tmp_path / "data", clock)
    try:
        yield s
    finally:
        s.close()


def at(clock: Clock, cost: str, **fields: Any) -> dict[str, Any]:
    return {**CALL, "cost": cost, "timestamp": clock.now.isoformat(), **fields}


def crossings(data: Path) -> list[tuple[str, int]]:
    path = data / "budget-alerts.jsonl"
    if not path.exists():
        return []
    return [(r["budget"], r["threshold"]) for r in map(orjson.loads, path.read_bytes()
                                                         .splitlines())
            if r["type"] == "crossed"]


def state(svc: LedgerService, name: str) -> dict[str, Any]:
    return next(b for b in svc.budget_status("acme")["budgets"] if b["name"] == name)


def test_no_budget_no_file_and_nothing_observed(svc: LedgerService, clock: Clock) -> None:
    svc.log_usage("acme", at(clock, "5"))
    assert not (svc.data / "budgets.json").exists()
    assert not (svc.data / "budget-alerts.jsonl").exists()


def test_the_spend_is_read_from_the_stored_events_then_kept_as_they_arrive(
        svc: LedgerService, clock: Clock) -> None:
    svc.log_usage("acme", at(clock, "0.30", event_id="before"))
    svc.log_usage("acme", {**at(clock, "7"), "timestamp": "2026-03-07T23:00:00Z"})
    svc.log_usage("other", at(clock, "9"))
    svc.set_budget("acme", "daily", amount="1", period="day", tz="UTC")
    assert state(svc, "daily")["spent"] == "0.300000000"  # yesterday and others left out
    svc.log_batch("acme", [at(clock, "0.30", event_id="before"),  # a repeat: nothing
                           at(clock, "0.20", event_id="b-1")])
    svc.log_conversation("acme", messages=[{"role": "user", "content": "hi"}],
                         metadata=at(clock, "0.05"))
    svc.log_usage("acme", {**at(clock, "3"), "timestamp": "2026-03-09T00:00:00Z"})
    s = state(svc, "daily")
    assert (s["spent"], s["spent_nanos"], s["percent"]) == ("0.550000000", 550_000_000,
                                                            55.0)
    assert s["current_period"] == {"start": "2026-03-08T00:00:00+00:00",
                                   "end": "2026-03-09T00:00:00+00:00", "tz": "UTC"}


def test_each_threshold_is_recorded_once_per_period(tmp_path: Path, clock: Clock) -> None:
    data = tmp_path / "data"
    svc = open_service(data, clock)
    svc.set_budget("acme", "daily", amount="1", period="day", tz="Asia/Tokyo",
                   thresholds=[90, 50, 75])
    svc.log_usage("acme", at(clock, "0.6"))
    svc.log_usage("acme", at(clock, "0.35"))  # 95%: 75 and 90 at once
    svc.log_usage("acme", at(clock, "0.01"))
    assert crossings(data) == [("daily", 50), ("daily", 75), ("daily", 90)]
    assert state(svc, "daily")["crossed"] == [50, 75, 90]
    svc.close()
    svc = open_service(data, clock)  # reopened: read back, not recorded again
    svc.log_usage("acme", at(clock, "0.01"))
    assert len(crossings(data)) == 3 and state(svc, "daily")["percent"] == 97.0
    clock.now += timedelta(days=1)  # the next day in Tokyo: re-armed, spend from events
    assert state(svc, "daily")["crossed"] == [] and state(svc, "daily")["spent"] == (
        "0.000000000")
    svc.log_usage("acme", at(clock, "0.5"))
    assert crossings(data)[3:] == [("daily", 50)]
    svc.close()


def test_a_budget_set_past_a_threshold_alerts_at_once(svc: LedgerService,
                                                      clock: Clock) -> None:
    svc.log_usage("acme", at(clock, "2"))
    svc.set_budget("acme", "daily", amount="1", period="day")
    assert crossings(svc.data) == [("daily", 75), ("daily", 90), ("daily", 100)]
    svc.set_budget("acme", "daily", amount="1.5", period="day")  # replaced: not again
    assert len(crossings(svc.data)) == 3


def test_a_hard_budget_refuses_every_write_route_and_writes_nothing(
        svc: LedgerService, clock: Clock) -> None:
    svc.set_budget("acme", "cap", amount="1", period="month", tz="America/Los_Angeles",
                   hard=True)
    svc.log_usage("acme", at(clock, "1"))  # reaching 100% is accepted
    size = svc.ledger.size("acme")
    for write in (lambda: svc.log_usage("acme", at(clock, "0")),
                  lambda: svc.log_batch("acme", [at(clock, "0")]),
                  lambda: svc.log_conversation(
                      "acme", messages=[{"role": "user", "content": "x"}],
                      metadata=at(clock, "0"))):
        with pytest.raises(BudgetExceededError) as info:
            write()
        assert info.value.status == 402 and info.value.code == "budget_exceeded"
    assert svc.ledger.size("acme") == size
    assert not (svc.data / "content").exists() or not any((svc.data / "content").rglob(
        "*.json"))
    assert state(svc, "cap")["refusing"] is True
    svc.log_usage("other", at(clock, "1"))  # another project is not refused
    svc.remove_budget("acme", "cap")
    svc.log_usage("acme", at(clock, "0"))


@pytest.mark.parametrize(("field", "value"), [
    ("amount", "0"), ("amount", "-1"), ("amount", "ten"), ("amount", "0.0000000001"),
    ("amount", True), ("amount", 873715582847.4138), ("amount", "922337203.685477581"),
    ("name", "status"), ("period", "year"), ("tz", "Mars/Olympus"), ("tz", "posix/UTC"),
    ("thresholds", []), ("thresholds", [0]), ("thresholds", "75"), ("thresholds", [7.5]),
    ("webhook", "ftp://x.example"), ("webhook", "http://"), ("webhook", "http://a:99999/"),
    ("webhook_secret", "short"), ("hard", "yes"), ("name", "../x"), ("name", ""),
])
def test_a_bad_budget_is_refused_and_changes_nothing(svc: LedgerService, field: str,
                                                     value: Any) -> None:
    good: dict[str, Any] = {"name": "daily", "amount": "1", "period": "day",
                            "webhook": "https://hooks.example.com/x"}
    with pytest.raises(InvalidRequestError) as info:
        svc.set_budget("acme", **{**good, field: value})
    assert info.value.status == 422 and info.value.detail
    assert not (svc.data / "budgets.json").exists()
    assert svc.list_budgets("acme") == {"budgets": []}


def test_secrets_are_made_once_kept_private_and_never_listed(svc: LedgerService) -> None:
    made = svc.set_budget("acme", "daily", amount="1", period="day",
                          webhook="https://hooks.example.com/x")
    secret = made["webhook_secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    again = svc.set_budget("acme", "daily", amount="2", period="day",
                           webhook="https://hooks.example.com/x")
    assert "webhook_secret" not in again  # kept, not made again
    assert svc.budgets.secret_of("acme", "daily") == secret
    given = svc.set_budget("acme", "weekly", amount="5", period="week",
                           webhook="https://hooks.example.com/y", webhook_secret="k" * 20)
    assert "webhook_secret" not in given
    shown = orjson.dumps([svc.list_budgets("acme"), svc.budget_status("acme")])
    assert secret.encode() not in shown and b"k" * 20 not in shown
    assert stat.S_IMODE(os.stat(svc.data / "budgets.json").st_mode) == 0o600


def test_a_budget_belongs_to_its_project(svc: LedgerService) -> None:
    svc.set_budget("acme", "daily", amount="1", period="day")
    assert svc.list_budgets("other") == {"budgets": []}
    assert svc.budget_status("other")["budgets"] == []
    with pytest.raises(NotFoundError):
        svc.remove_budget("other", "daily")
    assert [b["name"] for b in svc.list_budgets("acme")["budgets"]] == ["daily"]


def test_only_allowed_webhook_hosts_are_taken(svc: LedgerService) -> None:
    svc.budgets.allowed_hosts = frozenset({"hooks.example.com"})
    svc.set_budget("acme", "ok", amount="1", period="day",
                   webhook="https://HOOKS.example.com/x")
    with pytest.raises(InvalidRequestError, match="not allowed"):
        svc.set_budget("acme", "no", amount="1", period="day",
                       webhook="http://169.254.169.254/latest")


# -- the deliverer ---------------------------------------------------------------------------
def wait_state(svc: LedgerService, name: str, want: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        last = state(svc, name)["last_alert"]
        if last is not None and last["state"] == want:
            return dict(last)
        time.sleep(0.01)
    raise AssertionError(state(svc, name))


@pytest.mark.parametrize(("answers", "attempts", "error"), [
    ([503] * 3, 3, "gave up after 3 attempts (HTTP 503)"),
    ([404], 0, "HTTP 404: not retried"),
])
def test_the_deliverer_gives_up_as_documented(svc: LedgerService, clock: Clock,
                                              answers: list[int], attempts: int,
                                              error: str) -> None:
    receiver = Receiver()
    receiver.answers[:] = answers
    deliverer = Deliverer(svc.budgets, DeliveryPolicy(attempts=3, backoff=0.01))
    deliverer.start()
    try:
        svc.set_budget("acme", "daily", amount="1", period="day", thresholds=[100],
                       webhook=receiver.url)
        svc.log_usage("acme", at(clock, "1"))
        last = wait_state(svc, "daily", "failed")
        assert (last["attempts"], last["error"]) == (attempts, error)
        assert len(receiver.received()) == len(answers)
    finally:
        deliverer.stop()
        receiver.stop()


def test_an_alert_of_a_removed_budget_is_not_sent(svc: LedgerService, clock: Clock) -> None:
    svc.set_budget("acme", "daily", amount="1", period="day", thresholds=[100],
                   webhook="http://127.0.0.1:9/")
    svc.log_usage("acme", at(clock, "1"))
    svc.remove_budget("acme", "daily")
    deliverer = Deliverer(svc.budgets, DeliveryPolicy(backoff=0.01))
    deliverer.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while svc.budgets.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        alert = svc.budgets.alerts.latest("acme", "daily")
        assert alert is not None and (alert.state, alert.error) == (
            "failed", "the budget was removed")
    finally:
        deliverer.stop()
