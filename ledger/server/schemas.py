"""Request and response bodies of the HTTP API (docs/http-api.md), as pydantic models: they
validate requests and document the OpenAPI schema. Event fields are ``ledger.EventIn``'s
(the usage-log names of §9, ``cost`` in USD). ``ErrorOut`` is the one body of every error
answer, and ``error_responses`` documents an operation's error statuses from the classes
``ledger.api.operations`` says it can answer with."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ledger.api.operations import Operation
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


class LiteLLMOut(BaseModel):
    """What became of a request of LiteLLM payloads."""

    received: int = Field(description="Payloads in the request.")
    accepted: int = Field(description="New events recorded.")
    repeated: int = Field(description="Payloads whose id was already recorded with the "
                                      "same content (a retry): nothing added.")
    skipped: int = Field(description="Failed calls (`status: failure`): not recorded.")


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
    day); ``log_ids``; or ``since_last_receipt: true``; and optionally ``where``, a
    metadata filter (``{"customer": "acme"}``: checked by the service, 400)."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    log_ids: list[str] | None = None
    since_last_receipt: StrictBool = False  # true or false, not 1 or "yes"
    description: str | None = None
    tags: list[str] | None = None
    where: Any = None


class DimensionsIn(BaseModel):
    """The metadata keys a project declares as dimensions (``[]``: none)."""

    model_config = ConfigDict(extra="forbid")
    keys: list[Any] = Field(max_length=64)


class Page(BaseModel):
    total: int
    limit: int
    offset: int


class EventsPage(Page):
    logs: list[dict[str, Any]]


class UncertifiedPage(EventsPage):
    """One page of the logs no receipt certifies (each row with its ``cost_source``), and
    totals over all of them, not just the page."""

    total_cost: str = Field(description="Exact cost in USD of every uncertified log, a "
                                        "decimal string with 9 places, e.g. `17.450000000`.")
    total_cost_nanos: int = Field(description="The same total in nano-USD (exact).")
    unpriced_logs: int = Field(description="Uncertified logs that have no price (counted "
                                           "as $0 in the totals).")


class VerifyOut(BaseModel):
    receipt_id: str | None
    valid: bool
    algorithm: str
    key_id: str | None = None
    detail: str | None = None


class FieldProblem(BaseModel):
    loc: list[str] = Field(description="Where: `body`, `query`, `path` or `header`, then "
                                       "the field's path.")
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error answer (``ledger.errors.error_body``): the message, a stable machine
    ``code`` naming the error class, and the class's evidence where it has some."""

    detail: str = Field(description="What is wrong, and what to change.")
    code: str = Field(description="The error class's stable name (`ledger/errors.py`).")
    errors: list[FieldProblem] | None = Field(
        default=None, description="422 from the schema: one entry per refused field.")
    problems: list[str] | None = Field(
        default=None, description="`invalid_event`: `field: what is wrong`, one per problem.")
    index: int | None = Field(default=None,
                              description="`invalid_event`: the event's place in a batch.")
    event_id: str | None = Field(default=None, description="`id_conflict`: the reused id.")
    fields: list[str] | None = Field(
        default=None, description="`id_conflict`: the fields that differ.")


def error_responses(op: Operation) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of ``op``'s errors: one per status its ``errors()``
    have, with the ``ErrorOut`` body and the codes that status can carry."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for cls in op.errors():
        by_status[cls.status].append(cls.code)
    return {status: {"model": ErrorOut,
                     "description": "Error codes: " + ", ".join(f"`{c}`" for c in codes)}
            for status, codes in sorted(by_status.items())}
