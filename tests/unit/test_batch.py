"""Batch preparation: the column checks give what the per-event path gives, byte for byte;
generated ids found by their day; small and large appends mixed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench._common import EventFactory
from ledger.core.facade import Ledger
from ledger.model import batch
from ledger.model.batch import PreparedBatch, new_event_ids, prepare_batch
from ledger.model.event import (
    EventValidationError,
    generated_id_day,
    generated_id_ms,
    is_generated_id,
    new_event_id,
    parse_event,
    prepare,
)
from ledger.model.pricing import PriceBook
from ledger.tlog import merkle

NOW = 1_790_000_000_000_000
BOOK = PriceBook()
COLUMNS = [name for name in PreparedBatch.__slots__ if name != "tenant"]



def one_by_one(events: list) -> PreparedBatch:
    """What the ledger did before batches: parse, then prepare, one event at a time."""
    out = []
    for i, e in enumerate(events):
        try:
            out.append(prepare(parse_event(e, index=i), tenant="acme", received_us=NOW,
                               pricer=BOOK))
        except EventValidationError as exc:
            raise EventValidationError(exc.problems, index=i) from None
    return PreparedBatch.from_prepared("acme", out)


def batched(events: list) -> PreparedBatch:
    return prepare_batch(events, tenant="acme", received_us=NOW, pricer=BOOK)


def assert_same(events: list) -> None:
    """Every column equal, except the random part of ids the ledger generated."""
    a, b = one_by_one(events), batched(events)
    assert len(a) == len(b) == len(events)
    for i in range(len(events)):
        assert a.generated[i] == b.generated[i]
        random_ids = a.generated[i] or (a.kind[i] == "conversation"
                                        and not events[i].get("conversation_id"))
        if random_ids:
            assert is_generated_id(b.event_id[i]) or not a.generated[i]
            continue
        for name in COLUMNS:
            assert getattr(a, name)[i] == getattr(b, name)[i], (i, name)


def test_realistic_batch_matches_the_per_event_path(loops: str) -> None:
    events = EventFactory(11, end=datetime(2026, 9, 1, tzinfo=UTC)).batch(3_000)
    for e in events:
        e.setdefault("event_id", f"id-{id(e)}")
        if e.get("kind") == "conversation":
            e["conversation_id"] = f"c-{id(e)}"
    assert_same(events)


def test_the_c_loops_hash_alike_with_hashlib_where_openssl_is_not_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if batch._native is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    events = EventFactory(12, end=datetime(2026, 9, 1, tzinfo=UTC)).batch(500)
    for i, e in enumerate(events):
        e["event_id"] = f"h-{i}"
        if e.get("kind") == "conversation":
            e["conversation_id"] = f"c-{i}"
    native = batch._native
    before = native.sha256_backend()
    try:
        assert native.sha256_backend("hashlib") == "hashlib"
        with_hashlib = batched(events)
        parents = native.parent_hashes(with_hashlib.leaf_hash)
    finally:
        native.sha256_backend(before)
    monkeypatch.setattr(batch, "_native", None)
    python = batched(events)
    for name in COLUMNS:
        assert getattr(with_hashlib, name) == getattr(python, name), name
    assert parents == merkle.parent_hashes_python(python.leaf_hash)


ODD_VALUES = [
    {"ts": "2025-03-01T10:00:00.5+05:30"},
    {"ts": "2025-03-01T10:00:00Z"},
    {"timestamp": "2025-03-01T10:00:00.123456Z"},
    {"ts": datetime(2025, 3, 1, 10, 0)},  # naive: UTC
    {"ts": datetime(2025, 7, 1, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))},
    {"ts": datetime(2025, 7, 1, 10, 0, tzinfo=timezone(timedelta(hours=-3)))},
    {"ts": 1_740_000_000},  # a number: pydantic's reading, via the per-event path
    {"cost": 0.1}, {"cost": 1e-05}, {"cost": "0.0075"}, {"cost": 3}, {"cost": Decimal("2.5")},
    {"cost_nanos": 42, "cost_source": "provider"}, {"cost": 0.5, "cost_nanos": 500_000_000},
    {"metadata": {"a": 1.5}}, {"metadata": {"nested": {"b": [1, 2]}}},
    {"metadata": {"\U0001f600": "astral key"}}, {"metadata": {"k": "ünïcödé"}},
    {"metadata": {}}, {"latency_ms": 12.4}, {"alias": ""}, {"profile": "prod"},
    {"kind": "conversation", "conversation_id": "conv-1"},
    {"content_sha256": "ab" * 32}, {"origin": "llmring", "id_at_origin": "x-1"},
    {"price_id": "mine"}, {"provider": "unknown-provider", "model": "made-up"},
    # prices that depend on the time of the call (time of day; a dated row)
    {"provider": "deepseek", "model": "deepseek-chat", "ts": "2025-09-01T12:00:00Z"},
    {"provider": "deepseek", "model": "deepseek-chat", "ts": "2025-09-01T20:00:00Z"},
    {"provider": "anthropic", "model": "claude-opus-4-6", "input_tokens": 300_000},
    {"input_tokens": 10, "cached_input_tokens": 20},  # the price table refuses: unpriced
    # characters JSON escapes, in every kind of text column
    {"alias": 'say "hi"'}, {"model": "back\\slash"}, {"event_id": 'q"uote\\'},
    {"profile": "ü\"\\😀"}, {"origin": "o\\", "id_at_origin": 'x"1'},
    {"price_id": 'p"\\1', "cost_nanos": 5}, {"provider": 'pr"ov'},
    {"kind": "conversation", "conversation_id": 'c"\\v'},
    {"metadata": {'k"\\': 'v"\\'}},
]


@pytest.mark.parametrize("extra", ODD_VALUES, ids=lambda d: ",".join(d))
def test_unusual_values_match_the_per_event_path(extra: dict, loops: str) -> None:
    base = {"event_id": "e1", "provider": "openai", "model": "gpt-4o", "input_tokens": 100,
            "output_tokens": 20, "ts": "2025-03-01T10:00:00Z"}
    events = [{**base, "event_id": f"e{i}", **(extra if i % 2 else {})} for i in range(40)]
    for e in events:
        if "timestamp" in e:
            e.pop("ts", None)
    assert_same(events)


@given(events=st.lists(st.fixed_dictionaries({
    "event_id": st.text(min_size=1, max_size=12).filter(lambda s: not any(
        c.isspace() for c in s)),
    "provider": st.sampled_from(["openai", "anthropic", "x"]),
    "model": st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "m"]),
    "input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**6),
    "alias": st.text(max_size=5) | st.text(st.sampled_from('a"\\ü\U0001f600\u2028'),
                                           max_size=5),
    "metadata": st.dictionaries(st.text(max_size=4), st.one_of(
        st.text(max_size=4), st.integers(-10**16, 10**16), st.booleans(), st.none()),
        max_size=3),
    "ts": st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2026, 1, 1),
                       timezones=st.just(UTC)),
}), min_size=20, max_size=40))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_generated_batches_match_the_per_event_path(events: list, loops: str) -> None:
    try:
        expected = one_by_one(events)
    except EventValidationError as exc:
        with pytest.raises(EventValidationError) as info:
            batched(events)
        assert str(info.value) == str(exc)
        return
    got = batched(events)
    for name in COLUMNS:
        assert getattr(got, name) == getattr(expected, name), name


# Values at and beyond every edge the column checks draw: each event either clears them
# (and must come out as the per-event path makes it) or goes to that path itself.
_NASTY_TEXT = st.text(st.sampled_from(
    'ab -"\\\x00\x1f\x7f\x85\x9f\xa0ü\u061c\u200b\u200d\u200e\u2028\u202e\u2060'
    '\u2066\u3000\ud800\ufeff\U0001f600'), max_size=6)
_EDGE_INTS = st.sampled_from([0, 1, 2**53 - 1, 2**53, -1, 2**63, True, False, 1.0, None,
                              "3"])
_TS_TEXTS = st.sampled_from([
    "2025-03-01T10:00:00Z", "2025-03-01T10:00:00.5+05:30", "2025-03-01T10:00:00.1234567Z",
    "2024-02-29T23:59:59.999999-00:00", "2025-02-29T10:00:00Z", "2025-03-01T24:00:00Z",
    "2025-03-01T10:00:60Z", "2025-03-01T10:00:00+24:00", "2025-03-01T10:00:00+23:59",
    "2025-03-01 10:00:00Z", "2025-03-01T10:00:00", "1999-12-31T23:59:59Z",
    "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "２０２５-03-01T10:00:00Z", "",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
    "2025-13-01T10:00:00Z", "2025-03-01T10:00:00.Z", "2025-03-01t10:00:00z"])
_TS_VALUES = st.one_of(
    _TS_TEXTS,
    st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2026, 1, 1)),
    st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2026, 1, 1),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3)),
                                            ZoneInfo("Europe/Madrid")])),
    st.just(1_740_000_000), st.none())
_COSTS = st.one_of(
    st.floats(min_value=0, max_value=1e12), st.sampled_from(
        [0.0, -0.0, 1e-05, 1e-10, 0.1, 123456789.5, 1234567890.25, float("nan"),
         float("inf"), -1.0, 3, "0.0075", "x", True, None, Decimal("2.5"),
         "1e99999999999999999999", "1e-99999999999999999999", "0e99999999999999999999",
         "١", "Infinity"]))
_META_VALUES = st.one_of(_NASTY_TEXT, _EDGE_INTS, st.booleans(), st.floats(),
                         st.lists(st.integers(), max_size=2))


@given(events=st.lists(st.one_of(st.fixed_dictionaries({
    "provider": st.sampled_from(["openai", "anthropic", "deepseek", "x"]),
    "model": st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "deepseek-chat", "m"]),
}, optional={
    "event_id": _NASTY_TEXT, "conversation_id": _NASTY_TEXT, "id_at_origin": _NASTY_TEXT,
    "alias": _NASTY_TEXT, "profile": _NASTY_TEXT, "origin": _NASTY_TEXT,
    "price_id": _NASTY_TEXT, "kind": st.sampled_from(["usage", "conversation", "Usage", 1]),
    "content_sha256": st.sampled_from(["ab" * 32, "AB" * 32, "ab" * 31, None]),
    "input_tokens": _EDGE_INTS | st.integers(0, 10**6),
    "output_tokens": _EDGE_INTS | st.integers(0, 10**6),
    "cached_input_tokens": _EDGE_INTS, "cache_write_tokens": _EDGE_INTS,
    "reasoning_tokens": _EDGE_INTS, "latency_ms": _EDGE_INTS,
    "cost": _COSTS, "cost_nanos": _EDGE_INTS,
    "cost_source": st.sampled_from(["provider", "client", "price_table", None, 5]),
    "ts": _TS_VALUES, "timestamp": _TS_VALUES,
    "metadata": st.none() | st.dictionaries(_NASTY_TEXT, _META_VALUES, max_size=4),
    "surprise": st.just(1),
}), st.just(["not", "a", "dict"])), min_size=4, max_size=12))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_edge_values_in_every_field_match_the_per_event_path(events: list,
                                                             loops: str) -> None:
    for i, e in enumerate(events):
        if isinstance(e, dict):
            e.setdefault("event_id", f"edge-{i}")  # generated ids are random: compare given ones
            if e.get("kind") == "conversation":
                e.setdefault("conversation_id", f"conv-{i}")
    valid, invalid = [], []
    for e in events:
        try:
            one_by_one([e])
            valid.append(e)
        except EventValidationError:
            invalid.append(e)
    while len(valid) < 4:
        valid.append({"provider": "openai", "model": "gpt-4o", "event_id": f"pad-{len(valid)}"})
    expected, got = one_by_one(valid), batched(valid)
    for name in COLUMNS:
        assert getattr(got, name) == getattr(expected, name), name
    if invalid:  # among valid ones, an invalid event is reported as one by one reports it
        mixed = [*valid[:2], invalid[0], *valid[2:]]
        with pytest.raises(EventValidationError) as one:
            one_by_one(mixed)
        with pytest.raises(EventValidationError) as many:
            batched(mixed)
        assert (many.value.index, str(many.value)) == (one.value.index, str(one.value)) == (
            2, str(one.value))


@pytest.mark.parametrize("bad, words", [
    ({"input_tokens": -5}, "input_tokens"),
    ({"input_tokens": True}, "input_tokens"),
    ({"model": ""}, "model"),
    ({"model": None}, "model"),
    ({"event_id": "has space"}, "whitespace"),
    ({"ts": "yesterday"}, "ts"),
    ({"ts": "1999-12-31T00:00:00Z"}, "before 2000"),
    ({"tenant": "other"}, "cannot be set"),
    ({"surprise": 1}, "not a known event field"),
    ({"metadata": {"big": "x" * 20_000}}, "metadata"),
    ({"cost": -1}, "cost"),
    ({"cost": 10**11}, "more than one call may cost"),
    ({"cost": 5e11}, "more than one call may cost"),
    ({"cost_source": "client"}, "needs a cost"),
    ({"latency_ms": False}, "not a boolean"),
    ({"cost_nanos": True}, "not a boolean"),
    ({"cost": "1e99999999999999999999"}, "larger than the maximum"),
    ({"ts": "0001-01-01T00:00:00+01:00"}, "out of range"),
    ({"timestamp": "9999-12-31T23:59:59-01:00"}, "out of range"),
    ({"model": "gpt\x7f"}, "U+007F"),
    ({"provider": "open\x85ai"}, "U+0085"),
    ({"alias": "fast\u202e"}, "U+202E"),
    ({"event_id": "id\u200b1"}, "U+200B"),
    ({"origin": "\ufefforigin"}, "U+FEFF"),
    ({"metadata": {"user\u2066": "x"}}, "U+2066"),
])
def test_an_invalid_event_is_reported_with_its_index_as_one_by_one(bad: dict, words: str,
                                                                   loops: str) -> None:
    events = [{"provider": "p", "model": "m", "event_id": f"e{i}"} for i in range(30)]
    events[17] = {**events[17], **bad}
    with pytest.raises(EventValidationError) as one:
        one_by_one(events)
    with pytest.raises(EventValidationError) as many:
        batched(events)
    assert many.value.index == one.value.index == 17
    assert str(many.value) == str(one.value)
    assert words in str(many.value)


def test_calls_priced_beyond_what_one_call_may_cost_are_kept_unpriced(tmp_path: Path,
                                                                     loops: str) -> None:
    events = [{"provider": "openai", "model": "gpt-4o", "input_tokens": 2**53 - 1}] * 8
    with Ledger(tmp_path / "d") as led:
        acks = led.append_many(events, tenant="a")
        assert {(a.cost_source, a.cost_nanos) for a in acks} == {("unpriced", 0)}
        led.flush()  # the rows seal: every cost fits the stored int64
        assert led.count("a") == 8


def test_bulk_ids_are_uuid7_with_the_ledger_mark_and_the_event_time() -> None:
    ms = [1_764_000_000_123 + k for k in range(50)]
    for text, m in zip(new_event_ids(ms), ms, strict=True):
        u = uuid.UUID(text)
        assert (u.version, u.variant) == (7, uuid.RFC_4122)
        assert is_generated_id(text) and generated_id_ms(text) == m
    assert len(set(new_event_ids(ms))) == 50
    assert is_generated_id(new_event_id()) and not is_generated_id(str(uuid.uuid4()))


def test_generated_ids_are_found_by_their_day_after_sealing(tmp_path: Path) -> None:
    events = [{"provider": "p", "model": "m", "ts": f"2025-10-0{1 + k % 3}T12:00:00Z"}
              for k in range(600)]
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        acks = led.append_many(events, tenant="a")
        in_tail = acks[5].event_id
        assert led.get("a", in_tail) is not None
        led.flush()
        for k in (0, 299, 599):
            got = led.get("a", acks[k].event_id)
            assert got is not None and got.seq == acks[k].seq
        # re-sending an exported event with its generated id is an idempotent repeat
        again = led.append({**events[7], "event_id": acks[7].event_id}, tenant="a")
        assert (again.seq, again.created) == (acks[7].seq, False)
        assert led.size("a") == 600
        assert led.resolve("a", [acks[1].event_id, "nope"]).keys() == {acks[1].event_id}


def test_small_and_large_appends_interleave_in_seq_order(tmp_path: Path) -> None:
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        seqs = []
        for n in (1, 300, 2, 1, 5000, 3):
            seqs += [a.seq for a in led.append_many(
                [{"provider": "p", "model": "m"} for _ in range(n)], tenant="a")]
        assert seqs == list(range(len(seqs)))
        assert led.count("a") == len(seqs)
        led.flush()
        assert [e.seq for e in led.events("a", limit=10_000)] == seqs


def test_concurrent_small_requests_are_each_all_or_nothing(tmp_path: Path) -> None:
    import threading

    from ledger.model.event import IdConflictError

    results: dict[int, object] = {}
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        def writer(k: int) -> None:
            events = [{"provider": "p", "model": "m", "event_id": f"w{k}-{j}"}
                      for j in range(3)]
            if k == 3:
                events[2]["input_tokens"] = -1
            if k in (5, 6):  # the same id with different content from two writers
                events[0] = {"provider": "p", "model": f"m{k}", "event_id": "shared"}
            try:
                results[k] = [a.seq for a in led.append_many(events, tenant="a")]
            except (EventValidationError, IdConflictError) as exc:
                results[k] = exc

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert isinstance(results[3], EventValidationError) and results[3].index == 2
        conflicts = [k for k in (5, 6) if isinstance(results[k], IdConflictError)]
        assert len(conflicts) == 1
        ok = [v for v in results.values() if isinstance(v, list)]
        assert len(ok) == 6 and led.size("a") == 18
        assert sorted(s for seqs in ok for s in seqs) == list(range(18))


def test_a_closed_ledger_refuses_small_appends(tmp_path: Path) -> None:
    from ledger.core.facade import LedgerError

    led = Ledger(tmp_path / "d", checkpoint_interval=None)
    led.append({"provider": "p", "model": "m"}, tenant="a")
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.append({"provider": "p", "model": "m"}, tenant="a")


@given(text=st.text(st.sampled_from("0123456789abcdef-71edxyz"), min_size=36, max_size=36)
       | st.from_regex(r"[0-9a-f]{8}-[0-9a-f]{4}-71ed-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                       fullmatch=True))
@settings(max_examples=300)
def test_decoding_the_day_of_any_36_character_id_never_raises(text: str) -> None:
    """An id in the generated shape names a day only when its 48-bit time is one an event
    can have (years 1970 to 9999); anything else names none."""
    day = generated_id_day(text)
    assert day is None or (is_generated_id(text) and len(day) == 10)


def test_generated_ids_past_9999_name_no_day_and_are_not_found(tmp_path: Path) -> None:
    late = "e677d21f-dc00-71ed-8000-000000000000"  # 9999-12-31T23:59:59.999Z + 1 ms
    assert generated_id_day("e677d21f-dbff-71ed-8000-000000000000") == "9999-12-31"
    assert generated_id_day(late) is None
    assert generated_id_day("ffffffff-ffff-71ed-bfff-ffffffffffff") is None
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        led.append_many([{"provider": "p", "model": "m"}] * 5, tenant="a")
        led.flush()
        assert led.get("a", late) is None
        assert led.resolve("a", [late]) == {}
