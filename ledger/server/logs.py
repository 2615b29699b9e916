"""Logging endpoints: one usage log (``POST /api/v1/log``), one conversation
(``POST /api/v1/conversations/log``), a batch of events (``POST /api/v1/log/batch``), and
reading the project's events back (``GET /api/v1/logs``, ``/api/v1/logs/{log_id}``, its
stored conversation content). Every write is acknowledged only once it is durable."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ledger.events import Ack, EventIn, parse_event
from ledger.server import auth
from ledger.server.schemas import (
    BatchIn,
    BatchOut,
    ConversationLogIn,
    ConversationLogOut,
    EventsPage,
    LogOut,
)

router = APIRouter(tags=["logs"])
Tenant = Annotated[str, Depends(auth.tenant)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size, 1 to 1000.")]
Offset = Annotated[int, Query(ge=0, le=2**53 - 1)]

# Keys of a conversation's ``metadata`` that are event fields; the rest stay metadata.
EVENT_KEYS = ("event_id", "timestamp", "ts", "provider", "model", "alias", "profile",
              "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
              "reasoning_tokens", "cost", "cost_nanos", "cost_source", "price_id",
              "latency_ms", "origin", "id_at_origin")


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def ack_json(ack: Ack) -> dict[str, Any]:
    return {"log_id": ack.event_id, "cost": ack.cost, "timestamp": ack.ts, "seq": ack.seq,
            "cost_nanos": ack.cost_nanos, "cost_source": ack.cost_source,
            "conversation_id": ack.conversation_id, "created": ack.created}


def state(request: Request) -> Any:
    return request.app.state.server


@router.post("/api/v1/log", response_model=LogOut, summary="Log one LLM call (usage)")
def log_usage(body: EventIn, tenant: Tenant, request: Request) -> Response:
    """Record one call. A usage log naming a conversation just logged (`id_at_origin` or
    `metadata.conversation_id`) completes that call instead of creating another event
    (one call = one event), and is answered with that event's id. A repeated `event_id`
    with the same content is answered again (200); with other content it is a 409."""
    ack = state(request).ledger.append(body, tenant=tenant)
    return json_response(ack_json(ack))


@router.post("/api/v1/log/batch", response_model=BatchOut,
             summary="Log many events atomically")
def log_batch(body: BatchIn, tenant: Tenant, request: Request) -> Response:
    """Append up to 10,000 events: all are recorded, or (on any invalid event or id
    conflict) none is; the answer lists one acknowledgement per event, in order."""
    acks = state(request).ledger.append_many(body.events, tenant=tenant)
    logs = [ack_json(a) for a in acks]
    return json_response({"logs": logs, "count": len(logs),
                          "created": sum(1 for a in acks if a.created)})


@router.post("/api/v1/conversations/log", response_model=ConversationLogOut,
             summary="Log one call with its conversation")
def log_conversation(body: ConversationLogIn, tenant: Tenant, request: Request) -> Response:
    """The call's tokens and cost come from `metadata`; the messages and response are
    stored apart, and the event commits to them by `content_sha256`. Answer:
    `{conversation_id, message_id, receipt: null}` (receipts are generated on demand)."""
    s = state(request)
    meta = dict(body.metadata)
    fields: dict[str, Any] = {k: meta.pop(k) for k in EVENT_KEYS if k in meta}
    if "ts" in fields:
        fields.setdefault("timestamp", fields.pop("ts"))
    from ledger.content import content_sha256

    digest = content_sha256(body.messages, body.response)
    fields.update(kind="conversation", conversation_id=body.conversation_id,
                  content_sha256=digest, metadata=meta)
    event = parse_event(fields)  # validate before anything is written
    s.content.put(tenant, body.messages, body.response)
    ack = s.ledger.append(event, tenant=tenant)
    return json_response({"conversation_id": ack.conversation_id, "message_id": ack.event_id,
                          "receipt": None, "cost": ack.cost, "timestamp": ack.ts,
                          "content_sha256": digest})


@router.get("/api/v1/logs", response_model=EventsPage, summary="List the project's events")
def list_logs(tenant: Tenant, request: Request, limit: Limit = 100, offset: Offset = 0,
              start: datetime | None = None, end: datetime | None = None,
              order: Annotated[str, Query(pattern="^-?seq$")] = "seq") -> Response:
    """Events in log order (`order=-seq`: newest first), optionally with
    start <= ts < end (naive = UTC)."""
    led = state(request).ledger
    start, end = _aware(start), _aware(end)
    if start is not None and end is not None and start >= end:
        raise HTTPException(400, "start must be before end")
    events = led.events(tenant, start=start, end=end, limit=limit, offset=offset, order=order)
    total = led.count(tenant, start=start, end=end)
    return json_response({"logs": [e.to_json_dict() for e in events], "total": total,
                          "limit": limit, "offset": offset})


@router.get("/api/v1/logs/{log_id}", summary="One event of the project")
def get_log(log_id: str, tenant: Tenant, request: Request) -> Response:
    """The recorded event (every canonical field plus seq, recorded_at and leaf_hash)."""
    event = state(request).ledger.get(tenant, log_id)
    if event is None:
        raise HTTPException(404, f"no log {log_id!r} in this project")
    return json_response(event.to_json_dict())


@router.get("/api/v1/logs/{log_id}/content", summary="The stored conversation content")
def get_log_content(log_id: str, tenant: Tenant, request: Request) -> Response:
    """`{messages, response}` of a conversation event, exactly as hashed into its
    `content_sha256` (RFC 8785 JSON); 404 when the event has none or it was deleted."""
    s = state(request)
    event = s.ledger.get(tenant, log_id)
    if event is None:
        raise HTTPException(404, f"no log {log_id!r} in this project")
    if event.content_sha256 is None:
        raise HTTPException(404, f"log {log_id!r} has no conversation content")
    data = s.content.get(tenant, event.content_sha256)
    if data is None:
        raise HTTPException(404, f"the content of log {log_id!r} is no longer stored")
    return Response(data, media_type="application/json")


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
