"""Request and response bodies of the HTTP API (docs/http-api.md), as pydantic models: they
validate requests and document the OpenAPI schema. Event fields are ``ledger.EventIn``'s
(the usage-log names of §9, ``cost`` in USD)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ledger.model.event import MAX_ID, EventIn

MAX_BATCH = 10_000
MAX_MESSAGES = 10_000


class LogOut(BaseModel):
    """The acknowledgement of one logged call, sent once it is durable."""

    log_id: str = Field(description="The event id (the id of the call in the ledger).")
    cost: float = Field(description="Cost in USD (exact value: cost_nanos / 1e9).")
    timestamp: str = Field(description="When the call happened, RFC 3339 UTC.")
    seq: int
    cost_nanos: int
    cost_source: str
    conversation_id: str | None
    created: bool = Field(description="False for an identical repeat, or a usage log "
                                      "paired with the conversation it belongs to.")


class BatchIn(BaseModel):
    """Events appended atomically: all are recorded, or none."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class BatchOut(BaseModel):
    logs: list[LogOut]
    count: int
    created: int


class ConversationLogIn(BaseModel):
    """One call with its conversation content. ``metadata`` carries the call's
    provider, model, alias, tokens and cost (the event fields); other metadata keys are
    kept in the event's ``metadata``. The messages and response are stored apart from the
    event, which commits to them by ``content_sha256``."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    messages: list[dict[str, Any]] = Field(max_length=MAX_MESSAGES)
    response: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConversationLogOut(BaseModel):
    conversation_id: str
    message_id: str = Field(description="The event id of this call.")
    receipt: None = Field(default=None, description="Always null: receipts are generated "
                                                    "on demand.")
    cost: float
    timestamp: str
    content_sha256: str


class ReceiptRequest(BaseModel):
    """Exactly one selection mode (docs/http-api.md): ``conversation_id``; ``start_date`` and
    ``end_date`` (dates or ISO 8601 datetimes, naive = UTC, a date-only end includes that
    day); ``log_ids``; or ``since_last_receipt: true``."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    log_ids: list[str] | None = None
    since_last_receipt: StrictBool = False  # true or false, not 1 or "yes"
    description: str | None = None
    tags: list[str] | None = None


class Page(BaseModel):
    total: int
    limit: int
    offset: int


class EventsPage(Page):
    logs: list[dict[str, Any]]


class VerifyOut(BaseModel):
    receipt_id: str | None
    valid: bool
    algorithm: str
    key_id: str | None = None
    detail: str | None = None
