"""Budgets of a project, evaluated as events arrive (docs/http-api.md, "Budgets").

``Budgets`` belongs to a ``LedgerService``, below both transports: every accepted append
(one log, a batch, a conversation; the server's fast path calls the same service
methods) is ``observe``d after it is durable, and ``check`` runs before it. For each
budget it keeps the spend of the current calendar period (``ledger.model.periods``):
computed from the stored events (one query) when the budget is opened or its period
rolls over, then the cost of each new event whose ``ts`` lies in the period is added
(identical repeats and pairings add nothing). A project without budgets costs one dict
lookup per append; with budgets, each new event costs O(1) per budget.

Each threshold crossed is recorded once per (budget, period start, threshold) in the
alert log (``ledger.storage.budgets.AlertLog``) with the exact JSON body of its webhook;
``ledger.server.webhooks`` delivers it. A hard budget whose period has spent 100% or
more refuses the project's further logs with ``BudgetExceededError`` (402).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson

from ledger.errors import BudgetExceededError, InvalidRequestError, NotFoundError
from ledger.model.batch import BatchAcks
from ledger.model.event import Ack, format_ts, ts_to_us
from ledger.model.money import nanos_to_decimal, usd_to_nanos
from ledger.model.periods import PERIODS, Period, period_of
from ledger.model.tenant import NAME_RULE, check_tenant, is_name
from ledger.storage.budgets import Alert, AlertLog, BudgetFile, BudgetSpec

ALERT_TYPE = "budget.threshold_crossed"
DEFAULT_THRESHOLDS = (75, 90, 100)
MAX_THRESHOLD = 1000
MAX_AMOUNT_NANOS = (2**63 - 1) // (MAX_THRESHOLD // 100)
"""The largest budget: its highest threshold, in nano-USD, is still a 64-bit integer."""
MAX_THRESHOLDS = 20
MAX_BUDGETS = 100  # per project
MAX_URL = 2048
MIN_SECRET = 16
MAX_SECRET = 256


def money(nanos: int) -> str:
    """An exact USD amount as decimal text with 9 places (``"7.500000000"``)."""
    return f"{nanos_to_decimal(nanos):f}"


def _short(nanos: int) -> str:
    """An exact USD amount without trailing zeros (``"0.002"``), for messages."""
    text = money(nanos).rstrip("0")
    return text.removesuffix(".")


def instant_text(when: datetime) -> str:
    return format_ts(ts_to_us(when.astimezone(UTC)))


# -- checking a budget as given -----------------------------------------------------------
RESERVED_NAMES = frozenset({"status"})
"""Names a budget cannot take: ``/api/v1/budgets/status`` is the budgets' status."""


def check_name(name: Any) -> str:
    if not is_name(name):
        raise InvalidRequestError(f"invalid budget name {name!r}: {NAME_RULE}")
    if name in RESERVED_NAMES:
        raise InvalidRequestError(f"a budget cannot be named {name!r}: /api/v1/budgets/"
                                  f"{name} is the budgets' {name}")
    return name


def check_amount(amount: Any) -> int:
    if isinstance(amount, bool) or not isinstance(amount, str | int | float | Decimal):
        raise InvalidRequestError("amount must be a USD amount as decimal text, e.g. "
                                  "\"10\" or \"2.50\"")
    try:
        nanos = usd_to_nanos(amount)
    except ValueError as exc:
        raise InvalidRequestError(f"amount: {exc}") from None
    if nanos <= 0:
        raise InvalidRequestError("amount must be more than 0")
    if nanos > MAX_AMOUNT_NANOS:
        raise InvalidRequestError(f"amount must be at most {money(MAX_AMOUNT_NANOS)} "
                                  "USD")
    return nanos


def check_zone(tz: Any) -> str:
    from projections.rollups import RollupError, check_timezone

    try:
        return check_timezone(tz)
    except RollupError as exc:
        raise InvalidRequestError(f"tz: {exc}") from None


def check_thresholds(thresholds: Any) -> tuple[int, ...]:
    if isinstance(thresholds, str) or not isinstance(thresholds, list | tuple):
        raise InvalidRequestError("thresholds must be a list of percentages, e.g. "
                                  "[75, 90, 100]")
    if not thresholds or len(thresholds) > MAX_THRESHOLDS:
        raise InvalidRequestError(f"thresholds: give 1 to {MAX_THRESHOLDS} percentages")
    for t in thresholds:
        if type(t) is not int or not 1 <= t <= MAX_THRESHOLD:
            raise InvalidRequestError(f"thresholds: {t!r} is not a whole percentage from 1 "
                                      f"to {MAX_THRESHOLD}")
    return tuple(sorted(set(thresholds)))


def check_webhook(url: Any, allowed_hosts: frozenset[str] | None) -> str | None:
    if url is None:
        return None
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise InvalidRequestError(f"webhook must be an http(s) URL of at most {MAX_URL} "
                                  "characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or not host or not url.isprintable():
        raise InvalidRequestError(f"webhook: {url!r} is not an http:// or https:// URL "
                                  "with a host")
    if allowed_hosts is not None and host.lower() not in allowed_hosts:
        raise InvalidRequestError(f"webhook: host {host!r} is not allowed by this server "
                                  "(llmring serve --webhook-host)")
    return url


def check_secret(secret: Any) -> str | None:
    if secret is None:
        return None
    if (not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET
            or not secret.isascii() or not secret.isprintable()):
        raise InvalidRequestError(f"webhook_secret must be {MIN_SECRET} to {MAX_SECRET} "
                                  "printable ASCII characters")
    return secret


def public(spec: BudgetSpec) -> dict[str, Any]:
    """What the API shows of a budget (never its secret)."""
    return {"name": spec.name, "project": spec.project, "amount": money(spec.amount_nanos),
            "amount_nanos": spec.amount_nanos, "period": spec.period, "tz": spec.tz,
            "thresholds": list(spec.thresholds), "webhook": spec.webhook,
            "hard": spec.hard, "created_at": spec.created_at, "updated_at": spec.updated_at}


# -- running totals ------------------------------------------------------------------------
@dataclass
class _Running:
    """A budget and its spend in the current period: ``base`` is the project's log size
    when the spend was read from the stored events (later seqs are added as they come)."""

    spec: BudgetSpec
    period: Period | None = None
    start_us: int = 0
    end_us: int = 0
    base: int = 0
    spent: int = 0
    next_nanos: int = 0
    """The spend at which the lowest threshold not yet recorded this period is reached
    (``_evaluate`` has nothing to do below it); -1 once every one is recorded."""

    def reached(self, threshold: int) -> bool:
        return self.spent * 100 >= threshold * self.spec.amount_nanos


class Budgets:
    """The budgets of one open data directory and their running totals.

    ``ledger``: the open ``Ledger`` (its snapshot gives the spend at open and rollover);
    ``clock``: the current time (aware), for tests; ``allowed_hosts``: when set, the
    only webhook hosts accepted; ``on_alert``: called after a crossing is recorded (the
    server's deliverer wakes up)."""

    def __init__(self, ledger: Any, *, clock: Callable[[], datetime] | None = None) -> None:
        self.ledger = ledger
        self.file = BudgetFile(ledger.layout.budgets)
        self.alerts = AlertLog(ledger.layout.budget_alerts)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.allowed_hosts: frozenset[str] | None = None
        self.on_alert: Callable[[], None] | None = None
        self._lock = threading.RLock()
        self._specs: list[BudgetSpec] = self.file.load()
        self._by_tenant: dict[str, list[_Running]] = {}
        now = self.clock()
        with self._lock:
            for spec in self._specs:
                run = _Running(spec)
                self._by_tenant.setdefault(spec.project, []).append(run)
                self._refresh(run, now)

    # -- the write path -------------------------------------------------------------------
    def watches(self, tenant: str) -> bool:
        """Whether ``tenant`` has budgets (else ``check`` and ``observe`` do nothing)."""
        return bool(self._by_tenant.get(tenant))

    def check(self, tenant: str) -> None:
        """Refuse a write of ``tenant`` while one of its hard budgets is spent."""
        runs = self._by_tenant.get(tenant)
        if not runs:
            return
        with self._lock:
            now = self.clock()
            for run in runs:
                if run.spec.hard:
                    self._refresh(run, now)
                    if run.reached(100):
                        assert run.period is not None
                        raise BudgetExceededError(
                            f"budget {run.spec.name!r} of project {tenant!r} is spent: "
                            f"${_short(run.spent)} of ${_short(run.spec.amount_nanos)} this "
                            f"{run.spec.period} (from {run.period.local()[0]}); it is a "
                            "hard budget, so logs are refused until the period ends or the "
                            "budget is raised or removed")

    def observe(self, tenant: str, acks: Sequence[Ack] | BatchAcks) -> None:
        """Add the cost of the events an append created to the budgets of ``tenant``
        whose period holds their ``ts``, and record each threshold now reached."""
        runs = self._by_tenant.get(tenant)
        if not runs:
            return
        created: Iterable[tuple[int, int, int]] = (
            acks.created() if isinstance(acks, BatchAcks)
            else ((a.seq, a.ts_us, a.cost_nanos) for a in acks if a.created))
        with self._lock:
            now = self.clock()
            for run in runs:
                self._refresh(run, now)
            for seq, ts_us, cost in created:
                for run in runs:
                    if seq >= run.base and run.start_us <= ts_us < run.end_us:
                        run.spent += cost
            for run in runs:
                self._evaluate(run, now)

    def _refresh(self, run: _Running, now: datetime) -> None:
        """Start the budget's current period if it is not the one held: its spend read
        from the stored events, and thresholds already reached recorded."""
        if run.period is not None and run.period.contains(now):
            return
        from projections.rollups import rollup

        spec = run.spec
        run.period = period_of(spec.period, spec.tz, now)
        run.start_us = ts_to_us(run.period.start)
        run.end_us = ts_to_us(run.period.end)
        snapshot = self.ledger.snapshot()
        run.base = snapshot.sizes.get(spec.project, 0)
        rows = rollup(snapshot, spec.project, [], start=run.period.start,
                      end=run.period.end)
        run.spent = rows[0].cost_nanos if rows else 0
        run.next_nanos = 0  # a new period: every threshold is to be looked at
        self._evaluate(run, now)

    def _evaluate(self, run: _Running, now: datetime) -> None:
        assert run.period is not None
        if run.next_nanos < 0 or run.spent < run.next_nanos:
            return  # the common case, per append: no threshold newly reached
        spec = run.spec
        start = instant_text(run.period.start)
        fired = False
        for threshold in spec.thresholds:
            if not run.reached(threshold) or self.alerts.is_crossed(
                    spec.project, spec.name, start, threshold):
                continue
            delivery_id = str(uuid.uuid4())
            body = {"type": ALERT_TYPE, "delivery_id": delivery_id,
                    "project": spec.project, "budget": spec.name,
                    "period": run.period.as_json(), "threshold": threshold,
                    "amount": money(spec.amount_nanos), "amount_nanos": spec.amount_nanos,
                    "spent": money(run.spent), "spent_nanos": run.spent,
                    "crossed_at": instant_text(now)}
            self.alerts.append({"type": "crossed", "delivery_id": delivery_id,
                                "project": spec.project, "budget": spec.name,
                                "period_start": start, "threshold": threshold,
                                "webhook": spec.webhook,
                                "body": orjson.dumps(body).decode(),
                                "at": instant_text(now)})
            fired = fired or spec.webhook is not None
        left = [t for t in spec.thresholds
                if not self.alerts.is_crossed(spec.project, spec.name, start, t)]
        run.next_nanos = -(-min(left) * spec.amount_nanos // 100) if left else -1
        if fired and self.on_alert is not None:
            self.on_alert()

    # -- configuration --------------------------------------------------------------------
    def set(self, tenant: str, name: str, *, amount: Any, period: Any, tz: Any = "UTC",
            thresholds: Any = DEFAULT_THRESHOLDS, webhook: Any = None,
            webhook_secret: Any = None, hard: Any = False) -> dict[str, Any]:
        """Create or replace budget ``name`` of ``tenant``; the answer is the budget, and
        ``webhook_secret`` once when the server made it (a webhook without a secret
        given gets a new one, or keeps the one it had)."""
        check_tenant(tenant)
        name = check_name(name)
        nanos = check_amount(amount)
        tz = "UTC" if tz is None else tz
        thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
        hard = False if hard is None else hard
        if period not in PERIODS:
            raise InvalidRequestError(f"period must be one of {', '.join(PERIODS)}, not "
                                      f"{period!r}")
        tz = check_zone(tz)
        levels = check_thresholds(list(thresholds) if isinstance(thresholds, tuple)
                                  else thresholds)
        url = check_webhook(webhook, self.allowed_hosts)
        secret = check_secret(webhook_secret)
        if type(hard) is not bool:
            raise InvalidRequestError("hard must be true or false")
        with self._lock:
            old = next((s for s in self._specs
                        if s.project == tenant and s.name == name), None)
            if old is None and sum(s.project == tenant for s in self._specs) >= MAX_BUDGETS:
                raise InvalidRequestError(f"a project has at most {MAX_BUDGETS} budgets")
            made = None
            if secret is None and url is not None:
                secret = old.secret if old is not None and old.secret else None
                if secret is None:
                    secret = made = "whsec_" + secrets.token_urlsafe(32)
            now = instant_text(self.clock())
            spec = BudgetSpec(project=tenant, name=name, amount_nanos=nanos, period=period,
                              tz=tz, thresholds=levels, webhook=url, secret=secret,
                              hard=hard, created_at=old.created_at if old else now,
                              updated_at=now)
            specs = [s for s in self._specs if s is not old] + [spec]
            self.file.save(specs)
            self._specs = specs
            runs = [r for r in self._by_tenant.get(tenant, []) if r.spec is not old]
            run = _Running(spec)
            self._by_tenant[tenant] = [*runs, run]
            self._refresh(run, self.clock())
        answer = public(spec)
        if made is not None:
            answer["webhook_secret"] = made
        return answer

    def list(self, tenant: str) -> dict[str, Any]:
        check_tenant(tenant)
        with self._lock:
            return {"budgets": [public(s) for s in self._specs if s.project == tenant]}

    def remove(self, tenant: str, name: str) -> dict[str, Any]:
        check_tenant(tenant)
        with self._lock:
            old = next((s for s in self._specs
                        if s.project == tenant and s.name == name), None)
            if old is None:
                raise NotFoundError(f"no budget {name!r} in this project")
            specs = [s for s in self._specs if s is not old]
            self.file.save(specs)
            self._specs = specs
            runs = [r for r in self._by_tenant.get(tenant, []) if r.spec is not old]
            if runs:
                self._by_tenant[tenant] = runs
            else:
                self._by_tenant.pop(tenant, None)
        return {"removed": name}

    def secret_of(self, project: str, name: str) -> str | None:
        """The current HMAC secret of a budget's webhook (None: no such budget now)."""
        with self._lock:
            for s in self._specs:
                if s.project == project and s.name == name:
                    return s.secret
        return None

    # -- state ----------------------------------------------------------------------------
    def _state(self, run: _Running) -> dict[str, Any]:
        assert run.period is not None
        spec = run.spec
        start = instant_text(run.period.start)
        latest = self.alerts.latest(spec.project, spec.name)
        return {**public(spec), "current_period": run.period.as_json(),
                "spent": money(run.spent), "spent_nanos": run.spent,
                "percent": round(run.spent * 100 / spec.amount_nanos, 2),
                "crossed": [t for t in spec.thresholds
                            if self.alerts.is_crossed(spec.project, spec.name, start, t)],
                "refusing": spec.hard and run.reached(100),
                "last_alert": None if latest is None else latest.public()}

    def status(self, tenant: str) -> dict[str, Any]:
        """Each budget of ``tenant`` now: its period, spend, percent, thresholds crossed
        this period, whether it refuses logs, and its last alert's delivery."""
        check_tenant(tenant)
        with self._lock:
            now = self.clock()
            out = []
            for run in self._by_tenant.get(tenant, []):
                self._refresh(run, now)
                out.append(self._state(run))
        return {"project": tenant, "budgets": out}

    def states(self) -> list[dict[str, Any]]:
        """Every budget's state (``status`` of every project), for metrics."""
        with self._lock:
            now = self.clock()
            out = []
            for runs in self._by_tenant.values():
                for run in runs:
                    self._refresh(run, now)
                    out.append(self._state(run))
        return out

    def pending(self) -> list[Alert]:
        return self.alerts.pending()


__all__ = ["ALERT_TYPE", "DEFAULT_THRESHOLDS", "Budgets", "money", "public"]
