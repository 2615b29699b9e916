"""The operations of the HTTP API, each defined once: its name, HTTP method and path, its
parameters (where each travels over HTTP: path, query or JSON body), whether it is
scoped to the caller's project, the shape of its answer, and the ``LedgerService``
method that answers it.

Everything that speaks the API reads this table: the server's routes take their method
and path from it, the transports (``ledger.api.transport``: local, on an open data
directory, and HTTP, to ``llmring serve``) encode a call from it, and the clients and
the CLI name the operation they call; the server's OpenAPI schema documents each
operation's error answers from its ``errors()``. A parameter's name is the keyword of
the service method, so a call ``transport.call(LIST_LOGS, limit=10)`` is answered by
``service.list_logs(tenant, limit=10)`` locally and by ``GET /api/v1/logs?limit=10``
over HTTP, with the same dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from ledger.errors import (
    ERRORS,
    AuthenticationError,
    BudgetExceededError,
    ContentError,
    EntryTooLargeError,
    EventValidationError,
    IdConflictError,
    InvalidRequestError,
    LedgerError,
    NotFoundError,
    NothingToCertifyError,
    ReceiptNotFoundError,
    ReceiptRequestError,
    RequestError,
    RequestTimeoutError,
    RequestTooLargeError,
    RollupError,
    SpanValidationError,
    UnsupportedMediaTypeError,
)

Where = Literal["path", "query", "body", "whole_body", "local"]
BODY_METHODS = ("POST", "PUT")  # the methods whose request has a JSON body
Answer = Literal["json", "bytes", "text"]


def date_text(value: Any) -> str | None:
    """A date bound as the HTTP API takes it: ``YYYY-MM-DD`` for dates, ISO 8601 for
    datetimes (naive = UTC, the API's rule), text unchanged. The Python clients make a
    bound local before it gets here (``ledger.client.local_time``); the CLI sends its
    options' text."""
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"a date must be a datetime, a date or ISO 8601 text, not "
                    f"{type(value).__name__}")


def _comma_list(value: Any) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _list_or_none(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


def where_texts(value: Any) -> Any:
    """A metadata filter as a query string carries it: ``KEY=VALUE`` texts (one
    ``where`` parameter each); a mapping is written so, anything else sent as is."""
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    return list(value) if isinstance(value, list | tuple) else value


def _where_body(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def string_list(value: Any, name: str) -> list[str] | None:
    """``value`` (a list of strings, or None) as a list; a bare string, or anything
    else, is a ``TypeError`` naming the field (``tags="daily"`` is not five tags)."""
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list of strings, not a string: write "
                        f"{name}=[{value!r}]")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of strings, not {value!r}")
    return list(value)


def _tags(value: Any) -> Any:
    """Tags as sent: a list; a bare string is sent as is, for the server to refuse
    (422, as the local service does) rather than split into characters."""
    return value if value is None or isinstance(value, str) else list(value)


@dataclass(frozen=True)
class Param:
    """One parameter: its keyword, where it travels over HTTP (``whole_body``: the value
    is the JSON body itself; ``local``: not sent, e.g. a progress callback), and how it
    is written into a URL or body (``encode``)."""

    name: str
    where: Where = "query"
    encode: Callable[[Any], Any] | None = None


# Every operation may answer these: the ledger cannot serve now (a disk failure, a damaged
# directory …), or a bug (logged, no detail). ``LedgerLockedError``, ``ServerUnavailableError``
# and ``WitnessError`` are never answered by the ledger's server.
UNAVAILABLE: tuple[type[LedgerError], ...] = tuple(
    cls for cls in ERRORS if cls.status >= 500 and cls.code not in (
        "ledger_locked", "server_unavailable", "witness_unavailable"))


@dataclass(frozen=True)
class Operation:
    """One operation of the API. ``tenant``: scoped to one project (locally the
    transport's project, over HTTP the API key's); ``answer``: JSON, raw bytes or text;
    ``refuses``: the error classes its service method raises for a request it cannot
    serve (``errors()`` adds those every operation of its kind may answer)."""

    name: str
    method: str
    path: str
    service: str
    params: tuple[Param, ...] = ()
    tenant: bool = True
    answer: Answer = "json"
    summary: str = ""
    refuses: tuple[type[LedgerError], ...] = ()

    def errors(self) -> tuple[type[LedgerError], ...]:
        """Every error class the operation can answer with over HTTP: its ``refuses``; a
        missing or bad API key (401) when scoped to a project; values of the wrong type
        or out of bounds (422) when it takes parameters; a bad ``Content-Length``
        (400) or a body over the limit (413) for a POST; a request whose head or body
        arrives too late (408, ``ledger.server.connections``); and ``UNAVAILABLE``."""
        found: list[type[LedgerError]] = list(self.refuses)
        if self.tenant:
            found.append(AuthenticationError)
        if any(p.where != "local" for p in self.params):
            found.append(InvalidRequestError)
        if self.method in BODY_METHODS:
            found += [RequestError, RequestTooLargeError]
        found += [RequestTimeoutError, *UNAVAILABLE]
        return tuple(dict.fromkeys(found))

    def check(self, kwargs: dict[str, Any]) -> None:
        known = {p.name for p in self.params}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"{self.name}() got unexpected arguments: {', '.join(unknown)}")

    def http_request(self, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
        """(path, query parameters, JSON body or None) of a call over HTTP. ``None``
        values are left out of the query and the body."""
        from urllib.parse import quote

        self.check(kwargs)
        path = self.path
        query: dict[str, Any] = {}
        body: Any = None
        for p in self.params:
            if p.name not in kwargs:
                continue
            value = kwargs[p.name]
            if value is not None and p.encode is not None:
                value = p.encode(value)
            if p.where == "local":
                continue
            if p.where == "path":
                path = path.replace("{" + p.name + "}", quote(str(value), safe=""))
            elif p.where == "whole_body":
                body = value
            elif value is None:
                continue
            elif p.where == "query":
                query[p.name] = value
            else:
                body = {} if body is None else body
                body[p.name] = value
        if self.method in BODY_METHODS and body is None:
            body = {}
        return path, query, body


def _op(name: str, method: str, path: str, *params: Param, service: str | None = None,
        tenant: bool = True, answer: Answer = "json", summary: str = "",
        refuses: tuple[type[LedgerError], ...] = ()) -> Operation:
    return Operation(name=name, method=method, path=path, service=service or name,
                     params=params, tenant=tenant, answer=answer, summary=summary,
                     refuses=refuses)


def _q(name: str, encode: Callable[[Any], Any] | None = None) -> Param:
    return Param(name, "query", encode)


def _b(name: str, encode: Callable[[Any], Any] | None = None) -> Param:
    return Param(name, "body", encode)


def _path(name: str) -> Param:
    return Param(name, "path")


PAGING = (_q("limit"), _q("offset"))
WINDOW = (_q("start", date_text), _q("end", date_text))
EVENT_REFUSALS = (EventValidationError, IdConflictError, BudgetExceededError)
SELECTION = (_b("conversation_id"), _b("start_date", date_text), _b("end_date", date_text),
             _b("log_ids", _list_or_none), _b("since_last_receipt"), _b("where", _where_body))

# -- the project ----------------------------------------------------------------------------
WHOAMI = _op("whoami", "GET", "/api/v1/project", service="project",
             summary="The project of the API key")

# -- logging --------------------------------------------------------------------------------
LOG_USAGE = _op("log_usage", "POST", "/api/v1/log", Param("event", "whole_body", dict),
                summary="Log one LLM call (usage)", refuses=EVENT_REFUSALS)
LOG_BATCH = _op("log_batch", "POST", "/api/v1/log/batch",
                _b("events", lambda events: [dict(e) for e in events]),
                summary="Log many events atomically", refuses=EVENT_REFUSALS)
LOG_CONVERSATION = _op("log_conversation", "POST", "/api/v1/conversations/log",
                       _b("messages", list), Param("response", "body"),
                       _b("metadata", dict), _b("conversation_id"),
                       summary="Log one call with its conversation",
                       refuses=(*EVENT_REFUSALS, ContentError))

LOG_LITELLM = _op("log_litellm", "POST", "/api/v1/integrations/litellm",
                  Param("payloads", "whole_body",
                        lambda p: dict(p) if isinstance(p, dict) else list(p)),
                  summary="Record LiteLLM's logged calls (generic_api)",
                  refuses=EVENT_REFUSALS)

LOG_OTLP = _op("log_otlp", "POST", "/otlp/v1/traces", Param("traces", "whole_body", dict),
               summary="Record OpenTelemetry GenAI spans (OTLP/HTTP traces)",
               refuses=(SpanValidationError, IdConflictError, BudgetExceededError,
                        UnsupportedMediaTypeError))

# -- events ---------------------------------------------------------------------------------
LIST_LOGS = _op("list_logs", "GET", "/api/v1/logs", *PAGING, *WINDOW, _q("order"),
                summary="List the project's events", refuses=(RequestError,))
GET_LOG = _op("get_log", "GET", "/api/v1/logs/{log_id}", _path("log_id"),
              summary="One event of the project", refuses=(NotFoundError,))
LOG_CONTENT = _op("log_content", "GET", "/api/v1/logs/{log_id}/content", _path("log_id"),
                  answer="bytes", summary="The stored conversation content",
                  refuses=(NotFoundError,))

# -- reports --------------------------------------------------------------------------------
ROLLUP = _op("rollup", "GET", "/api/v1/usage/rollup", _q("by", _comma_list), _q("tz"),
             *WINDOW, _q("where", where_texts), summary="Calls, tokens and cost grouped",
             refuses=(RequestError, RollupError))
DIMENSIONS = _op("dimensions", "GET", "/api/v1/usage/dimensions",
                 summary="The project's declared dimensions")
SET_DIMENSIONS = _op("set_dimensions", "PUT", "/api/v1/usage/dimensions",
                     _b("keys", _list_or_none), summary="Declare the project's dimensions",
                     refuses=(RequestError,))
STATS = _op("stats", "GET", "/api/v1/stats",
            summary="The project's events, cost, log and storage")
EXPORT = _op("export", "GET", "/api/v1/exports/events", _q("format"), *WINDOW,
             _q("where", where_texts),
             answer="bytes", summary="Export the project's events",
             refuses=(RequestError,))

# -- the project's log tree -----------------------------------------------------------------
CHECKPOINT = _op("checkpoint", "GET", "/api/v1/log/checkpoint",
                 summary="Sign the project's log now")
LOG_INCLUSION = _op("log_inclusion", "GET", "/api/v1/log/inclusion/{log_id}",
                    _path("log_id"), _q("size"),
                    summary="A log's inclusion in the log tree",
                    refuses=(RequestError, NotFoundError))
ADD_COSIGNATURES = _op("add_cosignatures", "POST", "/api/v1/log/cosignatures", _b("note"),
                       summary="Store witnesses' cosignatures",
                       refuses=(RequestError, NotFoundError))
WITNESSES = _op("witnesses", "GET", "/api/v1/log/witnesses",
                summary="The log's witnesses and their state")
CONSISTENCY = _op("consistency", "GET", "/api/v1/log/consistency", _q("first"),
                  _q("second"), summary="Consistency proof between two sizes",
                  refuses=(RequestError,))

# -- the logs as c2sp.org/tlog-tiles resources ----------------------------------------------
TLOG_CHECKPOINT = _op("tlog_checkpoint", "GET", "/tlog/{project}/checkpoint",
                      _path("project"), tenant=False, answer="text",
                      summary="A log's latest cosigned checkpoint (tlog-tiles, public)",
                      refuses=(NotFoundError,))
# ``index`` is ``<N>[.p/<W>]`` and holds slashes (the route takes it as a path).
TLOG_ENTRIES = _op("tlog_entries", "GET", "/tlog/{project}/tile/entries/{index}",
                   _path("project"), _path("index"), answer="bytes",
                   summary="An entry bundle of the project's own log (tlog-tiles)",
                   refuses=(NotFoundError, EntryTooLargeError))
TLOG_TILE = _op("tlog_tile", "GET", "/tlog/{project}/tile/{level}/{index}",
                _path("project"), _path("level"), _path("index"), tenant=False,
                answer="bytes", summary="A hash tile of a log (tlog-tiles, public)",
                refuses=(NotFoundError,))

# -- receipts -------------------------------------------------------------------------------
GENERATE_RECEIPT = _op("generate_receipt", "POST", "/api/v1/receipts/generate", *SELECTION,
                       _b("description"), _b("tags", _tags),
                       Param("progress", "local"), summary="Generate a signed receipt",
                       refuses=(ReceiptRequestError, NothingToCertifyError))
PREVIEW_RECEIPT = _op("preview_receipt", "POST", "/api/v1/receipts/preview", *SELECTION,
                      summary="Preview a receipt", refuses=(ReceiptRequestError,))
UNCERTIFIED = _op("uncertified", "GET", "/api/v1/receipts/uncertified", *PAGING,
                  summary="Logs no receipt certifies")
LIST_RECEIPTS = _op("list_receipts", "GET", "/api/v1/receipts/", *PAGING,
                    summary="The project's receipts")
GET_RECEIPT = _op("get_receipt", "GET", "/api/v1/receipts/{receipt_id}",
                  _path("receipt_id"), summary="One signed receipt",
                  refuses=(ReceiptNotFoundError,))
RECEIPT_LOGS = _op("receipt_logs", "GET", "/api/v1/receipts/{receipt_id}/logs",
                   _path("receipt_id"), *PAGING, summary="The logs a receipt certifies",
                   refuses=(ReceiptNotFoundError,))
PROVE = _op("prove", "GET", "/api/v1/receipts/{receipt_id}/proof/{log_id}",
            _path("receipt_id"), _path("log_id"),
            summary="Proof bundle of one log in a receipt",
            refuses=(ReceiptNotFoundError,))

# -- budgets --------------------------------------------------------------------------------
SET_BUDGET = _op("set_budget", "PUT", "/api/v1/budgets/{name}", _path("name"),
                 _b("amount", str), _b("period"), _b("tz"),
                 _b("thresholds", _list_or_none), _b("webhook"), _b("webhook_secret"),
                 _b("hard"), summary="Create or replace a budget",
                 refuses=(InvalidRequestError,))
LIST_BUDGETS = _op("list_budgets", "GET", "/api/v1/budgets",
                   summary="The project's budgets")
REMOVE_BUDGET = _op("remove_budget", "DELETE", "/api/v1/budgets/{name}", _path("name"),
                    summary="Remove a budget", refuses=(NotFoundError,))
BUDGET_STATUS = _op("budget_status", "GET", "/api/v1/budgets/status",
                    summary="Each budget's spend and alerts this period")

# -- prices (``ledger.api.prices``) ---------------------------------------------------------
LIST_PRICES = _op("list_prices", "GET", "/api/v1/prices",
                  summary="The project's price overrides")
SET_PRICES = _op("set_prices", "POST", "/api/v1/prices", _b("rows", list), _b("replace"),
                 summary="Add or replace price override rows",
                 refuses=(InvalidRequestError,))
REMOVE_PRICE = _op("remove_price", "DELETE", "/api/v1/prices/{row_id}", _path("row_id"),
                   summary="Remove a price override row", refuses=(NotFoundError,))
SHOW_PRICE = _op("show_price", "GET", "/api/v1/prices/show", _q("model"), _q("provider"),
                 _q("at", date_text), _q("input_tokens"), _q("cached_input_tokens"),
                 _q("cache_write_tokens"), _q("output_tokens"), _q("reasoning_tokens"),
                 _q("log_id"), summary="Explain the price of a call or a stored event",
                 refuses=(InvalidRequestError, NotFoundError))

# -- public (no API key) --------------------------------------------------------------------
VERIFY_RECEIPT = _op("verify_receipt", "POST", "/api/v1/receipts/verify",
                     Param("document", "whole_body", dict), tenant=False,
                     summary="Verify a receipt (public)")
PUBLIC_KEYS = _op("public_keys", "GET", "/api/v1/receipts/public-keys.json", tenant=False,
                  summary="Every signing key")
PUBLIC_KEY_PEM = _op("public_key_pem", "GET", "/receipts/public-key.pem", tenant=False,
                     answer="text", summary="The current signing key (PEM)")

OPERATIONS: tuple[Operation, ...] = (
    WHOAMI, LOG_USAGE, LOG_BATCH, LOG_CONVERSATION, LOG_LITELLM, LOG_OTLP, LIST_LOGS, GET_LOG,
    LOG_CONTENT, ROLLUP, DIMENSIONS, SET_DIMENSIONS, EXPORT, STATS, CHECKPOINT, LOG_INCLUSION,
    ADD_COSIGNATURES, WITNESSES, CONSISTENCY, TLOG_CHECKPOINT, TLOG_ENTRIES, TLOG_TILE,
    GENERATE_RECEIPT, PREVIEW_RECEIPT, UNCERTIFIED, LIST_RECEIPTS, GET_RECEIPT, RECEIPT_LOGS,
    PROVE, SET_BUDGET, LIST_BUDGETS, REMOVE_BUDGET, BUDGET_STATUS, LIST_PRICES, SET_PRICES,
    REMOVE_PRICE, SHOW_PRICE, VERIFY_RECEIPT, PUBLIC_KEYS, PUBLIC_KEY_PEM)
BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}

__all__ = ["BY_NAME", "OPERATIONS", "UNAVAILABLE", "Operation", "Param", "date_text"]
