"""Delivery of budget alerts to their webhooks, in ``llmring serve`` (docs/http-api.md,
"Budget alerts").

``Deliverer`` is a thread started and stopped with the server. It sends each alert the
alert log (``ledger.storage.budgets.AlertLog``) holds as pending: a POST of the exact
JSON body recorded at the crossing, with ``X-Llmring-Signature: sha256=<hex>`` (the
HMAC-SHA256 of those body bytes, keyed by the budget's secret as UTF-8),
``X-Llmring-Delivery`` (the delivery id) and ``X-Llmring-Event``. A 2xx answer is
recorded ``delivered``; a connection error, a timeout, a 408, 429 or 5xx is a failed
attempt, retried after ``backoff`` × 2ⁿ seconds (at most ``backoff_max``), up to
``attempts`` attempts in all; any other answer, a host the server does not allow, or a
budget since removed, ends it ``failed``. Every outcome is recorded (fsynced) before the
next step, so a restart resumes pending deliveries where they were and never sends a
delivered one again (a crash between the answer and its record sends it once more:
receivers dedupe by ``delivery_id``). Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ledger.api.budgets import ALERT_TYPE, Budgets, instant_text
from ledger.storage.budgets import Alert

if TYPE_CHECKING:  # httpx is imported on the first delivery: an idle server lacks it
    import httpx

log = logging.getLogger("llmring.webhooks")
SIGNATURE_HEADER = "X-Llmring-Signature"
USER_AGENT = "llmring-ledger-webhooks"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Llmring-Signature`` value of ``body``: ``sha256=`` and the hex
    HMAC-SHA256 of the body's bytes keyed by the secret's UTF-8 bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryPolicy:
    """How alerts are sent: ``attempts`` in all per alert, the first retry after
    ``backoff`` seconds and each next one twice as late (at most ``backoff_max``),
    ``timeout`` seconds per attempt; ``allowed_hosts``: when set, the only hosts sent to."""

    attempts: int = 8
    backoff: float = 1.0
    backoff_max: float = 300.0
    timeout: float = 10.0
    allowed_hosts: frozenset[str] | None = None


class Deliverer:
    """The thread that sends the budgets' pending alerts (see the module docstring)."""

    def __init__(self, budgets: Budgets, policy: DeliveryPolicy | None = None) -> None:
        self.budgets = budgets
        self.policy = policy or DeliveryPolicy()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._due: dict[str, float] = {}  # delivery id → monotonic time of its next attempt
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    def start(self) -> None:
        self.budgets.on_alert = self._wake.set
        self._thread = threading.Thread(target=self._run, name="llmring-webhooks",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the attempt in progress (its outcome recorded); pending alerts stay
        pending for the next start."""
        self.budgets.on_alert = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._http is not None:
            self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the round: an alert recorded during it wakes the next
            wait = None
            try:
                wait = self._round()
            except Exception:  # a bug, or the alert log unwritable: say so, go on later
                log.exception("budget alert delivery failed")
                wait = max(self.policy.backoff, 1.0)
            self._wake.wait(wait)

    def _round(self) -> float | None:
        """Send every pending alert that is due; the seconds until the next is due
        (None: none pending)."""
        pending = self.budgets.pending()
        ids = {a.delivery_id for a in pending}
        self._due = {k: v for k, v in self._due.items() if k in ids}
        for alert in pending:
            if self._stop.is_set():
                return None
            if self._due.get(alert.delivery_id, 0.0) <= time.monotonic():
                self._attempt(alert)
        now = time.monotonic()
        waits = [self._due.get(a.delivery_id, now) - now for a in self.budgets.pending()]
        return max(0.0, min(waits)) if waits else None

    def _attempt(self, alert: Alert) -> None:
        record = self.budgets.alerts.append
        import httpx

        assert alert.webhook is not None
        if self._http is None:
            self._http = httpx.Client(timeout=self.policy.timeout, follow_redirects=False,
                                      headers={"User-Agent": USER_AGENT})
        secret = self.budgets.secret_of(alert.project, alert.budget)
        host = (urlsplit(alert.webhook).hostname or "").lower()
        allowed = self.policy.allowed_hosts
        if secret is None:
            self._end(alert, "failed", error="the budget was removed")
            return
        if allowed is not None and host not in allowed:
            self._end(alert, "failed", error=f"host {host!r} is not allowed "
                                             "(llmring serve --webhook-host)")
            return
        body = alert.body.encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER:
                   signature(secret, body), "X-Llmring-Delivery": alert.delivery_id,
                   "X-Llmring-Event": ALERT_TYPE}
        error: str
        try:
            response = self._http.post(alert.webhook, content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            status = response.status_code
            if 200 <= status < 300:
                self._end(alert, "delivered", status=status)
                return
            error = f"HTTP {status}"
            if not (status >= 500 or status in (408, 429)):
                self._end(alert, "failed", error=f"{error}: not retried")
                return
        attempts = alert.attempts + 1
        record({"type": "attempt_failed", "delivery_id": alert.delivery_id,
                "error": error, "at": self._now()})
        log.warning("budget alert %s to %s: attempt %d failed (%s)", alert.delivery_id,
                    host, attempts, error)
        if attempts >= self.policy.attempts:
            self._end(alert, "failed", error=f"gave up after {attempts} attempts ({error})")
            return
        delay = min(self.policy.backoff * 2 ** (attempts - 1), self.policy.backoff_max)
        self._due[alert.delivery_id] = time.monotonic() + delay

    def _end(self, alert: Alert, state: str, **fields: Any) -> None:
        self.budgets.alerts.append({"type": state, "delivery_id": alert.delivery_id,
                                    **fields, "at": self._now()})
        self._due.pop(alert.delivery_id, None)
        if state == "failed":
            log.warning("budget alert %s of %s/%s not delivered: %s", alert.delivery_id,
                        alert.project, alert.budget, fields.get("error"))

    def _now(self) -> str:
        return instant_text(self.budgets.clock())


__all__ = ["SIGNATURE_HEADER", "Deliverer", "DeliveryPolicy", "signature"]
