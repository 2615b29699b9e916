"""Ingestion endpoints for the tools teams already run: ``POST /api/v1/integrations/litellm``
takes what LiteLLM's ``generic_api`` logger sends (``ledger.integrations.litellm`` reads
it), in any of its three formats; ``POST /otlp/v1/traces`` is an OTLP/HTTP traces
receiver (``ledger.integrations.otlp``), answering in the request's encoding, its errors
as ``google.rpc.Status`` for protobuf requests (``OtlpErrorBodies``). Both append
through the service's batch path (all or nothing, acknowledged once durable)."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api import operations as ops
from ledger.integrations import otlp
from ledger.integrations.litellm import MAX_PAYLOADS, LiteLLMPayload
from ledger.server.logs import Tenant, json_response, route, service
from ledger.server.schemas import LiteLLMOut, error_responses

router = APIRouter(tags=["integrations"])


def _litellm_body() -> dict[str, Any]:
    """The OpenAPI request body: a JSON array of payloads or one payload; the NDJSON
    format (one payload a line) is described in words, as LiteLLM sends it as JSON."""
    payload = LiteLLMPayload.model_json_schema()
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": [
        {"type": "array", "items": payload, "minItems": 1, "maxItems": MAX_PAYLOADS},
        payload]}}},
        "description": "LiteLLM's `StandardLoggingPayload`s as its `generic_api` logger "
                       "sends them: `json_array` (a JSON array), `single` (one object) "
                       "or `ndjson` (one object a line)."}


@route(router, ops.LOG_LITELLM, response_model=LiteLLMOut,
       openapi_extra={"requestBody": _litellm_body()})
async def log_litellm(tenant: Tenant, request: Request) -> Response:
    """One event per successful call, its LiteLLM `id` as the `event_id`: a retried
    batch adds nothing (`repeated`), an id reused with other content is a 409. Failed
    calls are skipped. Any bad payload refuses the whole request, naming the payload
    (`index`) and the LiteLLM field, and nothing is written (docs/http-api.md)."""
    body = await request.body()
    answer = await anyio.to_thread.run_sync(service(request).log_litellm, tenant, body)
    return json_response(answer)


# -- OpenTelemetry (OTLP/HTTP) -------------------------------------------------------------
BINARY = {"schema": {"type": "string", "format": "binary"}}
ANSWER_JSON = {"type": "object", "title": "ExportTraceServiceResponse", "properties": {
    "partialSuccess": {"type": "object", "properties": {
        "rejectedSpans": {"type": "string", "description": "Spans not recorded: they are "
                                                           "not GenAI model calls."},
        "errorMessage": {"type": "string"}}}}}


def _otlp_json_schema() -> dict[str, Any]:
    """The OTLP/JSON ``ExportTraceServiceRequest`` as a JSON schema: the fields the
    protobuf JSON mapping reads, with their types (ids in hex; integers as a number in
    their type's range or its decimal text; an ``AnyValue`` holds one value; null for a
    field's default); other fields are ignored (OTLP receivers ignore unknown fields),
    so no object of the schema forbids additional properties."""
    def obj(**properties: Any) -> dict[str, Any]:  # null: a field's default (the mapping)
        return {"type": "object", "properties": {
            name: {"anyOf": [schema, {"type": "null"}]} for name, schema in properties.items()}}

    def array(items: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": items}

    text = {"type": "string"}

    def integer(kind: str) -> dict[str, Any]:  # a number in range, or its decimal text
        low, high = otlp.schema_number_range(kind)
        return {"oneOf": [{"type": "integer", "minimum": low, "maximum": high},
                          {"type": "string", "pattern": otlp.integer_pattern(kind)}]}

    def enum(name: str) -> dict[str, Any]:  # an integer (OTLP/JSON) or a name (the mapping)
        return {"oneOf": [integer("int32")["oneOf"][0],
                          {"type": "string", "enum": list(otlp.ENUM_NAMES[name])}]}

    uint32, uint64, int64 = integer("uint32"), integer("uint64"), integer("int64")
    scalar = {"stringValue": text, "boolValue": {"type": "boolean"}, "intValue": int64,
              "doubleValue": {"type": "number"}}
    # An AnyValue sets at most one member of its oneof (two are refused); null is unset.
    set_value = {"not": {"type": "null"}}
    both_set = [{"required": [a, b], "properties": {a: set_value, b: set_value}}
                for i, a in enumerate(scalar) for b in list(scalar)[i + 1:]]
    value = {**obj(**scalar), "not": {"anyOf": both_set},
             "description": "An AnyValue: one of stringValue, boolValue, intValue, "
                            "doubleValue (arrays and key-value lists are read too)."}
    attributes = array(obj(key=text, value=value))
    span = obj(traceId={"type": "string", "pattern": "^([0-9a-fA-F]{32})?$"},
               spanId={"type": "string", "pattern": "^([0-9a-fA-F]{16})?$"},
               parentSpanId={"type": "string", "pattern": "^([0-9a-fA-F]{16})?$"},
               traceState=text, name=text, kind=enum("SpanKind"), flags=uint32,
               startTimeUnixNano=uint64, endTimeUnixNano=uint64, attributes=attributes,
               droppedAttributesCount=uint32,
               status=obj(message=text, code=enum("StatusCode")))
    scope = obj(name=text, version=text, attributes=attributes,
                droppedAttributesCount=uint32)
    return {**obj(resourceSpans=array(obj(
        resource=obj(attributes=attributes, droppedAttributesCount=uint32),
        scopeSpans=array(obj(scope=scope, spans=array(span), schemaUrl=text)),
        schemaUrl=text))), "title": "ExportTraceServiceRequest"}


def _otlp_body() -> dict[str, Any]:
    return {"required": True, "content": {
        otlp.PROTOBUF: BINARY, otlp.JSON: {"schema": _otlp_json_schema()}},
        "description": "An OTLP `ExportTraceServiceRequest`, binary protobuf or OTLP/JSON "
                       "(hex ids), optionally `Content-Encoding: gzip`."}


def _otlp_responses() -> dict[int | str, dict[str, Any]]:
    """The error answers of every operation, with the protobuf ``google.rpc.Status`` a
    protobuf request gets instead of the JSON error body; 200 in either encoding."""
    responses = error_responses(ops.LOG_OTLP)
    for status, response in responses.items():
        responses[status] = {**response, "content": {otlp.PROTOBUF: BINARY}}
    responses[200] = {"description": "All GenAI spans recorded (or already recorded); "
                                     "`partialSuccess` counts the other spans.",
                      "content": {otlp.JSON: {"schema": ANSWER_JSON}, otlp.PROTOBUF: BINARY}}
    return responses


@route(router, ops.LOG_OTLP, response_class=Response, responses=_otlp_responses(),
       openapi_extra={"requestBody": _otlp_body()})
async def log_otlp(tenant: Tenant, request: Request) -> Response:
    """OpenTelemetry's OTLP/HTTP trace export (`OTEL_EXPORTER_OTLP_ENDPOINT=<server>/otlp`,
    the key in `OTEL_EXPORTER_OTLP_HEADERS=X-API-Key=…`): each GenAI model call span is one
    event, its `event_id` from its trace and span ids, so a re-export adds nothing; other
    spans are counted in `partialSuccess`. A bad GenAI span refuses the whole request
    (400 `invalid_span`, naming the span and attribute) and nothing is written."""
    kind = otlp.media_type(request.headers.get("content-type"))
    limit = request.app.state.server.config.max_batch_body
    encoding = request.headers.get("content-encoding")
    body = await request.body()

    def record() -> bytes:  # in the thread pool: inflating and decoding take time
        traces = otlp.inflate(body, encoding, limit)
        return otlp.encode_answer(service(request).log_otlp(tenant, traces, kind), kind)

    return Response(await anyio.to_thread.run_sync(record), media_type=kind)


class OtlpErrorBodies:
    """An error answer to a protobuf request on ``/otlp/v1/traces`` re-encoded as the
    protobuf ``google.rpc.Status`` OTLP/HTTP asks for (its message: the error's
    ``detail``), whichever layer answered it (authentication, body limits, the route)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != otlp.PATH or not any(
                name == b"content-type" and value.split(b";")[0].strip().lower()
                == otlp.PROTOBUF.encode() for name, value in scope["headers"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reencode(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            try:
                detail = orjson.loads(b"".join(chunks)).get("detail", "")
            except (orjson.JSONDecodeError, AttributeError):
                detail = b"".join(chunks).decode("utf-8", "replace")
            body = otlp.status_body(str(detail), start["status"])
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k not in (b"content-type", b"content-length")]
            headers += [(b"content-type", otlp.PROTOBUF.encode()),
                        (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reencode)
