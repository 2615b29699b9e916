"""The event schema table: every piece derived from it agrees with it (the pydantic
models, the stored row and its Arrow schema, the canonical key order, the batch columns,
the C loops' keys), and the stored format is the one written before the table existed."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from ledger.api.service import EVENT_KEYS as CONVERSATION_EVENT_KEYS
from ledger.model import batch, schema
from ledger.model.batch import BATCH_COLUMNS, FIELD_COLUMNS, PreparedBatch, prepare_batch
from ledger.model.event import Event, EventIn, canonical_fields, parse_event, prepare
from ledger.model.schema import FIELDS, REQUIRED
from ledger.storage.segments import EVENT_SCHEMA as SEGMENT_SCHEMA
from ledger.storage.segments import rows_to_table

NOW = 1_790_000_000_000_000
TS = pa.timestamp("us", tz="UTC")
# The stored format as written by the code before the table (commit 0aecc9c): it must
# never change, or existing data directories would no longer read alike.
FROZEN_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("seq", pa.int64()), ("ts", TS), ("recorded_at", TS),
    ("kind", pa.string()), ("conversation_id", pa.string()), ("provider", pa.string()),
    ("model", pa.string()), ("alias", pa.string()), ("profile", pa.string()),
    ("input_tokens", pa.int64()), ("output_tokens", pa.int64()),
    ("cached_input_tokens", pa.int64()), ("cache_write_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()), ("cost_nanos", pa.int64()),
    ("cost_source", pa.string()), ("price_id", pa.string()), ("latency_ms", pa.int64()),
    ("origin", pa.string()), ("id_at_origin", pa.string()), ("metadata", pa.string()),
    ("content_sha256", pa.string()), ("leaf_hash", pa.binary(32)),
])
FROZEN_DICTIONARY = ["kind", "provider", "model", "alias", "profile", "cost_source",
                     "price_id", "origin"]
FROZEN_CANONICAL = (
    "alias", "cache_write_tokens", "cached_input_tokens", "content_sha256",
    "conversation_id", "cost_nanos", "cost_source", "event_id", "id_at_origin",
    "input_tokens", "kind", "latency_ms", "metadata", "model", "origin", "output_tokens",
    "price_id", "profile", "provider", "reasoning_tokens", "tenant", "ts", "v")


def test_the_stored_format_is_unchanged() -> None:
    assert schema.EVENT_SCHEMA.equals(FROZEN_SCHEMA, check_metadata=True)
    assert SEGMENT_SCHEMA is schema.EVENT_SCHEMA
    assert schema.DICTIONARY_COLUMNS == FROZEN_DICTIONARY
    assert schema.CANONICAL_KEYS == FROZEN_CANONICAL


def test_the_arrow_schema_is_the_tables_stored_fields() -> None:
    stored = [f for f in FIELDS if f.stored]
    assert schema.EVENT_SCHEMA.names == [f.name for f in stored] == list(schema.ROW_FIELDS)
    assert [field.type for field in schema.EVENT_SCHEMA] == [f.arrow for f in stored]
    assert [f.name for f in stored if f.dictionary] == schema.DICTIONARY_COLUMNS


def _unwrap(annotation: object) -> tuple[object, bool]:
    """(the type, whether None is allowed) of an annotation ``T`` or ``T | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def test_event_in_has_the_fields_a_caller_gives() -> None:
    given = [f for f in FIELDS if f.given]
    assert list(EventIn.model_fields) == [f.name for f in given]
    for f in given:
        info = EventIn.model_fields[f.name]
        kind, nullable = _unwrap(info.annotation)
        assert nullable == f.optional, f.name
        if f.check == "choice":
            assert typing.get_args(kind) == f.choices, f.name
        else:
            assert kind == f.type, f.name
        assert info.alias == f.alias, f.name
        if f.default is REQUIRED:
            assert info.is_required(), f.name
        else:
            assert info.get_default(call_default_factory=True) == f.default, f.name
    assert set(schema.LEDGER_FIELDS) == {f.name for f in FIELDS} - set(EventIn.model_fields)
    assert set(EventIn.model_fields) | {"timestamp"} == schema.INPUT_KEYS
    assert set(CONVERSATION_EVENT_KEYS) <= schema.INPUT_KEYS


def test_event_has_the_recorded_fields() -> None:
    recorded = [f for f in FIELDS if f.recorded]
    assert list(Event.model_fields) == [f.name for f in recorded]
    for f in recorded:
        kind, nullable = _unwrap(Event.model_fields[f.name].annotation)
        assert (kind, nullable) == (f.type, f.nullable), f.name


def _prepared(**extra: object):  # type: ignore[no-untyped-def]
    event = {"provider": "openai", "model": "gpt-4o", "event_id": "e-1", "input_tokens": 3,
             "ts": datetime(2026, 1, 2, tzinfo=UTC), **extra}
    return prepare(parse_event(event), tenant="acme", received_us=NOW, pricer=None)


def test_canonical_bytes_have_the_tables_canonical_keys_in_order() -> None:
    p = _prepared(metadata={"k": "v"})
    keys = list(orjson.loads(p.canonical))
    assert keys == list(schema.CANONICAL_KEYS)
    assert keys == sorted({f.name for f in FIELDS if f.canonical} | {"v"})
    assert list(canonical_fields(p.fields, p.fields["ts"])) == keys
    assert len(p.row(0, NOW)) == len(schema.ROW_FIELDS)


def test_batch_columns_are_the_given_fields_and_the_computed_ones() -> None:
    assert PreparedBatch.__slots__ == ("tenant", *BATCH_COLUMNS)
    names = {f.name for f in FIELDS if f.given and f.recorded}
    assert {c for c in FIELD_COLUMNS if c not in ("ts_us", "ts_text", "metadata_json")} == (
        names - {"ts"})
    assert {"ts_us", "ts_text", "metadata", "metadata_json"} <= set(FIELD_COLUMNS)
    p = _prepared()
    b = PreparedBatch.from_prepared("acme", [p])
    assert b.rows(7, NOW) == [p.row(7, NOW)]
    assert b.table([7], NOW).equals(rows_to_table([p.row(7, NOW)]))
    assert b.fields(0) == p.fields


def test_the_c_loops_are_given_the_tables_keys() -> None:
    if batch._native is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    spec = batch.native_spec()
    assert spec["keys"] == schema.INPUT_KEYS
    assert [k for k, _, _ in spec["canonical"]] == list(schema.CANONICAL_KEYS)
    simple = [f.name for f in FIELDS if f.check in ("id", "text", "count", "choice", "sha256")]
    assert [field[0] for field in spec["fields"]] == simple
    # what the C code writes and accepts is what it was given
    events = [{"provider": "p", "model": "m", "event_id": f"c-{i}",
               "ts": "2026-01-02T00:00:00Z"} for i in range(8)]
    events[1]["not_a_field"] = 1
    events[2] = {  # every key an event may carry
        "event_id": "c-2", "ts": "2026-01-02T00:00:00Z", "kind": "conversation",
        "conversation_id": "conv", "provider": "p", "model": "m", "alias": "a",
        "profile": "x", "input_tokens": 1, "output_tokens": 2, "cached_input_tokens": 0,
        "cache_write_tokens": 0, "reasoning_tokens": 0, "cost": 0.5,
        "cost_nanos": 500_000_000, "cost_source": "provider", "price_id": "row",
        "latency_ms": 5, "origin": "o", "id_at_origin": "i", "metadata": {"k": 1},
        "content_sha256": "ab" * 32}
    events[3] = {**events[2], "event_id": "c-3", "timestamp": events[2]["ts"]}
    del events[3]["ts"]
    assert set(events[2]) | set(events[3]) == schema.INPUT_KEYS
    columns = dict(zip(batch._SCAN_COLUMNS, batch._native.scan(
        events, [NOW] * len(events), 0, NOW * 2, batch._usd_nanos,
        (16_384, schema.MAX_SAFE_INT, 10**16)), strict=True))
    assert columns["slow"] == [False, True] + [False] * 6
    assert columns["cost_source"][2] == "provider" and columns["kind"][3] == "conversation"
    prepared = prepare_batch(events[:1] + events[3:], tenant="acme", received_us=NOW,
                             pricer=None)
    assert list(orjson.loads(prepared.canonical[0])) == list(schema.CANONICAL_KEYS)


def test_the_c_loops_refuse_a_malformed_schema_and_work_only_once_configured() -> None:
    if batch._native is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    native, spec = batch._native, batch.native_spec()
    first, *others = spec["fields"]
    bad_check = {**spec, "fields": ((first[0], 99, *first[2:]), *others)}
    bad_encoding = {**spec, "canonical": (("alias", 9, 0), *spec["canonical"][1:])}
    bad_cost = {**spec, "cost_columns": (0, len(spec["fields"]))}
    try:
        for bad in (bad_check, bad_encoding, bad_cost):
            with pytest.raises(ValueError):
                native.configure(**bad)
            with pytest.raises(RuntimeError, match="configure"):
                native.encode((), [], [], [], [])
    finally:
        native.configure(**spec)
    events = [{"provider": "p", "model": "m", "event_id": f"r-{i}"} for i in range(5)]
    with_c = prepare_batch(events, tenant="acme", received_us=NOW, pricer=None)
    assert with_c.canonical == [p.canonical for p in (
        prepare(parse_event(e), tenant="acme", received_us=NOW, pricer=None) for e in events)]
