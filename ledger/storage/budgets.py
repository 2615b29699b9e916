"""The stored files of budgets (docs/formats.md): the budgets themselves and the
append-only record of their alerts.

``budgets.json`` (``BudgetFile``) holds every project's budgets, each with its webhook's
HMAC secret, replaced atomically on every change (0600). Only the process holding the
data directory's lock changes it (``llmring serve``, or an embedded command).

``budget-alerts.jsonl`` (``AlertLog``) records each threshold crossing once, with the
exact JSON body its webhook is sent, and then each delivery attempt that failed and how
the delivery ended; every line is appended and fsynced before it is acted on, so that a
restart knows which alerts were crossed (never recorded twice) and which deliveries are
still due (sent again, never lost)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from ledger.errors import ConfigError
from ledger.storage.durable import append_line, write_atomic

BUDGETS_FORMAT = "llmring-budgets/v1"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """One budget of one project: ``amount_nanos`` per ``period`` (day, week, month) in
    zone ``tz``; alerts at each of ``thresholds`` (percent of the amount), sent to
    ``webhook`` signed with ``secret``; ``hard``: logs are refused once 100% is spent."""

    project: str
    name: str
    amount_nanos: int
    period: str
    tz: str
    thresholds: tuple[int, ...]
    webhook: str | None
    secret: str | None
    hard: bool
    created_at: str
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "name": self.name,
                "amount_nanos": self.amount_nanos, "period": self.period, "tz": self.tz,
                "thresholds": list(self.thresholds), "webhook": self.webhook,
                "secret": self.secret, "hard": self.hard, "created_at": self.created_at,
                "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BudgetSpec:
        return cls(project=str(obj["project"]), name=str(obj["name"]),
                   amount_nanos=int(obj["amount_nanos"]), period=str(obj["period"]),
                   tz=str(obj["tz"]), thresholds=tuple(int(t) for t in obj["thresholds"]),
                   webhook=obj.get("webhook"), secret=obj.get("secret"),
                   hard=bool(obj.get("hard", False)), created_at=str(obj["created_at"]),
                   updated_at=str(obj["updated_at"]))


class BudgetFile:
    """``budgets.json``: read once when opened, written whole (atomically) on change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[BudgetSpec]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != BUDGETS_FORMAT:
            raise ConfigError(f"{self.path} is not a {BUDGETS_FORMAT} file")
        try:
            return [BudgetSpec.from_json(b) for b in data["budgets"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.path}: a budget is malformed ({exc})") from None

    def save(self, budgets: list[BudgetSpec]) -> None:
        data = {"format": BUDGETS_FORMAT, "budgets": [b.to_json() for b in budgets]}
        write_atomic(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


# -- the alert log -------------------------------------------------------------------------
DELIVERY_STATES = ("none", "pending", "delivered", "failed")


@dataclass(slots=True)
class Alert:
    """One recorded crossing and its delivery: ``state`` is ``none`` (no webhook),
    ``pending``, ``delivered`` or ``failed`` (given up: ``error`` says why);
    ``attempts``: failed attempts so far."""

    delivery_id: str
    project: str
    budget: str
    period_start: str
    threshold: int
    webhook: str | None
    body: str
    crossed_at: str
    state: str
    attempts: int = 0
    error: str | None = None
    ended_at: str | None = None

    def public(self) -> dict[str, Any]:
        return {"delivery_id": self.delivery_id, "threshold": self.threshold,
                "period_start": self.period_start, "crossed_at": self.crossed_at,
                "state": self.state, "attempts": self.attempts, "error": self.error,
                "ended_at": self.ended_at}


@dataclass
class AlertLog:
    """``budget-alerts.jsonl``, replayed when opened. Lines (one JSON object each)::

        {"type": "crossed", "delivery_id", "project", "budget", "period_start",
         "threshold", "webhook", "body", "at"}
        {"type": "attempt_failed", "delivery_id", "error", "at"}
        {"type": "delivered", "delivery_id", "status", "at"}
        {"type": "failed", "delivery_id", "error", "at"}      (given up)
    """

    path: Path
    alerts: dict[str, Alert] = field(default_factory=dict)  # by delivery id, in order
    crossed: set[tuple[str, str, str, int]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for number, line in self._lines():
            try:
                self._apply(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{self.path}, line {number}: not an alert record "
                                  f"({exc})") from None

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        for number, line in enumerate(lines[:-1], 1):  # the last: empty, or a torn write
            if line.strip():
                yield number, line

    def _apply(self, rec: dict[str, Any]) -> None:
        kind = rec["type"]
        if kind == "crossed":
            alert = Alert(delivery_id=str(rec["delivery_id"]), project=str(rec["project"]),
                          budget=str(rec["budget"]), period_start=str(rec["period_start"]),
                          threshold=int(rec["threshold"]), webhook=rec["webhook"],
                          body=str(rec["body"]), crossed_at=str(rec["at"]),
                          state="pending" if rec["webhook"] else "none")
            self.alerts[alert.delivery_id] = alert
            self.crossed.add((alert.project, alert.budget, alert.period_start,
                              alert.threshold))
            return
        alert = self.alerts[str(rec["delivery_id"])]
        if kind == "attempt_failed":
            alert.attempts += 1
            alert.error = str(rec["error"])
        elif kind in ("delivered", "failed"):
            alert.state = kind
            alert.ended_at = str(rec["at"])
            if kind == "failed":
                alert.error = str(rec["error"])
        else:
            raise ValueError(f"unknown record type {kind!r}")

    def append(self, rec: dict[str, Any]) -> None:
        """Record ``rec`` durably (fsynced), then apply it."""
        with self._lock:
            append_line(self.path, orjson.dumps(rec) + b"\n")
            self._apply(rec)

    def is_crossed(self, project: str, budget: str, period_start: str, threshold: int
                   ) -> bool:
        return (project, budget, period_start, threshold) in self.crossed

    def pending(self) -> list[Alert]:
        with self._lock:
            return [replace(a) for a in self.alerts.values() if a.state == "pending"]

    def latest(self, project: str, budget: str) -> Alert | None:
        """The last alert recorded for the budget (a copy), or None."""
        with self._lock:
            for alert in reversed(self.alerts.values()):
                if alert.project == project and alert.budget == budget:
                    return replace(alert)
        return None


__all__ = ["DELIVERY_STATES", "Alert", "AlertLog", "BudgetFile", "BudgetSpec"]
