"""OpenTelemetry GenAI spans as ledger events (``POST /otlp/v1/traces``, OTLP/HTTP).

An OTLP/HTTP exporter posts an ``ExportTraceServiceRequest`` (``opentelemetry-proto``),
binary protobuf or its JSON mapping (hex trace and span ids, 64-bit integers as text or
numbers). ``decode`` reads either; ``read_spans`` maps every GenAI model call of it to
one event and counts the other spans (the OTLP answer's ``partial_success``). A span is a
GenAI model call when it names its provider (``gen_ai.provider.name``, or the older
``gen_ai.system``) and its ``gen_ai.operation.name``, if any, is not an agent or tool
operation. A problem in such a span refuses the whole request (400), naming the span
(its place and ids) and the attribute. The mapping (docs/integrations.md, "OpenTelemetry"):

* trace id + span id → ``event_id`` ``otel-<trace id hex>-<span id hex>`` (a re-export
  repeats, never adds);
* ``gen_ai.response.model`` (else ``gen_ai.request.model``) → ``model``;
  ``llmring.alias`` (else the model) → ``alias``; the provider → ``provider``;
  ``origin`` is ``otlp``;
* span start → ``ts`` (rounded to the microsecond, half to even); end − start →
  ``latency_ms``;
* ``USAGE`` attributes → tokens (semantic-convention names first, then OpenLLMetry's);
* ``COST`` attributes (USD, a number or decimal text) → ``cost_nanos``, ``cost_source =
  client``, rounded to the nearest nano-USD, ties to even;
* ``gen_ai.conversation.id`` → ``conversation_id``; the span's name and ids, the
  operation and the resource's ``service.name`` → ``metadata`` under ``otel.*``.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ledger.errors import (
    EventValidationError,
    RequestError,
    RequestTooLargeError,
    SpanValidationError,
    UnsupportedMediaTypeError,
)
from ledger.lazy import lazy
from ledger.model.event import EPOCH, EventIn, parse_event
from ledger.model.money import MAX_COST_NANOS, decimal_to_nanos

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

# protobuf and the OTLP messages (~2 MiB) are imported by the first OTLP request
json_format = lazy("google.protobuf.json_format")
_pb_message = lazy("google.protobuf.message")
_service = lazy("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

ORIGIN = "otlp"
PATH = "/otlp/v1/traces"
PROTOBUF, JSON = "application/x-protobuf", "application/json"
MAX_SPANS = 10_000  # GenAI spans per request, as ``POST /api/v1/log/batch``
FIRST_NS, END_NS = 1, 253_402_300_800 * 10**9  # after the epoch, before year 10000
MAX_COST_USD = Decimal(MAX_COST_NANOS) / 1_000_000_000
HALF_NANO = Decimal("0.0000000005")

PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
MODEL = ("gen_ai.response.model", "gen_ai.request.model")
ALIAS = ("llmring.alias",)
CONVERSATION = ("gen_ai.conversation.id",)
NOT_MODEL_CALLS = ("create_agent", "invoke_agent", "execute_tool")
# event field → the attributes read for it, first present wins.
USAGE: dict[str, tuple[str, ...]] = {
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "cached_input_tokens": ("gen_ai.usage.cache_read.input_tokens",
                            "gen_ai.usage.cache_read_input_tokens"),
    "cache_write_tokens": ("gen_ai.usage.cache_creation.input_tokens",
                           "gen_ai.usage.cache_creation_input_tokens"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens",
                         "gen_ai.usage.reasoning_tokens"),
}
COST = ("gen_ai.usage.cost", "llm.usage.cost", "llmring.cost_usd")


@dataclass(frozen=True)
class SpanBatch:
    """What one export request holds: the events of its GenAI spans, in order, and how
    many spans it had and how many were not GenAI model calls (rejected)."""

    events: list[EventIn]
    received: int
    rejected: int


# -- decoding ----------------------------------------------------------------------------------
def media_type(content_type: str | None) -> str:
    """``PROTOBUF`` or ``JSON`` for a request's ``Content-Type`` (parameters ignored);
    any other is ``UnsupportedMediaTypeError`` (415)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind or '(none)'!r} is not taken here: send OTLP as "
            f"{PROTOBUF} or {JSON}")
    return kind


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body without its ``Content-Encoding`` (none, ``identity`` or ``gzip``), at most
    ``limit`` bytes once inflated (413 beyond: a small gzip may hold a huge body)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding!r} is not taken here: send gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"the gzip body cannot be read: {exc}") from None
    if len(out) > limit:
        raise RequestTooLargeError(f"the gzip body inflates to more than {limit:,} bytes, "
                                   "the most accepted here: export fewer spans a request")
    if not inflater.eof:
        raise RequestError("the gzip body is cut short")
    return out


# The OTLP/JSON messages the ids and numbers live in: message → {field: what it holds}
# (a message's name, "hex:<bytes>" for an id, an integer type of ``INTEGERS``, "double",
# "enum:<name>": an integer, as OTLP/JSON encodes enums, or one of the enum's names, as
# the protobuf JSON mapping writes them); each field by its JSON name, the mapping also
# takes the proto name.
MESSAGES: dict[str, dict[str, str]] = {
    "request": {"resourceSpans": "[resourceSpans]"},
    "resourceSpans": {"resource": "resource", "scopeSpans": "[scopeSpans]"},
    "resource": {"attributes": "[keyValue]", "droppedAttributesCount": "uint32"},
    "scopeSpans": {"scope": "resource", "spans": "[span]"},
    "span": {"traceId": "hex:16", "spanId": "hex:8", "parentSpanId": "hex:8",
             "flags": "uint32", "kind": "enum:SpanKind", "startTimeUnixNano": "uint64",
             "endTimeUnixNano": "uint64", "attributes": "[keyValue]",
             "droppedAttributesCount": "uint32", "events": "[event]",
             "droppedEventsCount": "uint32", "links": "[link]",
             "droppedLinksCount": "uint32", "status": "status"},
    "event": {"timeUnixNano": "uint64", "attributes": "[keyValue]",
              "droppedAttributesCount": "uint32"},
    "link": {"traceId": "hex:16", "spanId": "hex:8", "attributes": "[keyValue]",
             "droppedAttributesCount": "uint32", "flags": "uint32"},
    "status": {"code": "enum:StatusCode"},
    "keyValue": {"value": "anyValue"},
    "anyValue": {"intValue": "int64", "doubleValue": "double", "arrayValue": "arrayValue",
                 "kvlistValue": "kvlistValue"},
    "arrayValue": {"values": "[anyValue]"},
    "kvlistValue": {"values": "[keyValue]"},
}
HEX = re.compile(r"[0-9a-fA-F]*")
ENUM_NAMES: dict[str, tuple[str, ...]] = {  # the protobuf enums' names (a test compares)
    "SpanKind": ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                 "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"),
    "StatusCode": ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")}
INTEGERS: dict[str, tuple[int, int]] = {"int32": (-(2**31), 2**31 - 1),
                                        "uint32": (0, 2**32 - 1),
                                        "int64": (-(2**63), 2**63 - 1),
                                        "uint64": (0, 2**64 - 1)}
"""Each integer type's range, as a JSON number or its decimal text (as the protobuf JSON
mapping reads it, and OTLP/JSON writes 64-bit integers)."""
EXACT_NUMBERS = 2**53
"""JSON numbers are exact everywhere up to this: the schema states 64-bit ranges as
numbers only this far, and their decimal text beyond (docs/decisions.md)."""


def schema_number_range(kind: str) -> tuple[int, int]:
    """The integers of ``kind`` as the schema states them for a JSON number (the server
    takes a number anywhere in ``INTEGERS[kind]``)."""
    low, high = INTEGERS[kind]
    return max(low, -EXACT_NUMBERS), min(high, EXACT_NUMBERS)


def _up_to(n: int) -> str:
    """A regular expression of the decimal text of 0…``n`` (no sign, no leading zero)."""
    digits = str(n)
    alternatives = ["0"]
    if len(digits) > 1:
        alternatives.append(f"[1-9][0-9]{{0,{len(digits) - 2}}}")
    for i, digit in enumerate(digits):
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high >= low:
            rest = len(digits) - i - 1
            alternatives.append(digits[:i] + (f"[{low}-{high}]" if high > low else str(low))
                                + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "(?:" + "|".join(alternatives) + ")"


def integer_pattern(kind: str) -> str:
    """The decimal text of exactly the integers of ``kind`` (``INTEGERS``)."""
    low, high = INTEGERS[kind]
    negative = f"|-{_up_to(-low)}" if low < 0 else ""
    return f"^(?:{_up_to(high)}{negative})$"


_INTEGER_TEXT = {kind: re.compile(integer_pattern(kind)) for kind in INTEGERS}


def _proto_name(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


def _prepare(data: Any, message: str, where: str) -> None:
    """OTLP/JSON made ready for the protobuf JSON mapping, in place: the hex trace and
    span ids (of spans and links) as the base64 it reads; a boolean where a number
    belongs refused (the parser would take true as 1), and anything but an object or
    null where a message belongs. Values of the wrong type are left
    for the parser to refuse; unknown fields are not looked into. Problems are named by
    their place (``where``)."""
    if not isinstance(data, dict):
        return
    for field, holds in MESSAGES[message].items():
        for key in {field, _proto_name(field)}:
            if key not in data:
                continue
            value, at = data[key], f"{where}.{key}"
            if holds.startswith("hex:") and isinstance(value, str):
                size = int(holds[4:])
                if not HEX.fullmatch(value) or len(value) not in (0, 2 * size):
                    raise RequestError(f"{at}: must be {2 * size} hex digits, not "
                                       f"{value[:80]!r}")
                data[key] = base64.b64encode(bytes.fromhex(value)).decode()
            elif holds in INTEGERS and not _integer_value(value, holds):
                # the parser would take true as 1, and text such as "+1" or "1_0"
                low, high = INTEGERS[holds]
                raise RequestError(f"{at}: must be a whole number from {low} to {high} (or "
                                   f"its decimal text), not {json.dumps(value)[:80]}")
            elif holds == "double" and isinstance(value, bool):
                raise RequestError(f"{at}: must be a number, not {str(value).lower()}")
            elif holds.startswith("enum:") and not _enum_value(value, holds[5:]):
                # the parser would take true as 1 and 2.5 as 2, and ignore a name it does
                # not know
                names = ", ".join(ENUM_NAMES[holds[5:]])
                raise RequestError(f"{at}: must be an integer of 32 bits (OTLP/JSON "
                                   f"encodes enums as integers) or one of {names}, "
                                   f"not {json.dumps(value)[:80]}")
            elif holds.startswith("[") and isinstance(value, list):
                for i, item in enumerate(value):
                    _message(item, holds[1:-1], f"{at}[{i}]")
            elif holds in MESSAGES:
                _message(value, holds, at)


def _integer_value(value: Any, kind: str) -> bool:
    """Whether ``value`` can be an integer of ``kind`` in OTLP/JSON: null, or a whole
    number in its range or the decimal text of one."""
    if isinstance(value, str):
        return _INTEGER_TEXT[kind].fullmatch(value) is not None
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not value.is_integer()):
        return False
    low, high = INTEGERS[kind]
    return low <= int(value) <= high


def _enum_value(value: Any, enum: str) -> bool:
    """Whether ``value`` can be a value of ``enum`` in OTLP/JSON: null, a whole number of
    32 bits or one of its names (a number the enum lacks is kept, as protobuf keeps it;
    the parser would read a larger one as 0)."""
    if isinstance(value, str):
        return value in ENUM_NAMES[enum]
    return _integer_value(value, "int32")


def _message(value: Any, message: str, where: str) -> None:
    """``_prepare`` of a value where ``message`` belongs: an object, or null for its
    default (the parser would read any other iterable, such as ``[]``, as a message)."""
    if value is not None and not isinstance(value, dict):
        raise RequestError(f"{where}: must be an object, not {type(value).__name__}")
    _prepare(value, message, where)


def decode(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """The export request of a body in ``kind`` (``PROTOBUF`` or ``JSON``); a body that is
    not one is ``RequestError`` (400) saying why."""
    request = _service.ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (_pb_message.DecodeError, RecursionError, ValueError) as exc:
            raise RequestError(f"the body is not an OTLP ExportTraceServiceRequest "
                               f"(protobuf): {exc or 'cannot be decoded'}") from None
        return request
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the body is not JSON: {exc}") from None
    return from_json(data)


def from_json(data: Any) -> ExportTraceServiceRequest:
    """The export request of OTLP/JSON already parsed (hex ids; unknown fields ignored,
    as the OTLP spec asks of a receiver)."""
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object (an OTLP "
                           "ExportTraceServiceRequest)")
    request = _service.ExportTraceServiceRequest()
    try:
        data = json.loads(json.dumps(data))  # the caller's object is left as it was
        _prepare(data, "request", "body")
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise RequestError(f"the body is not an OTLP ExportTraceServiceRequest: "
                           f"{exc}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise RequestError(f"the body is not an OTLP ExportTraceServiceRequest: "
                           f"{exc}") from None
    return request


# -- mapping -----------------------------------------------------------------------------------
def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP key-values as a dict (a repeated key: its last value)."""
    return {kv.key: _value(kv.value) for kv in pairs}


def _first(attrs: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if attrs.get(name) is not None:
            return name, attrs[name]
    return names[0], None


def _text(attrs: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    name, value = _first(attrs, names)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _refused(f"{name}: must be a string, not {value!r}")
    return value


def _refused(problem: str) -> EventValidationError:
    return EventValidationError([problem])


def _count(attrs: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    name, value = _first(attrs, names)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _refused(f"{name}: must be an integer >= 0, not {value!r}")
    return value


def _cost(attrs: Mapping[str, Any]) -> int | None:
    """The span's cost attribute (USD) in nano-USD, rounded to the nearest, ties to even."""
    name, value = _first(attrs, COST)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        usd = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if not usd.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise _refused(f"{name}: must be a finite number of USD, not {value!r}") from None
    if usd < 0:
        raise _refused(f"{name}: must not be negative, not {value!r}")
    if usd > MAX_COST_USD:
        raise _refused(f"{name}: {usd:.6g} USD is more than one call may cost "
                       f"({MAX_COST_NANOS} nano-USD)")
    return 0 if usd <= HALF_NANO else decimal_to_nanos(usd)


def is_model_call(attrs: Mapping[str, Any]) -> bool:
    """Whether a span's attributes describe a GenAI model call: a provider named, and no
    agent or tool operation."""
    return (any(attrs.get(name) not in (None, "") for name in PROVIDER)
            and attrs.get("gen_ai.operation.name") not in NOT_MODEL_CALLS)


def _ns_to_us(ns: int) -> int:
    return int((Decimal(ns) / 1000).to_integral_value(ROUND_HALF_EVEN))


def event_of(span: Span, attrs: Mapping[str, Any], service: str | None) -> dict[str, Any]:
    """The event (``EventIn``'s fields) of one GenAI span."""
    trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise _refused(f"traceId: must be 16 bytes, not all zero, not {trace_id!r}")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise _refused(f"spanId: must be 8 bytes, not all zero, not {span_id!r}")
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not FIRST_NS <= start < END_NS:
        raise _refused(f"startTimeUnixNano: must be a time after 1970, not {start}")
    model = _text(attrs, MODEL)
    if model is None:
        raise _refused("gen_ai.response.model: is required, or gen_ai.request.model (the "
                       "model that answered)")
    start_us = _ns_to_us(start)
    event: dict[str, Any] = {
        "event_id": f"otel-{trace_id}-{span_id}", "origin": ORIGIN,
        "ts": EPOCH + timedelta(microseconds=start_us),
        "provider": _text(attrs, PROVIDER), "model": model,
        "alias": _text(attrs, ALIAS) or model,
    }
    if end:
        if end < start:
            raise _refused("endTimeUnixNano: is before startTimeUnixNano")
        event["latency_ms"] = int((Decimal(end - start) / 1_000_000).to_integral_value(
            ROUND_HALF_EVEN))
    for field, names in USAGE.items():
        count = _count(attrs, names)
        if count is not None:
            event[field] = count
    cost = _cost(attrs)
    if cost is not None:
        event["cost_nanos"], event["cost_source"] = cost, "client"
    conversation = _text(attrs, CONVERSATION)
    if conversation is not None:
        event["conversation_id"] = conversation
    metadata = {"otel.trace_id": trace_id, "otel.span_id": span_id,
                "otel.span_name": span.name}
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation:
        metadata["otel.operation"] = operation
    if service:
        metadata["otel.service"] = service
    event["metadata"] = metadata
    return event


# An event field → the attribute it comes from (to name it in a refusal).
SOURCE: dict[str, str] = {
    "event_id": "traceId/spanId", "model": " or ".join(MODEL),
    "alias": f"{ALIAS[0]} (else the model)",
    "provider": " or ".join(PROVIDER), "ts": "startTimeUnixNano", "latency_ms": "endTimeUnixNano",
    **{field: names[0] for field, names in USAGE.items()},
    "cost_nanos": COST[0], "conversation_id": CONVERSATION[0],
    "metadata": "name (otel.* metadata)",
}


def _named(problems: list[str]) -> list[str]:
    named = []
    for problem in problems:
        field, sep, what = problem.partition(": ")
        named.append(f"{SOURCE.get(field, field)}: {what}" if sep else problem)
    return named


def read_spans(request: ExportTraceServiceRequest) -> SpanBatch:
    """Every GenAI span of an export request, checked and mapped, and how many other
    spans it had; a bad GenAI span is ``SpanValidationError`` (400) naming the span
    (``index``: its place among the request's spans) and the attribute."""
    events: list[EventIn] = []
    received = 0
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        service = resource.get("service.name")
        service = service if isinstance(service, str) else None
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                index, received = received, received + 1
                attrs = attributes(span.attributes)
                if not is_model_call(attrs):
                    continue
                where = (f"span {span.name[:80]!r} (resourceSpans[{r}].scopeSpans[{s}]"
                         f".spans[{i}], traceId {span.trace_id.hex()}, spanId "
                         f"{span.span_id.hex()})")
                try:
                    events.append(parse_event(event_of(span, attrs, service)))
                except EventValidationError as exc:
                    raise SpanValidationError(_named(exc.problems), where=where,
                                              index=index) from None
                if len(events) > MAX_SPANS:
                    raise RequestTooLargeError(
                        f"more than {MAX_SPANS:,} GenAI spans in one request: lower the "
                        "exporter's batch size (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)")
    return SpanBatch(events, received=received, rejected=received - len(events))


def answer(batch: SpanBatch) -> dict[str, Any]:
    """The ``ExportTraceServiceResponse`` (its OTLP/JSON mapping) for a request whose
    GenAI spans were all recorded: ``partialSuccess`` counts the other spans."""
    if not batch.rejected:
        return {}
    return {"partialSuccess": {
        "rejectedSpans": str(batch.rejected),
        "errorMessage": (f"{batch.rejected} of {batch.received} spans are not GenAI model "
                         "calls (no gen_ai.provider.name or gen_ai.system attribute, or an "
                         "agent or tool operation) and were not recorded")}}


def encode_answer(response: Mapping[str, Any], kind: str) -> bytes:
    """An answer (``answer``'s JSON mapping) in the request's encoding."""
    message = json_format.ParseDict(dict(response), _service.ExportTraceServiceResponse())
    if kind == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def status_body(message: str, http_status: int) -> bytes:
    """A ``google.rpc.Status`` (protobuf) for an error answer, as OTLP/HTTP asks; its code
    is the gRPC code of the HTTP status."""
    from google.rpc.status_pb2 import Status

    code = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 409: 6, 413: 8, 415: 3, 422: 3,
            429: 8, 402: 8, 503: 14}.get(http_status, 13)
    return Status(code=code, message=message).SerializeToString()


__all__ = ["JSON", "PATH", "PROTOBUF", "SpanBatch", "answer", "decode", "encode_answer",
           "from_json", "inflate", "media_type", "read_spans", "status_body"]
