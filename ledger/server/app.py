"""The ASGI application: what the server holds open (the ``Ledger`` of one data
directory, its API keys, conversation content, signing keys, receipts), request body
limits, and one handler answering every project error (``ledger.errors``) with its
status: ``{"detail": …, "code": …}`` plus the error's evidence.

The operations themselves are ``ledger.api.service.LedgerService``'s. The server is the one
process holding the data directory's lock. Endpoints that touch the
ledger are plain ``def`` functions, run in the thread pool, so concurrent appends share
the journal's group-commit fsyncs. Shutdown closes the ledger, which seals the journal.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api.apikeys import ApiKeyStore
from ledger.api.service import LedgerService
from ledger.core.sealer import DEFAULT_SEAL_INTERVAL
from ledger.errors import (
    OWNER_HEADER,
    EventValidationError,
    InternalError,
    InvalidRequestError,
    LedgerError,
    MisdirectedError,
    RequestError,
    RequestTooLargeError,
    as_ledger_error,
    error_body,
    error_class,
)
from ledger.server.allocator import release
from ledger.server.ops import Metrics
from ledger.server.webhooks import Deliverer, DeliveryPolicy
from ledger.server.witnessing import SubmissionPolicy, WitnessSubmitter

log = logging.getLogger("llmring.server")

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_BODY = 64 * 1024 * 1024
BATCH_PATHS = ("/api/v1/log/batch",)
EVENT_PATHS = ("/api/v1/log", *BATCH_PATHS)
# Routes taking many events in one body: ``--max-batch-body`` applies.
LARGE_BODY_PATHS = (*BATCH_PATHS, "/api/v1/integrations/litellm", "/otlp/v1/traces")


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    max_body: int = DEFAULT_MAX_BODY
    max_batch_body: int = DEFAULT_MAX_BATCH_BODY
    accept_loss: bool = False  # cut a journal damaged inside at the damage (docs/cli.md)
    seal_rows: int | None = None  # seal at this many unsealed events (None: the default)
    metrics: bool = True  # serve GET /metrics (docs/http-api.md)
    webhooks: DeliveryPolicy = field(default_factory=DeliveryPolicy)  # budget alerts
    witnesses: SubmissionPolicy = field(default_factory=SubmissionPolicy)  # add-checkpoint
    owns: list[str] | None = None  # --owns: the projects this server writes (None: all)
    url: str | None = None  # --url: where other servers send this server's projects' clients
    seal_interval: float | None = DEFAULT_SEAL_INTERVAL  # seconds; None: rows and close only
    iceberg: bool | None = None  # publish the Iceberg table (None: if the directory has it)


class ServerState:
    """What the endpoints share, opened at startup and closed at shutdown: the data
    directory's ``LedgerService``, its API keys, the thread delivering budget alerts and
    the one submitting checkpoints to the witnesses of ``witnesses.policy`` (``start``
    runs them, ``close`` stops them before closing the ledger). A policy file that does
    not parse stops the server from starting (``PolicyError``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.service = LedgerService(config.data_dir, accept_loss=config.accept_loss,
                                     owns=config.owns, url=config.url,
                                     seal_interval=config.seal_interval,
                                     iceberg=config.iceberg,
                                     seal_rows=config.seal_rows)
        self.service.budgets.allowed_hosts = config.webhooks.allowed_hosts
        self.api_keys = ApiKeyStore(config.data_dir)
        self.deliverer = Deliverer(self.service.budgets, config.webhooks)
        try:
            policy = self.service.witness_policy()
        except LedgerError:
            self.service.close()
            raise
        self.submitter = (WitnessSubmitter(self.service.ledger, policy, config.witnesses)
                          if policy is not None else None)
        self.metrics = Metrics(self.service.ledger, self.service.budgets, self.service)

    def start(self) -> None:
        self.deliverer.start()
        if self.submitter is not None:
            self.submitter.start()

    def close(self) -> None:
        try:
            self.deliverer.stop()
        finally:
            try:
                if self.submitter is not None:
                    self.submitter.stop()
            finally:
                self.service.close()


# -- body limits -------------------------------------------------------------------------
class BodyLimit:
    """Refuse request bodies over the limit with 413 before the app reads them: by
    ``Content-Length`` when given, else while the body streams in."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(scope, receive, send, RequestError(
                        "the request has a Content-Length that is not a number"))
                    return
                if declared > limit:
                    drained = declared <= _drain_limit(limit) and await _drain(
                        receive, _drain_limit(limit))
                    await _refuse(scope, receive, send, _too_large(limit, scope["path"]),
                                  close=not drained)
                    return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                drained = not message.get("more_body", False) or await _drain(
                    receive, _drain_limit(limit) - len(body))
                await _refuse(scope, receive, send, _too_large(limit, scope["path"]),
                                  close=not drained)
                return
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int, path: str) -> RequestTooLargeError:
    more = ("" if path in LARGE_BODY_PATHS
            else " (POST /api/v1/log/batch takes more)")
    return RequestTooLargeError(
        f"request body too large: at most {limit:,} bytes are accepted here; send fewer "
        f"events per request{more}")


def _drain_limit(limit: int) -> int:
    """How much of a refused body is read and dropped so that its client, still sending,
    gets the answer rather than a reset: twice the limit, at least 16 MiB."""
    return max(2 * limit, 16 * 1024 * 1024)


async def _drain(receive: Receive, budget: int) -> bool:
    """Read and drop the rest of a refused body, at most ``budget`` bytes (the connection
    layer's body timeout bounds the time); True when all of it was read."""
    while budget >= 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return budget >= 0
    return False


async def _refuse(scope: Scope, receive: Receive, send: Send, error: LedgerError, *,
                  close: bool = True) -> None:
    """Answer ``error`` instead of the app; ``close``: the body was not read to its end, so
    the connection cannot carry another request."""
    headers = {"Connection": "close"} if close else None
    await error_response(error, headers=headers)(scope, receive, send)


# -- errors ------------------------------------------------------------------------------
INTERNAL_ERROR = "internal error; the server log has the details"


class InternalErrors:
    """Answer an exception no handler took (a bug) with a logged 500, and end there:
    Starlette's own last handler re-raises after answering, and uvicorn then drops the
    connection under the client's next request on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # part of an answer is out: only closing the connection is honest
                raise
            log.error("unhandled error", exc_info=exc)
            await error_response(InternalError(INTERNAL_ERROR))(scope, receive, send)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems, errors = [], []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            where = (loc[0] + ": " + ".".join(loc[1:])) if len(loc) > 1 else loc[0]
        else:
            where = ".".join(loc) or "request"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "is required"
        elif err.get("type") == "extra_forbidden":
            msg = "is not a known field"
        elif err.get("type") == "json_invalid":
            msg = "is not valid JSON: " + str(err.get("ctx", {}).get("error", msg))
        problems.append(f"{where}: {msg}")
        errors.append({"loc": loc, "msg": msg, "type": str(err.get("type", ""))})
    return "; ".join(problems) or "invalid request", errors


def _validation_error(path: str, exc: RequestValidationError) -> LedgerError:
    """The error a request the schema refused stands for: an invalid event on the
    routes that take events (as the ledger would refuse it), else an invalid request."""
    message, errors = _validation_detail(exc)
    if path in EVENT_PATHS and all(err["type"] != "json_invalid" for err in errors):
        problems, indexes = [], set()
        for err in errors:
            loc = err["loc"][1:] if err["loc"][:1] == ["body"] else err["loc"]
            batch_item = path in BATCH_PATHS and len(loc) > 1 and loc[0] == "events"
            if batch_item and loc[1].isdigit():
                indexes.add(loc[1])
                loc = loc[2:]
            problems.append(f"{'.'.join(loc) or 'body'}: {err['msg']}")
        index = int(indexes.pop()) if len(indexes) == 1 else None
        return EventValidationError.from_response(message,
                                                  {"problems": problems, "index": index})
    return InvalidRequestError.from_response(message, {"errors": errors})


def error_response(exc: LedgerError, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    """The answer to a refused request, the one shape of every error the server sends:
    ``ledger.errors.error_body`` (``{"detail", "code", …evidence}``, plus ``extra``)
    with the error's status."""
    if exc.status >= 500 and not isinstance(exc, InternalError):
        log.error("server-side failure: %s", exc)
    return JSONResponse({**error_body(exc), **extra}, status_code=exc.status,
                        headers=headers)


def _http_error(exc: StarletteHTTPException) -> LedgerError:
    """The project error a Starlette ``HTTPException`` stands for (401 from ``auth``, 404
    for an unknown path, 405 for a method the path does not take): the class of its
    status, with its detail."""
    cls = error_class(None, exc.status_code)
    if cls.status != exc.status_code:  # a status no class has: a bad request of it
        cls = RequestError if exc.status_code < 500 else InternalError
    error = cls.from_response(exc.detail, {})
    error.status = exc.status_code
    return error


def _allowed_methods(request: Request) -> str:
    """A 405's ``Allow``: the methods of the request's resource, as the OpenAPI schema
    documents them at the most specific path that names it (``/budgets/status`` rather
    than ``/budgets/{name}``); Starlette's own names only the first route's. A path the
    schema does not document: every method some route takes there."""
    app = request.app
    documented = getattr(app.state, "allow_by_path", None)
    if documented is None:
        documented = app.state.allow_by_path = sorted(
            ((path.count("{"), compile_path(path)[0],
              ", ".join(m.upper() for m in methods if m.upper() in _METHODS))
             for path, methods in app.openapi().get("paths", {}).items()),
            key=lambda row: row[0])
    path = request.scope["path"]
    for _, pattern, methods in documented:
        if pattern.match(path):
            return methods  # type: ignore[no-any-return]
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _install_error_handlers(app: FastAPI) -> None:
    """One handler for every project error (its ``status``, ``code`` and evidence); a
    builtin ``ValueError`` from a library is a bad request; anything else is a logged 500
    with no traceback in the answer."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = _validation_error(request.url.path, exc)
        return error_response(error, errors=_validation_detail(exc)[1])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return error_response(_http_error(exc), headers=headers or None)

    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        error = as_ledger_error(exc)
        assert error is not None  # registered for LedgerError and ValueError only
        owner = error.owner if isinstance(error, MisdirectedError) else None
        return error_response(error, headers={OWNER_HEADER: owner} if owner else None)

    app.add_exception_handler(LedgerError, _refused)
    app.add_exception_handler(ValueError, _refused)  # a library refused a request's value

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(InternalError(INTERNAL_ERROR))


def _install_metrics(app: FastAPI) -> None:
    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def metrics(request: Request) -> Response:
        """The server's counters in the Prometheus text format, without an API key
        (operator data: per-project cost included; `llmring serve --no-metrics` turns
        it off)."""
        body, content_type = request.app.state.server.metrics.exposition()
        return Response(body, media_type=content_type)


# -- the app -----------------------------------------------------------------------------
def create_app(data_dir: str | Path | ServerConfig, *, state: ServerState | None = None,
               **options: Any) -> FastAPI:
    """The server app over ``data_dir``. The ledger is opened when the app starts (its
    lifespan) and closed, sealing the journal, when it stops; ``state`` is an already
    opened one (``llmring serve`` opens it first, to report a locked directory cleanly),
    which the app then owns and closes."""
    config = data_dir if isinstance(data_dir, ServerConfig) else ServerConfig(
        Path(data_dir), **options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = state if state is not None else ServerState(config)
        app.state.server = opened
        try:
            opened.start()
            release()  # what opening and building the app left free, back to the kernel
            yield
        finally:
            opened.close()

    app = FastAPI(
        title="llmring-ledger",
        version="0.1.0",
        description="A verifiable receipt ledger for LLM usage. Authenticate with an API "
                    "key (`X-API-Key` or `Authorization: Bearer`); each key names one "
                    "project, and every read and write is scoped to it.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    from ledger.server import dashboard, integrations, logs, public, reports

    app.include_router(public.router)
    app.include_router(dashboard.router)
    app.include_router(logs.router)
    app.include_router(integrations.router)
    app.include_router(reports.router)
    from ledger.server import budgets, prices, receipts, tlog

    app.include_router(receipts.router)
    app.include_router(budgets.router)
    app.include_router(tlog.router)
    app.include_router(prices.router)
    if config.metrics:
        _install_metrics(app)

    def limit_for(path: str) -> int:
        return config.max_batch_body if path in LARGE_BODY_PATHS else config.max_body

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(InternalErrors)  # outside the limit: it sees every request
    app.add_middleware(integrations.OtlpErrorBodies)  # outermost: every OTLP error answer
    return app


__all__ = ["ServerConfig", "ServerState", "create_app"]
