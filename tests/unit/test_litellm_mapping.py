"""LiteLLM's ``StandardLoggingPayload`` as an event (``ledger.integrations.litellm``, the
table of docs/http-api.md "LiteLLM"): every mapped field, the rounding of
``response_cost`` from its decimal text to nano-USD, the three body formats, failures
skipped, and each refusal naming the payload and the LiteLLM field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ledger.errors import EventValidationError, InvalidRequestError
from ledger.integrations.litellm import read_payloads, split_body

START = 1796433041.654804


def payload(call_id: str = "chatcmpl-1", **changes: Any) -> dict[str, Any]:
    """A payload as LiteLLM's SDK logs a plain call (no proxy: no model group, no key)."""
    return {
        "id": call_id, "litellm_call_id": "a4c1e143", "trace_id": "57f4", "session_id": "",
        "call_type": "acompletion", "cache_hit": None, "status": "success",
        "custom_llm_provider": "openai", "startTime": START, "endTime": START + 0.2394,
        "model": "gpt-4o-mini", "model_group": "", "model_id": "", "end_user": None,
        "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30,
        "response_cost": 1.35e-05, "request_tags": [], "model_parameters": {"user": "u1"},
        "metadata": {"user_api_key_alias": None, "user_api_key_team_id": None,
                     "spend_logs_metadata": None,
                     "usage_object": {"prompt_tokens": 10, "completion_tokens": 20,
                                      "prompt_tokens_details": None}},
        "hidden_params": {"response_cost": 1.35e-05, "usage_object": None},
        "messages": [{"role": "user", "content": "hi"}], "response": {"id": call_id},
        **changes}


def proxy_payload() -> dict[str, Any]:
    """A proxy call: a model group, a virtual key of a team, an end user, tags, cached and
    reasoning tokens (Anthropic's names), a cost with more than 9 decimals."""
    return payload(
        "chatcmpl-proxy", custom_llm_provider="anthropic", model="claude-sonnet-4-5",
        model_group="smart", end_user="acme", request_tags=["prod", "chat"],
        prompt_tokens=1200, completion_tokens=300, response_cost=0.00010169999999999999,
        session_id="sess-7", cache_hit=True,
        metadata={"user_api_key_user_id": "u-17", "user_api_key_team_alias": "research",
                  "user_api_key_team_id": "team-3", "user_api_key_alias": "batch-key",
                  "user_api_key_org_id": "org-1", "spend_logs_metadata": {"ticket": 42.5},
                  "usage_object": {"prompt_tokens": 1200, "completion_tokens": 300,
                                   "cache_read_input_tokens": 800,
                                   "cache_creation_input_tokens": 100,
                                   "completion_tokens_details": {"reasoning_tokens": 50}}})


def one(item: Any) -> Any:
    batch = read_payloads([item])
    assert batch.received == 1 and batch.skipped == 0
    return batch.events[0]


def refusal(body: Any) -> EventValidationError:
    with pytest.raises(EventValidationError) as info:
        read_payloads(body)
    return info.value


def test_a_proxy_payload_maps_to_every_documented_field() -> None:
    event = one(proxy_payload())
    assert (event.event_id, event.provider, event.model, event.alias, event.origin) == (
        "chatcmpl-proxy", "anthropic", "claude-sonnet-4-5", "smart", "litellm")
    assert (event.input_tokens, event.output_tokens, event.cached_input_tokens,
            event.cache_write_tokens, event.reasoning_tokens) == (1200, 300, 800, 100, 50)
    assert event.cost_nanos == 101_700 and event.cost_source == "client"
    assert event.ts.timestamp() == pytest.approx(START, abs=1e-6)
    assert event.latency_ms == 239 and event.kind == "usage" and event.id_at_origin is None
    assert event.metadata == {
        "litellm.user": "u-17", "litellm.team": "research", "litellm.team_id": "team-3",
        "litellm.org": "org-1", "litellm.key_alias": "batch-key", "litellm.end_user": "acme",
        "litellm.tags": ["prod", "chat"], "litellm.spend_logs_metadata": {"ticket": 42.5},
        "litellm.call_type": "acompletion", "litellm.call_id": "a4c1e143",
        "litellm.session_id": "sess-7", "litellm.cache_hit": True}


def test_a_plain_sdk_call_falls_back_to_the_model_and_the_requests_user() -> None:
    event = one(payload())
    assert event.alias == "gpt-4o-mini" and event.cost_nanos == 13_500
    assert event.cached_input_tokens == event.cache_write_tokens == 0
    assert event.metadata == {"litellm.end_user": "u1", "litellm.call_type": "acompletion",
                              "litellm.call_id": "a4c1e143"}


def test_openai_cache_details_are_read_from_the_usage_object() -> None:
    usage = {"prompt_tokens_details": {"cached_tokens": 7, "cache_creation_tokens": 2}}
    event = one(payload(metadata={"usage_object": None}, hidden_params={"usage_object": usage}))
    assert (event.cached_input_tokens, event.cache_write_tokens) == (7, 2)


@pytest.mark.parametrize(("text", "nanos"), [
    ("0.00010169999999999999", 101_700),  # LiteLLM's float noise: rounded, not refused
    ("1.35e-05", 13_500),
    ("0.0000000005", 0), ("0.0000000015", 2), ("0.0000000025", 2),  # ties to even
    ("0.12345678949999999999999", 123_456_789),  # the text, not its nearest float
    ("0", 0), ("12", 12_000_000_000),
])
def test_response_cost_is_rounded_from_its_decimal_text_to_nano_usd(text: str,
                                                                    nanos: int) -> None:
    body = orjson.dumps(payload(response_cost="COST")).replace(b'"COST"', text.encode())
    assert b'"response_cost":' + text.encode() in body
    assert read_payloads(body).events[0].cost_nanos == nanos


def test_without_a_cost_from_litellm_the_ledger_prices_the_call() -> None:
    for item in (payload(response_cost=None),
                 payload(response_cost=0.0, response_cost_failure_debug_info={"e": "x"})):
        event = one(item)
        assert event.cost_nanos is None and event.cost_source is None


def test_the_three_formats_give_the_same_events() -> None:
    items = [payload("c-1"), payload("c-2"), payload("c-3")]
    as_array = orjson.dumps(items)
    as_ndjson = b"\r\n".join(orjson.dumps(i) for i in items) + b"\n\n"
    as_single = orjson.dumps(items[0], option=orjson.OPT_INDENT_2)  # one object, any layout
    assert [e.event_id for e in read_payloads(as_array).events] == ["c-1", "c-2", "c-3"]
    assert read_payloads(as_ndjson).events == read_payloads(as_array).events
    assert read_payloads(as_single).events == read_payloads(as_array).events[:1]
    assert len(split_body(orjson.dumps(items[0]))) == 1


def test_failed_calls_are_skipped_and_counted() -> None:
    failed = payload("c-2", status="failure", custom_llm_provider=None, prompt_tokens=0,
                     response_cost=0.0, error_str="rate limited")
    batch = read_payloads([payload("c-1"), failed])
    assert (batch.received, batch.skipped) == (2, 1)
    assert [e.event_id for e in batch.events] == ["c-1"]


@pytest.mark.parametrize(("item", "named"), [
    (payload(prompt_tokens=-1), "prompt_tokens: Input should be greater than or equal to 0"),
    (payload(completion_tokens=True), "completion_tokens:"),
    (payload(prompt_tokens="10"), "prompt_tokens:"),
    ({k: v for k, v in payload().items() if k != "model"}, "model: is required"),
    (payload(model=""), "model:"),
    (payload(startTime="yesterday"), "startTime: must be a number"),
    (payload(startTime=86_400.0), "startTime: ts is before 2000-01-01"),
    (payload(endTime=START - 1), "endTime: is before startTime"),
    (payload("call 1"), "id: ids must not contain whitespace"),
    (payload(custom_llm_provider=None), "custom_llm_provider: is required"),
    (payload(response_cost=-0.01), "response_cost: must not be negative"),
    (payload(request_tags="vip"), "request_tags:"),
    (payload(status="maybe"), "status:"),
    (payload(metadata={"user_api_key_alias": 7}),
     "metadata.user_api_key_alias: must be a string"),
    (payload(metadata={"usage_object": {"prompt_tokens_details": {"cached_tokens": -3}}}),
     "metadata.usage_object.prompt_tokens_details.cached_tokens: must be an integer >= 0"),
    (payload(model="gpt\u202e4"), "model: text contains U+202E"),
    ("chatcmpl-1", "a LiteLLM payload must be a JSON object, not a string"),
    ([payload()], "a LiteLLM payload must be a JSON object, not an array"),
    (1.5, "a LiteLLM payload must be a JSON object, not a number"),
])
def test_a_bad_payload_is_refused_naming_its_place_and_field(item: Any, named: str) -> None:
    error = refusal([payload("ok-0"), item])
    assert error.index == 1 and any(p.startswith(named) for p in error.problems), error
    assert str(error).startswith("event 1: ")


@pytest.mark.parametrize(("body", "named"), [
    (b"", "the body is empty"),
    (b"  \n ", "the body is empty"),
    (b"[]", "no LiteLLM payloads"),
    (b'{"id": "c-1",', "the body is not JSON"),
    (b'{"id": "c-1"}\n{"id": "c-2",\n', "line 2 of the NDJSON body"),
    (b'[{"id": "c-1", "startTime": NaN}]', "the body is not JSON: NaN"),
    (b"\xff\xfe", "not UTF-8"),
    (orjson.dumps([{}] * 10_001), "at most 10,000"),
])
def test_a_body_that_holds_no_payloads_is_refused(body: bytes, named: str) -> None:
    with pytest.raises(InvalidRequestError, match=named):
        read_payloads(body)


@pytest.mark.parametrize(("field", "text", "named"), [
    ("startTime", "1e999999", "startTime: 1e+999999 is out of range"),
    ("startTime", "-1e999999", "startTime: -1e+999999 is out of range"),
    ("startTime", "253402300800", "startTime: 2.53402e+11 is out of range"),
    ("startTime", "-62135596801", "startTime: -6.21356e+10 is out of range"),
    ("startTime", "1e-999999", "startTime: ts is before 2000-01-01"),
    ("endTime", "1e999999", "endTime: 1e+999999 is out of range"),
    ("response_cost", "1e999999", "response_cost: 1e+999999 USD is more than one call"),
])
def test_absurd_numbers_are_refused_without_arithmetic_on_them(field: str, text: str,
                                                               named: str) -> None:
    """Exponents a JSON number may carry are refused by range before any conversion (no
    overflow, no million-digit integers): a 422 naming the field, never a 500."""
    body = orjson.dumps([payload(**{field: "N"})]).replace(b'"N"', text.encode())
    assert any(p.startswith(named) for p in refusal(body).problems), refusal(body)


def test_a_vanishing_cost_is_zero_nanos_at_once() -> None:
    body = orjson.dumps([payload(response_cost="N")]).replace(b'"N"', b"1e-999999")
    assert read_payloads(body).events[0].cost_nanos == 0


def test_a_body_nested_past_the_parser_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        read_payloads(b"[" * 100_000 + b"]" * 100_000)
