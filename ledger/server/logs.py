"""Logging endpoints: one usage log (``POST /api/v1/log``), one conversation
(``POST /api/v1/conversations/log``), a batch of events (``POST /api/v1/log/batch``), and
reading the project's events back (``GET /api/v1/logs``, ``/api/v1/logs/{log_id}``, its
stored conversation content). Every write is acknowledged only once it is durable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from ledger.api import operations as ops
from ledger.api.operations import Operation
from ledger.api.service import LedgerService
from ledger.model.event import EventIn
from ledger.server import auth
from ledger.server.schemas import (
    BatchIn,
    BatchOut,
    ConversationLogIn,
    ConversationLogOut,
    EventsPage,
    LogOut,
    error_responses,
)

router = APIRouter(tags=["logs"])
F = TypeVar("F", bound=Callable[..., Any])
Tenant = Annotated[str, Depends(auth.tenant)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size, 1 to 1000.")]
Offset = Annotated[int, Query(ge=0, le=2**53 - 1)]
When = Annotated[str | None, Query(max_length=64, description=(
    "A date (YYYY-MM-DD; as an end, that whole day is included) or an ISO 8601 datetime "
    "(naive = UTC)."))]


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def service(request: Request) -> LedgerService:
    return request.app.state.server.service  # type: ignore[no-any-return]


def route(router: APIRouter, op: Operation, **options: Any) -> Callable[[F], F]:
    """Register a route at the operation's method and path (``ledger.api.operations``),
    with its summary and the error answers it documents (``schemas.error_responses``)."""
    options.setdefault("summary", op.summary)
    options["responses"] = {**error_responses(op), **options.get("responses", {})}
    return router.api_route(op.path, methods=[op.method], **options)


@route(router, ops.LOG_USAGE, response_model=LogOut)
def log_usage(body: EventIn, tenant: Tenant, request: Request) -> Response:
    """Record one call. A usage log naming a conversation just logged (`id_at_origin` or
    `metadata.conversation_id`) completes that call instead of creating another event
    (one call = one event), and is answered with that event's id. A repeated `event_id`
    with the same content is answered again (200); with other content it is a 409."""
    return json_response(service(request).log_usage(tenant, body))


@route(router, ops.LOG_BATCH, response_model=BatchOut)
def log_batch(body: BatchIn, tenant: Tenant, request: Request) -> Response:
    """Append up to 10,000 events: all are recorded, or (on any invalid event or id
    conflict) none is; the answer lists one acknowledgement per event, in order."""
    return json_response(service(request).log_batch(tenant, body.events))


@route(router, ops.LOG_CONVERSATION, response_model=ConversationLogOut)
def log_conversation(body: ConversationLogIn, tenant: Tenant, request: Request) -> Response:
    """The call's tokens and cost come from `metadata`; the messages and response are
    stored apart, and the event commits to them by `content_sha256`. Answer:
    `{conversation_id, message_id, receipt: null}` (receipts are generated on demand)."""
    return json_response(service(request).log_conversation(
        tenant, messages=body.messages, response=body.response, metadata=body.metadata,
        conversation_id=body.conversation_id))


@route(router, ops.LIST_LOGS, response_model=EventsPage)
def list_logs(tenant: Tenant, request: Request, limit: Limit = 100, offset: Offset = 0,
              start: When = None, end: When = None,
              order: Annotated[str, Query(pattern="^-?seq$")] = "seq") -> Response:
    """Events in log order (`order=-seq`: newest first), optionally with
    start <= ts < end."""
    return json_response(service(request).list_logs(tenant, limit=limit, offset=offset,
                                                    start=start, end=end, order=order))


@route(router, ops.GET_LOG)
def get_log(log_id: str, tenant: Tenant, request: Request) -> Response:
    """The recorded event (every canonical field plus seq, recorded_at and leaf_hash)."""
    return json_response(service(request).get_log(tenant, log_id))


@route(router, ops.LOG_CONTENT)
def get_log_content(log_id: str, tenant: Tenant, request: Request) -> Response:
    """`{messages, response}` of a conversation event, exactly as hashed into its
    `content_sha256` (RFC 8785 JSON); 404 when the event has none or it was deleted."""
    return Response(service(request).log_content(tenant, log_id),
                    media_type="application/json")
