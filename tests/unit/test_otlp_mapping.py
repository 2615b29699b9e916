"""The OTLP mapping (``ledger.integrations.otlp``) on its own: OTLP/JSON's hex ids and
text integers read as the protobuf they stand for, the body's media type and gzip
encoding, which spans are GenAI model calls, each attribute to its event field (the
semantic-convention names first, then the older ones), times and costs rounded half to
even, and every refusal naming the attribute and the span."""

from __future__ import annotations

import gzip
import re
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ledger.errors import (
    RequestError,
    RequestTooLargeError,
    SpanValidationError,
    UnsupportedMediaTypeError,
)
from ledger.integrations import otlp

TRACE = "5b8efff798038103d269b633813fc60c"
START = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": v}


def request(*spans: dict[str, Any], service: str = "app") -> ExportTraceServiceRequest:
    """An OTLP/JSON request of spans given as ``{"attrs": …, **span fields}``."""
    body = []
    for i, span in enumerate(spans):
        span = dict(span)
        attrs = span.pop("attrs", {})
        body.append({"traceId": TRACE, "spanId": f"{i + 1:016x}", "name": f"span {i}",
                     "startTimeUnixNano": str(START), "endTimeUnixNano": str(START + 10**9),
                     "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()],
                     **span})
    return otlp.from_json({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": value(service)}]},
        "scopeSpans": [{"spans": body}]}]})


CALL = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}


def event(attrs: dict[str, Any], **span: Any) -> dict[str, Any]:
    batch = otlp.read_spans(request({"attrs": attrs, **span}))
    assert batch.rejected == 0
    [one] = batch.events
    return one.model_dump()


def refusal(attrs: dict[str, Any], **span: Any) -> str:
    with pytest.raises(SpanValidationError) as info:
        otlp.read_spans(request({"attrs": CALL}, {"attrs": attrs, **span}))
    assert info.value.status == 400 and info.value.index == 1
    assert "'span 1'" in str(info.value) and "spans[1]" in str(info.value)
    return str(info.value)


def test_otlp_json_hex_ids_and_text_integers_are_the_protobuf_they_stand_for() -> None:
    req = request({"attrs": {"n": 2**62}})
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE and span.span_id.hex() == "0000000000000001"
    assert span.start_time_unix_nano == START and span.attributes[0].value.int_value == 2**62
    assert otlp.decode(req.SerializeToString(), otlp.PROTOBUF) == req


@pytest.mark.parametrize("kind", sorted(otlp.INTEGERS))
def test_an_integer_is_any_number_of_its_type_as_a_number_or_its_decimal_text(kind: str
                                                                             ) -> None:
    """The published pattern takes exactly the decimal text of the type's integers, and
    nothing past them or spelled otherwise; as a JSON number, the server takes the same
    range, and the schema states it as far as every JSON reader is exact (2**53)."""
    low, high = otlp.INTEGERS[kind]
    pattern = re.compile(otlp.integer_pattern(kind))
    for n in (low, high, 0, 1, 9, 10, high // 7, low // 3):
        assert pattern.fullmatch(str(n)) and otlp._integer_value(str(n), kind)
        assert otlp._integer_value(n, kind)
    for n in (low - 1, high + 1, 10 * high):
        assert not pattern.fullmatch(str(n)) and not otlp._integer_value(str(n), kind)
        assert not otlp._integer_value(n, kind)
    for text in ("+1", "01", "1_0", " 1", "1.0", "", "-"):
        assert not pattern.fullmatch(text) and not otlp._integer_value(text, kind)
    n_low, n_high = otlp.schema_number_range(kind)
    assert (n_low, n_high) == (max(low, -(2**53)), min(high, 2**53))


def test_a_64_bit_integer_past_2_53_is_read_exactly_as_a_number_or_text() -> None:
    big = -(2**53) - 1
    for given in (big, str(big)):
        req = request({"attrs": {}, "attributes": [{"key": "n", "value": {"intValue": given}}]})
        assert req.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.int_value \
            == big


@pytest.mark.parametrize(("body", "words"), [
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abc"}]}]}]},
     "spans[0].spanId: must be 16 hex digits"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz" * 16}]}]}]},
     "traceId: must be 32 hex digits"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": " 00000000000001"}]}]}]},
     "spanId: must be 16 hex digits"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "n", "value": {"doubleValue": True}}]}]}]}]},
     "attributes[0].value.doubleValue: must be a number, not true"),
    ({"resourceSpans": "many"}, "resourceSpans"),
    ({"resourceSpans": [[]]}, "resourceSpans[0]: must be an object, not list"),
    ({"resourceSpans": [{"resource": []}]}, "resource: must be an object, not list"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [["name"]]}]}]},
     "spans[0]: must be an object, not list"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"status": {"code": "AAA"}}]}]}]},
     "spans[0].status.code: must be an integer of 32 bits (OTLP/JSON encodes enums as integers)"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "CLIENT"}]}]}]},
     "spans[0].kind: must be an integer of 32 bits (OTLP/JSON encodes enums as integers) or one of "
     "SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": True}]}]}]},
     "spans[0].kind: must be an integer"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"status": {"code": 2.5e-42}}]}]}]},
     "spans[0].status.code: must be an integer"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [1]}]}]}]},
     "spans[0].kind: must be an integer"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": 2**40}]}]}]},
     "spans[0].kind: must be an integer"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "+5"}]}]}]},
     "startTimeUnixNano: must be a whole number from 0 to 18446744073709551615 (or its "
     "decimal text)"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": 2**64}]}]}]},
     "startTimeUnixNano: must be a whole number from 0"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"flags": "1_0"}]}]}]},
     "flags: must be a whole number from 0 to 4294967295"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "n", "value": {"intValue": str(2**63)}}]}]}]}]},
     "intValue: must be a whole number from -9223372036854775808 to 9223372036854775807"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "n", "value": {"intValue": 2**63 + 191}}]}]}]}]},
     "intValue: must be a whole number from -9223372036854775808 to 9223372036854775807"),
    ([], "must be a JSON object"),
])
def test_otlp_json_that_is_not_an_export_request_is_a_400(body: Any, words: str) -> None:
    with pytest.raises(RequestError) as info:
        otlp.from_json(body)
    assert info.value.status == 400 and words in str(info.value)


def test_bodies_are_read_by_media_type_and_encoding() -> None:
    assert otlp.media_type("application/json; charset=utf-8") == otlp.JSON
    assert otlp.media_type("Application/X-Protobuf") == otlp.PROTOBUF
    for other in ("text/plain", None, "application/grpc"):
        with pytest.raises(UnsupportedMediaTypeError):
            otlp.media_type(other)
    assert otlp.inflate(gzip.compress(b"abc"), "gzip", 10) == b"abc"
    assert otlp.inflate(b"abc", None, 10) == b"abc"
    with pytest.raises(RequestTooLargeError, match="inflates"):
        otlp.inflate(gzip.compress(b"x" * 11), "gzip", 10)
    with pytest.raises(RequestError, match="cut short"):
        otlp.inflate(gzip.compress(b"x" * 100)[:20], "gzip", 1000)
    with pytest.raises(UnsupportedMediaTypeError, match="br"):
        otlp.inflate(b"abc", "br", 10)
    with pytest.raises(RequestError, match="protobuf"):
        otlp.decode(b"\x0a\xff\xff\xff\xff", otlp.PROTOBUF)


def test_only_model_calls_become_events_the_others_are_counted() -> None:
    batch = otlp.read_spans(request(
        {"attrs": CALL}, {"attrs": {"http.request.method": "GET"}},
        {"attrs": {**CALL, "gen_ai.operation.name": "invoke_agent"}},
        {"attrs": {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude"}}))
    assert (batch.received, batch.rejected, len(batch.events)) == (4, 2, 2)
    response = otlp.answer(batch)
    assert response["partialSuccess"]["rejectedSpans"] == "2"
    parsed = ExportTraceServiceResponse.FromString(otlp.encode_answer(response, otlp.PROTOBUF))
    assert parsed.partial_success.rejected_spans == 2
    assert otlp.answer(otlp.read_spans(request({"attrs": CALL}))) == {}


def test_each_attribute_maps_to_its_field() -> None:
    e = event({"gen_ai.provider.name": "openai", "gen_ai.system": "ignored",
               "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024",
               "llmring.alias": "smart", "gen_ai.usage.input_tokens": 100,
               "gen_ai.usage.output_tokens": 20, "gen_ai.usage.cache_read.input_tokens": 60,
               "gen_ai.usage.cache_creation.input_tokens": 30,
               "gen_ai.usage.reasoning.output_tokens": 5, "gen_ai.conversation.id": "c-1",
               "gen_ai.usage.cost": "0.0000012345", "gen_ai.operation.name": "chat"})
    assert e["event_id"] == f"otel-{TRACE}-0000000000000001"
    assert (e["provider"], e["model"], e["alias"], e["origin"]) == (
        "openai", "gpt-4o-2024", "smart", "otlp")
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"],
            e["cache_write_tokens"], e["reasoning_tokens"]) == (100, 20, 60, 30, 5)
    assert (e["cost_nanos"], e["cost_source"], e["conversation_id"]) == (
        1234, "client", "c-1")  # 1234.5 nano-USD: half to even
    assert e["latency_ms"] == 1000
    assert e["metadata"] == {"otel.trace_id": TRACE, "otel.span_id": "0000000000000001",
                             "otel.span_name": "span 0", "otel.operation": "chat",
                             "otel.service": "app"}


def test_older_attribute_names_are_read_when_the_current_ones_are_absent() -> None:
    e = event({"gen_ai.system": "anthropic", "gen_ai.request.model": "claude",
               "gen_ai.usage.prompt_tokens": 7, "gen_ai.usage.completion_tokens": 3,
               "gen_ai.usage.cache_read_input_tokens": 2,
               "gen_ai.usage.cache_creation_input_tokens": 1,
               "gen_ai.usage.reasoning_tokens": 4, "llm.usage.cost": 0.00010169999999999999})
    assert (e["provider"], e["model"], e["alias"]) == ("anthropic", "claude", "claude")
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"],
            e["cache_write_tokens"], e["reasoning_tokens"]) == (7, 3, 2, 1, 4)
    assert e["cost_nanos"] == 101_700  # the float's shortest text, rounded to nano-USD


def test_times_round_half_to_even() -> None:
    e = event(CALL, startTimeUnixNano=str(START + 2_500), endTimeUnixNano=str(START + 2_500
                                                                               + 1_500_000))
    assert e["ts"].microsecond == 2 and e["latency_ms"] == 2
    e = event(CALL, startTimeUnixNano=str(START + 3_500), endTimeUnixNano="0")
    assert e["ts"].microsecond == 4 and e["latency_ms"] is None


@pytest.mark.parametrize(("attrs", "span", "words"), [
    ({"gen_ai.provider.name": "openai"}, {}, "gen_ai.response.model: is required"),
    ({**CALL, "gen_ai.usage.input_tokens": "many"}, {},
     "gen_ai.usage.input_tokens: must be an integer >= 0, not 'many'"),
    ({**CALL, "gen_ai.usage.output_tokens": -1}, {}, "gen_ai.usage.output_tokens"),
    ({**CALL, "gen_ai.usage.input_tokens": 1.5}, {}, "gen_ai.usage.input_tokens"),
    ({**CALL, "gen_ai.usage.cost": -0.5}, {}, "gen_ai.usage.cost: must not be negative"),
    ({**CALL, "gen_ai.usage.cost": "NaN"}, {}, "gen_ai.usage.cost: must be a finite number"),
    ({**CALL, "gen_ai.usage.cost": "1e30"}, {}, "more than one call may cost"),
    ({**CALL, "gen_ai.request.model": 5}, {}, "gen_ai.request.model: must be a string"),
    (CALL, {"endTimeUnixNano": str(START - 1)}, "endTimeUnixNano: is before"),
    (CALL, {"startTimeUnixNano": "0"}, "startTimeUnixNano: must be a time"),
    (CALL, {"spanId": "0" * 16}, "spanId: must be 8 bytes, not all zero"),
    ({**CALL, "gen_ai.request.model": "gpt\x07"}, {},
     "gen_ai.response.model or gen_ai.request.model: "),
])
def test_a_bad_genai_span_is_refused_naming_span_and_attribute(
        attrs: dict[str, Any], span: dict[str, Any], words: str) -> None:
    assert words in refusal(attrs, **span)
