"""OpenTelemetry feeds the ledger: spans made with the real OpenTelemetry SDK are exported
by its OTLP/HTTP exporter (protobuf, gzip, configured only by the documented
``OTEL_EXPORTER_OTLP_*`` environment variables, through a ``BatchSpanProcessor``) to a
real ``llmring serve`` process. Every GenAI span is one event with the mapped fields; a
re-export adds nothing; the other spans are counted as rejected in ``partial_success``.
The JSON encoding is the same export request (built by the SDK's own encoder,
``opentelemetry.exporter.otlp.proto.common``) written as OTLP/JSON (hex ids, 64-bit
integers as text) and posted with httpx: the SDK's Python exporter only sends protobuf.
Bad payloads get a 4xx naming the problem (a ``google.rpc.Status`` for protobuf) and
change nothing."""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import orjson
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import serverproc
from tests.support.serverproc import Server

ROUTE = "/otlp/v1/traces"
PROJECTS = ("sdk", "json", "bad")
MAX_BODY = 200_000  # the server's --max-batch-body here: an oversized export is cheap
PROTOBUF = {"Content-Type": "application/x-protobuf"}
# start of the first span: an hour ago, with nanoseconds that round (half to even) to µs
BASE_NS = (time.time_ns() // 10**9 - 3600) * 10**9 + 123_456_789


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("otlp") / "data", projects=(),
                           extra=("--max-batch-body", str(MAX_BODY)), quick_keys=PROJECTS)
    try:
        yield srv
    finally:
        srv.stop()


def events(server: Server, project: str) -> list[dict[str, Any]]:
    answer = httpx.get(server.url + "/api/v1/logs", params={"limit": 1000},
                       headers=server.headers(project))
    assert answer.status_code == 200, answer.text
    return list(answer.json()["logs"])


# The spans of one traced request: two GenAI model calls (semantic-convention names, and
# OpenLLMetry's older ones), an agent span and an HTTP span (neither is a model call).
OPENAI = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
          "gen_ai.request.model": "gpt-4o-mini",
          "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
          "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
          "gen_ai.usage.cache_read.input_tokens": 1000,
          "gen_ai.usage.reasoning.output_tokens": 50,
          "gen_ai.conversation.id": "conv-42", "gen_ai.usage.cost": 0.00010169999999999999,
          "llmring.alias": "fast"}
ANTHROPIC = {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
             "gen_ai.usage.prompt_tokens": 500, "gen_ai.usage.completion_tokens": 40,
             "gen_ai.usage.cache_read_input_tokens": 100,
             "gen_ai.usage.cache_creation_input_tokens": 200}
AGENT = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "invoke_agent",
         "gen_ai.agent.name": "helper"}
HTTP = {"http.request.method": "GET", "url.path": "/answer"}


def make_spans(tracer_provider: TracerProvider, offset_ns: int = 0) -> None:
    """The four spans, each with a fixed start and end (the event's ts and latency)."""
    tracer = tracer_provider.get_tracer("tests.otlp")
    start = BASE_NS + offset_ns
    with tracer.start_as_current_span("POST /answer", attributes=HTTP,
                                      start_time=start, end_on_exit=False) as root:
        agent = tracer.start_span("invoke_agent helper", attributes=AGENT,
                                  start_time=start + 1000)
        call = tracer.start_span("chat gpt-4o-mini", attributes=OPENAI, start_time=start)
        call.end(end_time=start + 1_234_567_891)
        call = tracer.start_span("anthropic.chat", attributes=ANTHROPIC,
                                 start_time=start + 2 * 10**9)
        call.end(end_time=start + 2 * 10**9 + 500_000)  # 0.5 ms: rounds to even, 0
        agent.end(end_time=start + 3 * 10**9)
        root.end(end_time=start + 4 * 10**9)


def recorded_spans(offset_ns: int = 0) -> list[ReadableSpan]:
    """The four spans as the SDK hands them to an exporter."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "answers"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    make_spans(provider, offset_ns)
    provider.shutdown()
    return list(memory.get_finished_spans())


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON encoding of ``request``: the protobuf JSON mapping (64-bit integers
    as text) with trace and span ids as hex, as the OTLP spec writes them."""
    data = json_format.MessageToDict(request)
    for resource in data["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return data


def expected(event: dict[str, Any], trace_id: str, span_id: str) -> None:
    assert event["event_id"] == f"otel-{trace_id}-{span_id}"
    assert event["origin"] == "otlp"
    assert event["metadata"]["otel.trace_id"] == trace_id
    assert event["metadata"]["otel.span_id"] == span_id
    assert event["metadata"]["otel.service"] == "answers"


def assert_events(recorded: list[dict[str, Any]], spans: Sequence[ReadableSpan]) -> None:
    """Exactly the two GenAI spans are events, with every mapped field."""
    ids = {s.name: (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}")
           for s in spans}
    by_id = {e["event_id"]: e for e in recorded}
    assert len(recorded) == 2 and len(by_id) == 2
    openai = by_id[f"otel-{ids['chat gpt-4o-mini'][0]}-{ids['chat gpt-4o-mini'][1]}"]
    expected(openai, *ids["chat gpt-4o-mini"])
    assert (openai["provider"], openai["model"], openai["alias"]) == (
        "openai", "gpt-4o-mini-2024-07-18", "fast")
    assert (openai["input_tokens"], openai["output_tokens"], openai["cached_input_tokens"],
            openai["reasoning_tokens"]) == (1200, 300, 1000, 50)
    assert openai["cost_nanos"] == 101_700 and openai["cost_source"] == "client"
    assert openai["conversation_id"] == "conv-42"
    assert openai["latency_ms"] == 1235
    ts_us = (BASE_NS // 1000) + 1  # …456.789 µs rounds up
    assert openai["ts"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
        ts_us // 10**6)))
    assert openai["ts"].endswith(f".{ts_us % 10**6:06d}Z")
    assert openai["metadata"]["otel.operation"] == "chat"
    claude = by_id[f"otel-{ids['anthropic.chat'][0]}-{ids['anthropic.chat'][1]}"]
    expected(claude, *ids["anthropic.chat"])
    assert (claude["provider"], claude["model"], claude["alias"]) == (
        "anthropic", "claude-haiku-4-5", "claude-haiku-4-5")
    assert (claude["input_tokens"], claude["output_tokens"], claude["cached_input_tokens"],
            claude["cache_write_tokens"]) == (500, 40, 100, 200)
    assert claude["cost_source"] != "client" and claude["latency_ms"] == 0


def test_the_sdk_exporter_records_each_genai_span_once(server: Server,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """The SDK's OTLP/HTTP exporter, configured by the documented environment variables
    (endpoint, X-API-Key header, gzip), behind a BatchSpanProcessor: the two GenAI spans
    of four are two events; the same spans exported again add nothing."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url + "/otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"X-API-Key={server.keys['sdk']}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    memory = InMemorySpanExporter()
    exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "answers"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    make_spans(provider)
    assert provider.force_flush(30_000)
    spans = list(memory.get_finished_spans())
    assert_events(events(server, "sdk"), spans)
    again = OTLPSpanExporter()
    assert again.export(spans) == SpanExportResult.SUCCESS  # a re-export
    provider.shutdown()
    assert_events(events(server, "sdk"), spans)


def test_rejected_spans_are_counted_in_partial_success(server: Server) -> None:
    """The export request the SDK's encoder builds, posted as protobuf: 200 with an
    ``ExportTraceServiceResponse`` whose ``partial_success`` rejects the 2 spans that
    are not model calls."""
    request = encode_spans(recorded_spans(offset_ns=7 * 10**9))
    answer = httpx.post(server.url + ROUTE, content=request.SerializeToString(),
                        headers={**server.headers("bad"), **PROTOBUF})
    assert answer.status_code == 200, answer.content
    assert answer.headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 2
    assert "not GenAI model calls" in response.partial_success.error_message
    assert len(events(server, "bad")) == 2


def test_the_json_encoding_records_the_same_events(server: Server) -> None:
    """OTLP/JSON (hex ids, integers as text), gzip: the same events as protobuf, the
    answer in JSON; posting it again adds nothing."""
    spans = recorded_spans()
    body = gzip.compress(orjson.dumps(otlp_json(encode_spans(spans))))
    headers = {**server.headers("json"), "Content-Type": "application/json",
               "Content-Encoding": "gzip"}
    for _ in range(2):
        answer = httpx.post(server.url + ROUTE, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["partialSuccess"]["rejectedSpans"] == "2"
    assert_events(events(server, "json"), spans)


def with_attributes(spans: Sequence[ReadableSpan], name: str, **changes: Any
                    ) -> ExportTraceServiceRequest:
    """The export request of ``spans`` with the span ``name``'s attributes changed
    (``None``: removed)."""
    request = encode_spans(spans)
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                if span.name != name:
                    continue
                kept = [kv for kv in span.attributes if kv.key not in changes]
                del span.attributes[:]
                span.attributes.extend(kept)
                for key, value in changes.items():
                    if value is None:
                        continue
                    attr = span.attributes.add(key=key)
                    if isinstance(value, str):
                        attr.value.string_value = value
                    else:
                        attr.value.int_value = value
    return request


def refused_protobuf(server: Server, body: bytes, status: int, *words: str,
                     headers: dict[str, str] | None = None) -> None:
    answer = httpx.post(server.url + ROUTE, content=body,
                        headers={**server.headers("bad"), **PROTOBUF, **(headers or {})})
    assert answer.status_code == status, answer.content
    assert answer.headers["content-type"] == "application/x-protobuf"
    message = Status.FromString(answer.content).message
    for word in words:
        assert word in message, message


def test_bad_payloads_are_refused_naming_the_problem_and_change_nothing(server: Server
                                                                        ) -> None:
    """Invalid protobuf, a token count of the wrong type or negative, no model, an
    oversized body (as sent, or once inflated), another content type, no key: a 4xx
    naming the problem (``google.rpc.Status`` for protobuf) and no event, even for the
    good GenAI span of the same request."""
    before = len(events(server, "bad"))
    spans = recorded_spans(offset_ns=11 * 10**9)
    call = "chat gpt-4o-mini"
    refused_protobuf(server, b"\x0a\xff\xff\xff\xff", 400, "protobuf")
    refused_protobuf(server, with_attributes(spans, call, **{
        "gen_ai.usage.input_tokens": "many"}).SerializeToString(), 400,
        "gen_ai.usage.input_tokens", "integer", call)
    refused_protobuf(server, with_attributes(spans, call, **{
        "gen_ai.usage.output_tokens": -3}).SerializeToString(), 400,
        "gen_ai.usage.output_tokens", ">= 0")
    refused_protobuf(server, with_attributes(spans, call, **{
        "gen_ai.response.model": None, "gen_ai.request.model": None}).SerializeToString(),
        400, "gen_ai.response.model: is required")
    refused_protobuf(server, b"\x00" * (MAX_BODY + 1), 413, "too large")
    bomb = gzip.compress(b"\x00" * (MAX_BODY * 4))
    refused_protobuf(server, bomb, 413, "inflates", headers={"Content-Encoding": "gzip"})
    refused_protobuf(server, b"not gzip", 400, "gzip", headers={"Content-Encoding": "gzip"})
    good = encode_spans(spans).SerializeToString()
    refused_protobuf(server, good, 401, headers={"X-API-Key": "not-a-key"})
    answer = httpx.post(server.url + ROUTE, content=good,
                        headers={**server.headers("bad"), "Content-Type": "text/plain"})
    assert answer.status_code == 415 and "application/x-protobuf" in answer.json()["detail"]
    wrong = httpx.post(server.url + ROUTE, content=b'{"resourceSpans": 5}',
                       headers={**server.headers("bad"), "Content-Type": "application/json"})
    assert wrong.status_code == 400 and "resourceSpans" in wrong.json()["detail"]
    hexless = otlp_json(encode_spans(spans))
    hexless["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "xyz"
    wrong = httpx.post(server.url + ROUTE, content=orjson.dumps(hexless),
                       headers={**server.headers("bad"), "Content-Type": "application/json"})
    assert wrong.status_code == 400 and "spanId: must be 16 hex digits" in wrong.json()["detail"]
    assert len(events(server, "bad")) == before
