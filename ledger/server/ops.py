"""Operating the server: the access log and the Prometheus ``/metrics`` (docs/http-api.md).

``Operations(asgi, app)`` is the outermost ASGI layer ``llmring serve`` runs: around the
fast path and the routed app alike, it times each request, counts it by status and (unless
turned off) writes one line to the ``llmring.access`` logger::

    POST /api/v1/log 200 0.8ms project=alpha client=127.0.0.1

— the method, the path (never the query string, whose values could hold secrets;
control characters and spaces escaped, so one request is one line), the
status, the latency in milliseconds and the project of the request's API key when it
authenticated (``-`` otherwise). The API key itself is never written.

``Metrics`` is one server's Prometheus registry: the request counter and the journal's
fsync histogram are fed as they happen; the ledger's own counts (events, bytes, seals,
compactions, receipts, cost per project: plain integers the write path keeps under its
lock), each budget's state (spent, limit, thresholds crossed, refusing; labelled by
project and budget) and each witness's state (size cosigned, entries behind, failures;
labelled by project and witness) are read when ``/metrics`` is scraped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import LedgerError

access_log = logging.getLogger("llmring.access")

PROJECT = "llmring.project"  # the scope key the authenticated project is recorded under
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                 2.5)


ACCESS_LINE = "%s %s %s %.1fms project=%s client=%s"


def record_project(scope: Scope, project: str) -> None:
    """Note the request's authenticated project, for its access-log line."""
    scope[PROJECT] = project


class _LedgerCollector(Collector):
    """The ledger's counts since it opened, read at scrape time."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Any]:
        appender, sealer = self.ledger.appender, self.ledger.sealer
        yield CounterMetricFamily("llmring_events_appended",
                                  "New events appended to the journal.",
                                  value=appender.events_appended)
        yield CounterMetricFamily("llmring_journal_bytes_appended",
                                  "Bytes written to the journal (events, receipts, "
                                  "commits).", value=self.ledger.journal.written)
        yield CounterMetricFamily("llmring_seals", "Seals of the journal into segments.",
                                  value=sealer.seals)
        yield CounterMetricFamily("llmring_compactions",
                                  "Segments written by compaction.",
                                  value=sealer.compactions)
        yield CounterMetricFamily("llmring_receipts_issued", "Receipts issued.",
                                  value=appender.receipts_appended)
        cost = CounterMetricFamily("llmring_project_cost_nanos",
                                   "Cost of the new events of each project, in "
                                   "nano-dollars (USD 1e-9).", labels=["project"])
        for project, nanos in sorted(dict(appender.cost_nanos).items()):
            cost.add_metric([project], nanos)
        yield cost
        up = GaugeMetricFamily("llmring_ledger_writable",
                               "1 while the ledger takes writes.")
        up.add_metric([], 1.0 if self.ledger.journal.healthy else 0.0)
        yield up


class _BudgetCollector(Collector):
    """Each budget's state this period (``ledger.api.budgets``), read at scrape time."""

    def __init__(self, budgets: Any) -> None:
        self.budgets = budgets

    def collect(self) -> Iterator[Any]:
        labels = ["project", "budget"]
        spent = GaugeMetricFamily("llmring_budget_spent_nanos", "Spend of the budget's "
                                  "current period, in nano-dollars.", labels=labels)
        limit = GaugeMetricFamily("llmring_budget_limit_nanos", "The budget's amount per "
                                  "period, in nano-dollars.", labels=labels)
        crossed = GaugeMetricFamily("llmring_budget_threshold_crossed", "1 once the "
                                    "threshold (percent) is crossed this period.",
                                    labels=[*labels, "threshold"])
        refusing = GaugeMetricFamily("llmring_budget_refusing", "1 while a hard budget "
                                     "refuses the project's logs.", labels=labels)
        for state in self.budgets.states():
            key = [state["project"], state["name"]]
            spent.add_metric(key, state["spent_nanos"])
            limit.add_metric(key, state["amount_nanos"])
            for threshold in state["thresholds"]:
                crossed.add_metric([*key, str(threshold)],
                                   1.0 if threshold in state["crossed"] else 0.0)
            refusing.add_metric(key, 1.0 if state["refusing"] else 0.0)
        yield from (spent, limit, crossed, refusing)


class _WitnessCollector:
    """Each project's log with each witness of ``witnesses.policy``, read at scrape time
    (``LedgerService.witnesses``): the size it last cosigned, how far behind the latest
    checkpoint that is, its failures in a row, and whether the quorum is met."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        labels = ["project", "witness"]
        size = GaugeMetricFamily("llmring_witness_cosigned_size", "The log size the "
                                 "witness last cosigned.", labels=labels)
        behind = GaugeMetricFamily("llmring_witness_behind_entries", "Entries between "
                                   "the latest checkpoint and the one the witness last "
                                   "cosigned.", labels=labels)
        failures = GaugeMetricFamily("llmring_witness_failures", "Failed submissions to "
                                     "the witness in a row (0: the last one succeeded).",
                                     labels=labels)
        quorum = GaugeMetricFamily("llmring_witness_quorum_met", "1 while the latest "
                                   "checkpoint is cosigned by the policy's quorum.",
                                   labels=["project"])
        try:
            if self.service.witness_policy() is None:
                return
            for project in self.service.ledger.tenants():
                status = self.service.witnesses(project)
                latest = status["checkpoint_size"] or 0
                for w in status["witnesses"]:
                    held = w["cosigned_size"] or 0
                    size.add_metric([project, w["name"]], float(held))
                    behind.add_metric([project, w["name"]], float(max(latest - held, 0)))
                    failures.add_metric([project, w["name"]], float(w["failures"]))
                quorum.add_metric([project], 1.0 if status["quorum_met"] else 0.0)
        except LedgerError:  # the policy changed and no longer parses: no witness gauges
            return
        yield from (size, behind, failures, quorum)


class Metrics:
    """One server's Prometheus registry (its own, so that several servers in one process
    do not share counts)."""

    def __init__(self, ledger: Any, budgets: Any = None, service: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("llmring_http_requests", "HTTP requests answered, by "
                                "status.", ["status"], registry=self.registry)
        self.fsync = Histogram("llmring_journal_fsync_seconds", "Latency of the journal's "
                               "group-commit fsyncs.", buckets=FSYNC_BUCKETS,
                               registry=self.registry)
        self.registry.register(_LedgerCollector(ledger))
        if budgets is not None:
            self.registry.register(_BudgetCollector(budgets))
        if service is not None:
            self.registry.register(_WitnessCollector(service))
        ledger.journal.on_sync = self.fsync.observe
        self._by_status: dict[int, Any] = {}

    def request(self, status: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status.setdefault(status, self.requests.labels(str(status)))
        child.inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Operations:
    """Outermost ASGI layer: counts every request by status in the server's ``Metrics``
    and, with ``access_log``, writes its line to the ``llmring.access`` logger."""

    def __init__(self, asgi: ASGIApp, app: Any, *, access_log: bool = True) -> None:
        self.asgi = asgi
        self.app = app  # the FastAPI app, whose state holds the server once started
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.asgi(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.asgi(scope, receive, tracked)
        finally:
            server = getattr(self.app.state, "server", None)
            if server is not None and status:
                server.metrics.request(status)
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                # the record made directly: ``info`` would look up the caller's source
                # line on every request, which no access line shows
                access_log.handle(access_log.makeRecord(
                    access_log.name, logging.INFO, __file__, 0, ACCESS_LINE,
                    (scope["method"], _printable(scope["path"]), status or "-",
                     (time.perf_counter() - started) * 1000, scope.get(PROJECT, "-"),
                     _client(scope)), None))


def _printable(path: str) -> str:
    """The path with control characters escaped (a percent-encoded newline cannot
    forge a line of the log)."""
    if path.isprintable() and " " not in path:
        return path
    return path.encode("unicode_escape").decode("ascii").replace(" ", "%20")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def configure_access_log(enabled: bool) -> None:
    """The ``llmring.access`` logger of ``llmring serve``: its lines to stderr at INFO
    whatever ``--log-level`` says (``--no-access-log`` turns them off)."""
    import sys

    access_log.propagate = False
    access_log.handlers.clear()
    if not enabled:
        access_log.disabled = True
        return
    handler = _AccessHandler(sys.stderr)
    handler.setFormatter(_AccessFormatter("%(asctime)s access %(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.disabled = False


class _AccessFormatter(logging.Formatter):
    """``logging.Formatter`` whose time text is made once per second, not per line."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._text, record.msecs)


class _AccessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The access log's handler: lines logged in a running event loop are written
    together once per turn of the loop (one write for the answers of a turn, not one
    each); any other line at once."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._pending.append(line)  # (``handle`` holds the handler's lock)
        if loop is None:
            self._write()
        elif len(self._pending) == 1:  # the first of this turn
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or broken: nowhere to say so
            pass
