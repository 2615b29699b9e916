"""Events: validation, exact costs, canonical bytes (RFC 8785) and leaf hashes."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.model.event import (
    STORED_FIELDS,
    EventValidationError,
    canonical_bytes_of_stored,
    canonical_fields,
    parse_event,
    parse_event_json,
    prepare,
)
from ledger.model.pricing import PriceBook
from tests.conftest import usage

NOW = 1_790_000_000_000_000  # µs


def prep(data: dict, pricer=None):
    return prepare(parse_event(data), tenant="acme", received_us=NOW, pricer=pricer)


def problems_of(data: dict) -> str:
    with pytest.raises(EventValidationError) as info:
        prep(data)
    return str(info.value)


def test_missing_model_is_named() -> None:
    bad = usage()
    del bad["model"]
    assert "model: is required" in problems_of(bad)


def test_negative_tokens_are_refused() -> None:
    assert "input_tokens" in problems_of(usage(input_tokens=-1))


def test_tokens_given_as_text_or_bool_are_refused() -> None:
    assert "output_tokens" in problems_of(usage(output_tokens="12"))
    assert "output_tokens" in problems_of(usage(output_tokens=True))


def test_malformed_timestamp_is_refused() -> None:
    assert "ts" in problems_of(usage(ts="2025-13-45T99:00:00Z"))


def test_timestamp_far_in_the_future_is_refused() -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    assert "future" in problems_of(usage(ts=future))


def test_oversized_metadata_is_refused() -> None:
    assert "metadata" in problems_of(usage(metadata={"blob": "x" * 20_000}))


def test_non_finite_metadata_number_is_refused() -> None:
    assert "finite" in problems_of(usage(metadata={"x": math.inf}))


def test_tenant_in_the_body_is_refused() -> None:
    assert "tenant cannot be set by the caller" in problems_of(usage(tenant="other"))


def test_unknown_field_is_refused() -> None:
    assert "colour: is not a known event field" in problems_of(usage(colour="red"))


def test_disagreeing_cost_and_cost_nanos_are_refused() -> None:
    assert "disagree" in problems_of(usage(cost="0.5", cost_nanos=1))


def test_malformed_json_is_reported() -> None:
    with pytest.raises(EventValidationError, match="malformed JSON"):
        parse_event_json(b'{"model": ')


def test_cost_in_usd_becomes_exact_nanos() -> None:
    assert prep(usage(cost="0.1")).fields["cost_nanos"] == 100_000_000
    assert prep(usage(cost=0.1)).fields["cost_nanos"] == 100_000_000
    assert prep(usage(cost="0.000000001")).fields["cost_nanos"] == 1


def test_cost_with_more_than_nine_decimals_is_refused() -> None:
    assert "9 decimal places" in problems_of(usage(cost="0.0000000001"))


def test_a_cost_above_what_one_call_may_cost_is_refused() -> None:
    assert prep(usage(cost="9007199.254740991")).fields["cost_nanos"] == 2**53 - 1
    for cost in ("9007199.254740992", 10**11, 5e11):
        assert "more than one call may cost" in problems_of(usage(cost=cost))


def test_given_cost_is_marked_client() -> None:
    p = prep(usage(cost="0.25"))
    assert (p.fields["cost_source"], p.fields["price_id"]) == ("client", None)


def test_missing_cost_is_priced_from_the_price_table() -> None:
    data = usage(model="gpt-4o", input_tokens=1000, output_tokens=500)
    del data["cost"]
    p = prep(data, pricer=PriceBook())
    assert p.fields["cost_source"] == "price_table"
    assert p.fields["cost_nanos"] == 7_500_000  # $2.50/M in, $10/M out
    assert "openai/gpt-4o" in p.fields["price_id"]


def test_unknown_model_is_unpriced_not_free() -> None:
    data = usage(model="in-house-llm-7b", provider="local")
    del data["cost"]
    p = prep(data, pricer=PriceBook())
    assert (p.fields["cost_source"], p.fields["cost_nanos"]) == ("unpriced", 0)


def test_conversation_without_id_gets_one() -> None:
    assert prep(usage(kind="conversation")).fields["conversation_id"]


def test_naive_timestamp_is_utc() -> None:
    p = prep(usage(ts="2025-10-01T12:00:00"))
    assert p.fields["ts"] == "2025-10-01T12:00:00.000000Z"


def test_leaf_hash_is_recomputable_from_the_exported_fields() -> None:
    p = prep(usage(event_id="e1", ts="2025-10-01T12:00:00.5+02:00", metadata={"a": [1, 2.5]}))
    exported = dict(p.fields)
    exported["v"] = 1
    canonical = rfc8785.dumps(exported)
    assert canonical == p.canonical
    assert hashlib.sha256(b"\x00" + canonical).digest() == p.leaf_hash
    assert exported["ts"] == "2025-10-01T10:00:00.500000Z"


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
# Identifiers (text fields, metadata keys) hold no control, format (bidi, zero-width) or
# surrogate characters; metadata values may hold any text.
keys = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf")), max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12)
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf")), min_size=1,
                max_size=20)


@settings(max_examples=300, deadline=None)
@given(model=texts, alias=texts, metadata=st.dictionaries(keys, json_values,
                                                          max_size=5),
       tokens=st.integers(min_value=0, max_value=2**53 - 1))
def test_fast_canonical_bytes_equal_the_rfc8785_reference(model, alias, metadata,
                                                          tokens) -> None:
    p = prep(usage(model=model, alias=alias, metadata=metadata, input_tokens=tokens))
    reference = rfc8785.dumps(canonical_fields(p.fields, p.fields["ts"]))
    assert p.canonical == reference
    assert p.metadata_json.encode() == rfc8785.dumps(metadata)


@settings(max_examples=300, deadline=None)
@given(model=texts, alias=texts, metadata=st.dictionaries(keys, json_values,
                                                          max_size=5),
       tokens=st.integers(min_value=0, max_value=2**53 - 1))
def test_canonical_bytes_of_a_stored_row_equal_those_made_at_append(model, alias, metadata,
                                                                    tokens) -> None:
    p = prep(usage(model=model, alias=alias, metadata=metadata, input_tokens=tokens))
    values = {name: p.fields[name] for name in STORED_FIELDS}
    assert canonical_bytes_of_stored(values, p.tenant, p.fields["ts"],
                                     p.metadata_json) == p.canonical


def test_a_non_canonical_stored_metadata_text_changes_the_canonical_bytes() -> None:
    p = prep(usage(metadata={"a": 1, "b": 2}))
    values = {name: p.fields[name] for name in STORED_FIELDS}
    edited = canonical_bytes_of_stored(values, p.tenant, p.fields["ts"], '{"b":2,"a":1}')
    assert edited != p.canonical
