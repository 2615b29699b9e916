"""The ASGI application: what the server holds open (the ``Ledger`` of one data
directory, its API keys, conversation content, signing keys, receipts), request body
limits, and the mapping of every domain error to ``{"detail": …}`` with a 4xx status.

The operations themselves are ``ledger.api.service.LedgerService``'s. The server is the one
process holding the data directory's lock. Endpoints that touch the
ledger are plain ``def`` functions, run in the thread pool, so concurrent appends share
the journal's group-commit fsyncs. Shutdown closes the ledger, which seals the journal.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api.apikeys import ApiKeyError, ApiKeyStore
from ledger.api.service import LedgerService, NotFoundError
from ledger.core.facade import LedgerError
from ledger.model.event import EventValidationError, IdConflictError
from ledger.model.tenant import TenantError
from ledger.storage.config import ConfigError
from ledger.storage.content import ContentError
from ledger.tlog.checkpoint import CheckpointError
from ledger.tlog.signing import KeyRingError
from projections.rollups import RollupError

log = logging.getLogger("llmring.server")

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_BODY = 64 * 1024 * 1024
BATCH_PATHS = ("/api/v1/log/batch",)


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    max_body: int = DEFAULT_MAX_BODY
    max_batch_body: int = DEFAULT_MAX_BATCH_BODY


class ServerState:
    """What the endpoints share, opened at startup and closed at shutdown: the data
    directory's ``LedgerService`` and its API keys."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.service = LedgerService(config.data_dir)
        self.api_keys = ApiKeyStore(config.data_dir)

    def close(self) -> None:
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
                    await _too_large(scope, receive, send, "a Content-Length that is not "
                                     "a number", status=400)
                    return
                if declared > limit:
                    await _too_large(scope, receive, send, limit)
                    return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(scope, receive, send, limit)
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


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int | str,
                     status: int = 413) -> None:
    if isinstance(limit, str):
        detail = f"the request has {limit}"
    else:
        detail = (f"request body too large: at most {limit:,} bytes are accepted here; "
                  "send fewer events per request (POST /api/v1/log/batch takes more)")
    await JSONResponse({"detail": detail}, status_code=status,
                       headers={"Connection": "close"})(scope, receive, send)


# -- errors ------------------------------------------------------------------------------
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


def _install_error_handlers(app: FastAPI) -> None:
    def detail(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"detail": message, **extra}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, errors = _validation_detail(exc)
        return detail(422, message, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(EventValidationError)
    async def _event(_: Request, exc: EventValidationError) -> JSONResponse:
        return detail(422, str(exc), problems=exc.problems, index=exc.index)

    @app.exception_handler(IdConflictError)
    async def _conflict(_: Request, exc: IdConflictError) -> JSONResponse:
        return detail(409, str(exc))

    @app.exception_handler(ContentError)
    async def _content(_: Request, exc: ContentError) -> JSONResponse:
        return detail(422, str(exc))

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return detail(404, str(exc))

    for cls in (TenantError, RollupError, ValueError):
        app.add_exception_handler(cls, _bad_request)

    from ledger.receipts.issuance import ReceiptNotFoundError, ReceiptRequestError

    @app.exception_handler(ReceiptNotFoundError)
    async def _not_found(_: Request, exc: ReceiptNotFoundError) -> JSONResponse:
        return detail(404, str(exc))

    app.add_exception_handler(ReceiptRequestError, _bad_request)

    for cls in (LedgerError, KeyRingError, CheckpointError, ConfigError, ApiKeyError):
        app.add_exception_handler(cls, _unavailable)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return detail(500, "internal error; the server log has the details")


async def _bad_request(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.error("server-side failure: %s", exc)
    return JSONResponse({"detail": f"the ledger cannot serve this now: {exc}"},
                        status_code=503)


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
    from ledger.server import logs, public, reports

    app.include_router(public.router)
    app.include_router(logs.router)
    app.include_router(reports.router)
    from ledger.server import receipts

    app.include_router(receipts.router)

    def limit_for(path: str) -> int:
        return config.max_batch_body if path in BATCH_PATHS else config.max_body

    app.add_middleware(BodyLimit, limit_for=limit_for)
    return app


__all__ = ["ServerConfig", "ServerState", "create_app"]
