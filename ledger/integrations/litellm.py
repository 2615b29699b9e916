"""LiteLLM's logged calls as ledger events (``POST /api/v1/integrations/litellm``).

LiteLLM's ``generic_api`` logger (proxy or SDK) POSTs its ``StandardLoggingPayload``, one
per call, in one of three formats: a JSON array (``json_array``), newline-delimited JSON
(``ndjson``) or one JSON object per request (``single``). ``read_payloads`` takes any of
them, checks each payload (``LiteLLMPayload``: the fields the ledger reads, by LiteLLM's
names) and maps it to one event (``event_of``); a problem anywhere refuses the whole
request, naming the payload's place and the LiteLLM field. The mapping (docs/http-api.md,
"LiteLLM"):

* ``id`` → ``event_id`` (the idempotency key: LiteLLM's retries repeat, never add);
* ``model`` → ``model``; ``model_group`` → ``alias`` (the model when empty: plain SDK
  calls have no group); ``custom_llm_provider`` → ``provider``; ``origin`` is ``litellm``;
* ``startTime`` → ``ts``; ``endTime − startTime`` → ``latency_ms`` (both exact from their
  decimal text, rounded half to even);
* ``prompt_tokens`` / ``completion_tokens`` → ``input_tokens`` / ``output_tokens`` (both
  include cached and reasoning tokens, as in our events); from the usage object,
  ``prompt_tokens_details.cached_tokens`` (or ``cache_read_input_tokens``) →
  ``cached_input_tokens``, ``prompt_tokens_details.cache_creation_tokens`` (or
  ``cache_creation_input_tokens``) → ``cache_write_tokens``,
  ``completion_tokens_details.reasoning_tokens`` → ``reasoning_tokens``;
* ``response_cost`` → ``cost_nanos`` with ``cost_source = client`` (LiteLLM's own
  computation), read from its decimal text and rounded to the nearest nano-USD, ties to
  even (``0.00010169999999999999`` → 101,700 nano-USD). No cost, or a cost LiteLLM
  reports it failed to compute (``response_cost_failure_debug_info``), is left to the
  ledger's price table;
* who and why, into ``metadata`` under ``METADATA_KEYS``;
* ``status: failure`` payloads are skipped (counted, not recorded): a failed call is not
  usage.

``LedgerLogger`` (imported on first use, it needs the ``litellm`` package) is the
in-process ``CustomLogger`` that sends these payloads from the LiteLLM SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    WithJsonSchema,
)

from ledger.errors import EventValidationError, InvalidRequestError
from ledger.model.event import EPOCH, EventIn, parse_event
from ledger.model.money import MAX_COST_NANOS, decimal_to_nanos

ORIGIN = "litellm"
MAX_PAYLOADS = 10_000  # per request, as ``POST /api/v1/log/batch``
FIRST_US, END_US = -62_135_596_800 * 10**6, 253_402_300_800 * 10**6  # years 1 to 9999
MAX_COST_USD = Decimal(MAX_COST_NANOS) / 1_000_000_000
HALF_NANO = Decimal("0.0000000005")


def _number(value: Any) -> Decimal:
    """A JSON number as the exact decimal it was written as: parsed bodies carry
    ``Decimal``; a Python float (a payload given in-process) is its shortest decimal text,
    which is what LiteLLM's JSON holds."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


Number = Annotated[Decimal, BeforeValidator(_number), WithJsonSchema({"type": "number"})]
Count = Annotated[StrictInt, Field(ge=0)]


class LiteLLMPayload(BaseModel):
    """The fields of LiteLLM's ``StandardLoggingPayload`` the ledger reads, by LiteLLM's
    names; every other field LiteLLM sends is accepted and ignored."""

    model_config = ConfigDict(extra="allow", title="LiteLLMPayload")

    id: str = Field(min_length=1, description="LiteLLM's id of the call: the event_id.")
    model: str = Field(min_length=1, description="The model that answered.")
    status: Literal["success", "failure"] = Field(
        default="success", description="`failure` payloads are skipped.")
    startTime: Number = Field(description="Unix time in seconds: the event's ts.")
    endTime: Number | None = Field(default=None, description="Unix time in seconds.")
    custom_llm_provider: str | None = Field(default=None, description="The provider.")
    model_group: str | None = Field(default=None, description="The alias (proxy).")
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    response_cost: Number | None = Field(default=None, description="USD, LiteLLM's.")
    response_cost_failure_debug_info: dict[str, Any] | None = None
    end_user: str | None = None
    request_tags: list[str] | None = None
    call_type: str | None = None
    litellm_call_id: str | None = None
    session_id: str | None = None
    cache_hit: bool | None = None
    metadata: dict[str, Any] | None = None
    hidden_params: dict[str, Any] | None = None
    model_parameters: dict[str, Any] | None = None
    response: Any = None


# metadata key → (what it holds, where in the payload it is read, first found wins).
METADATA_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "litellm.user": ("the proxy's internal user of the virtual key",
                     ("metadata.user_api_key_user_id",)),
    "litellm.team": ("the key's team: its alias, else its id",
                     ("metadata.user_api_key_team_alias", "metadata.team_alias",
                      "metadata.user_api_key_team_id", "metadata.team_id")),
    "litellm.team_id": ("the key's team id",
                        ("metadata.user_api_key_team_id", "metadata.team_id")),
    "litellm.org": ("the key's organization: its alias, else its id",
                    ("metadata.user_api_key_org_alias", "metadata.user_api_key_org_id")),
    "litellm.key_alias": ("the virtual key's alias", ("metadata.user_api_key_alias",)),
    "litellm.end_user": ("the customer: the request's `user` as the proxy records it",
                         ("end_user", "metadata.user_api_key_end_user_id",
                          "model_parameters.user")),
    "litellm.tags": ("the request's tags (a list)", ("request_tags",)),
    "litellm.spend_logs_metadata": ("what the request asked to log with its spend",
                                    ("metadata.spend_logs_metadata",)),
    "litellm.call_type": ("completion, acompletion, embedding …", ("call_type",)),
    "litellm.call_id": ("LiteLLM's call id (x-litellm-call-id)", ("litellm_call_id",)),
    "litellm.session_id": ("the session id (litellm_session_id)", ("session_id",)),
    "litellm.cache_hit": ("true when LiteLLM answered from its cache", ("cache_hit",)),
}

# An event field → the LiteLLM field it comes from (to name it in a refusal).
SOURCE: dict[str, str] = {
    "event_id": "id", "model": "model", "alias": "model_group",
    "provider": "custom_llm_provider", "ts": "startTime", "timestamp": "startTime",
    "latency_ms": "endTime", "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens", "cached_input_tokens": "usage cached_tokens",
    "cache_write_tokens": "usage cache_creation_tokens",
    "reasoning_tokens": "usage reasoning_tokens", "cost_nanos": "response_cost",
    "metadata": "metadata (litellm.*)",
}

# Where LiteLLM keeps the usage object with the token details, first found wins.
USAGE_AT = ("metadata.usage_object", "hidden_params.usage_object", "response.usage")
CACHED_AT = ("prompt_tokens_details.cached_tokens", "cache_read_input_tokens")
CACHE_WRITE_AT = ("prompt_tokens_details.cache_creation_tokens",
                  "cache_creation_input_tokens")
REASONING_AT = ("completion_tokens_details.reasoning_tokens",)


@dataclass(frozen=True)
class LiteLLMBatch:
    """What one request holds: the events of its successful calls, in order, and how
    many payloads it had and how many were skipped (failures)."""

    events: list[EventIn]
    received: int
    skipped: int


def _refused(problem: str) -> EventValidationError:
    """A problem (``field: what``) of the payload being mapped; ``read_event`` adds its
    place in the request."""
    return EventValidationError([problem])


def _at(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` of nested objects; None where any step is missing."""
    for step in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(step)
    return data


def _first(payload: Mapping[str, Any], paths: Sequence[str]) -> tuple[str, Any]:
    """The first of ``paths`` holding a value that is not null, empty text or an empty
    list or object: (path, value); ("", None) when none does."""
    for path in paths:
        value = _at(payload, path)
        if value is not None and value != "" and value != [] and value != {}:
            return path, value
    return "", None


def _count(usage: Any, where: str, paths: Sequence[str]) -> int:
    path, value = _first(usage, paths)
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise _refused(f"{where}.{path}: must be an integer >= 0, not {value!r}")
    return value


def _metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, (_, paths) in METADATA_KEYS.items():
        path, value = _first(payload, paths)
        if value is None or (key == "litellm.cache_hit" and value is not True):
            continue
        if key == "litellm.tags":
            found[key] = value  # a list of strings (``LiteLLMPayload``)
        elif key == "litellm.spend_logs_metadata":
            if not isinstance(value, Mapping):
                raise _refused(f"{path}: must be an object")
            found[key] = _plain(value)
        elif key == "litellm.cache_hit" or isinstance(value, str):
            found[key] = value
        else:
            raise _refused(f"{path}: must be a string, not {value!r}")
    return found


def _plain(value: Any) -> Any:
    """A parsed JSON value with its exact decimals as floats (metadata holds JSON)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _seconds_to_us(seconds: Decimal, name: str) -> int:
    """Unix seconds in microseconds, rounded half to even; outside years 1 to 9999
    refused naming ``name`` (an absurd exponent before any arithmetic on it)."""
    us = (int((seconds * 1_000_000).to_integral_value(ROUND_HALF_EVEN))
          if abs(seconds) < 10**12 else None)
    if us is None or not FIRST_US <= us < END_US:
        raise _refused(f"{name}: {seconds:.6g} is out of range (Unix time in seconds)")
    return us


def cost_nanos(response_cost: Decimal) -> int:
    """LiteLLM's ``response_cost`` (USD) in nano-USD: the exact decimal rounded to the
    nearest nano, ties to even (the rule of the price table's costs)."""
    if response_cost < 0:
        raise _refused(f"response_cost: must not be negative, not {response_cost}")
    if response_cost > MAX_COST_USD:
        raise _refused(f"response_cost: {response_cost:.6g} USD is more than one call may "
                       f"cost ({MAX_COST_NANOS} nano-USD)")
    if response_cost <= HALF_NANO:  # rounds to 0 (a tie to even), whatever its exponent
        return 0
    return decimal_to_nanos(response_cost)


def event_of(payload: LiteLLMPayload, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The event (``EventIn``'s fields) of one successful call's payload (``raw``: the
    payload as sent, for the nested fields ``LiteLLMPayload`` does not check)."""
    if not payload.custom_llm_provider:
        raise _refused("custom_llm_provider: is required (the provider that answered)")
    start_us = _seconds_to_us(payload.startTime, "startTime")
    ts = EPOCH + timedelta(microseconds=start_us)
    event: dict[str, Any] = {
        "event_id": payload.id, "ts": ts, "origin": ORIGIN,
        "provider": payload.custom_llm_provider,
        "model": payload.model, "alias": payload.model_group or payload.model,
        "input_tokens": payload.prompt_tokens, "output_tokens": payload.completion_tokens,
    }
    if payload.endTime is not None:
        elapsed_us = _seconds_to_us(payload.endTime, "endTime") - start_us
        if elapsed_us < 0:
            raise _refused("endTime: is before startTime")
        event["latency_ms"] = int((Decimal(elapsed_us) / 1000).to_integral_value(
            ROUND_HALF_EVEN))
    where, usage = _first(raw, USAGE_AT)
    if usage is not None:
        if not isinstance(usage, Mapping):
            raise _refused(f"{where}: must be an object")
        event["cached_input_tokens"] = _count(usage, where, CACHED_AT)
        event["cache_write_tokens"] = _count(usage, where, CACHE_WRITE_AT)
        event["reasoning_tokens"] = _count(usage, where, REASONING_AT)
    if payload.response_cost is not None and not payload.response_cost_failure_debug_info:
        event["cost_nanos"] = cost_nanos(payload.response_cost)
        event["cost_source"] = "client"
    event["metadata"] = _metadata(raw)
    return event


def _event_problems(exc: EventValidationError) -> list[str]:
    """An event's problems named by the LiteLLM field they come from."""
    named = []
    for problem in exc.problems:
        field, sep, what = problem.partition(": ")
        named.append(f"{SOURCE.get(field, field)}: {what}" if sep else problem)
    return named


def _payload_problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        out.append(f"{loc}: {msg}")
    return out


def _json_type(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def read_event(item: Any, index: int) -> EventIn | None:
    """One payload as a validated event; None for a failure (skipped). A problem is an
    ``EventValidationError`` with the payload's ``index`` and the LiteLLM field."""
    if not isinstance(item, Mapping):
        raise EventValidationError([f"a LiteLLM payload must be a JSON object, not "
                                    f"{_json_type(item)}"], index=index)
    try:
        payload = LiteLLMPayload.model_validate(item)
    except ValidationError as exc:
        raise EventValidationError(_payload_problems(exc), index=index) from None
    if payload.status == "failure":
        return None
    try:
        event = event_of(payload, item)
    except EventValidationError as exc:
        raise EventValidationError(exc.problems, index=index) from None
    try:
        return parse_event(event, index=index)
    except EventValidationError as exc:
        raise EventValidationError(_event_problems(exc), index=index) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def split_body(body: bytes | str) -> list[Any]:
    """The payloads of a request body in any of LiteLLM's formats: a JSON array, one JSON
    object, or newline-delimited JSON objects (numbers as exact ``Decimal``)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"the body is not UTF-8 text: {exc}") from None
    text = text.strip()
    if not text:
        raise InvalidRequestError("the body is empty: send LiteLLM payloads as a JSON "
                                  "array, NDJSON or one JSON object")
    try:
        data = _loads(text)
    except ValueError as whole:
        lines = [line for line in text.split("\n") if line.strip()]
        if len(lines) < 2:
            raise InvalidRequestError(f"the body is not JSON: {whole}") from None
        items = []
        for number, line in enumerate(lines, 1):
            try:
                items.append(_loads(line))
            except ValueError as exc:
                raise InvalidRequestError(
                    f"line {number} of the NDJSON body is not JSON: {exc}") from None
        return items
    return data if isinstance(data, list) else [data]


def read_payloads(payloads: bytes | str | Sequence[Any] | Mapping[str, Any]) -> LiteLLMBatch:
    """Every payload of a request (a body in any of LiteLLM's formats, or payloads already
    parsed), checked and mapped; all are good or ``EventValidationError`` /
    ``InvalidRequestError`` says which is not and why."""
    if isinstance(payloads, bytes | bytearray | str):
        items = split_body(payloads)
    elif isinstance(payloads, Mapping):
        items = [payloads]
    else:
        items = list(payloads)
    if not items:
        raise InvalidRequestError("no LiteLLM payloads: send at least one")
    if len(items) > MAX_PAYLOADS:
        raise InvalidRequestError(f"{len(items):,} LiteLLM payloads in one request: at "
                                  f"most {MAX_PAYLOADS:,} are taken (lower LiteLLM's "
                                  "batch size)")
    events: list[EventIn] = []
    for index, item in enumerate(items):
        event = read_event(item, index)
        if event is not None:
            events.append(event)
    return LiteLLMBatch(events, received=len(items), skipped=len(items) - len(events))


def __getattr__(name: str) -> Any:
    """``LedgerLogger``, imported on first use: it needs the ``litellm`` package."""
    if name == "LedgerLogger":
        from ledger.integrations.litellm_logger import LedgerLogger

        return LedgerLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MAX_PAYLOADS", "METADATA_KEYS", "LiteLLMBatch", "LiteLLMPayload",
           "cost_nanos", "event_of", "read_event", "read_payloads", "split_body"]
