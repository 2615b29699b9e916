"""Hostile fuzzing beyond the schema: hypothesis builds event bodies (single, batch,
conversation) and receipt bodies (preview and generate: periods, filters, log ids) from
strategies that know the event's fields, mixing plausible values with boundary and
hostile ones (huge, negative, NaN and infinite numbers, dates near year 1 and 9999 with
offsets, impossible dates, control and bidi characters, lone surrogates, wrong types,
missing and unknown fields, repeated ids), and posts them to a real ``llmring serve``.

The promises (docs/http-api.md, Errors): no answer is a 5xx; every refusal has the one
documented error body (``ErrorOut``); a refused request changes nothing (the project's
event count and log size, and the name and size of every file under the data
directory, are those from before it); an accepted write is readable back, event by
event, and adds exactly the events it says it created; a preview writes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.server.schemas import ErrorOut
from tests.support import serverproc
from tests.support.serverproc import Server

EXAMPLES = 45
MISSING = object()
NOW = datetime.now(UTC)

# -- values ------------------------------------------------------------------------------
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),  # any code point, lone surrogates included
    st.sampled_from(["", " ", "a\n", "a\x7f", "a\x85b", "\u202eevil", "zero\u200bwidth",
                     "\ufeff", "\x00", "🧾" * 50, "x" * 300, "a/../b", "%00", "null"]),
)
HOSTILE_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**53, 2**53 - 1, 2**63, 1e308, -0.0, 0.5, True, False]),
    st.sampled_from(["1e99999999999999999999", "-1", "0x10", "NaN", "Infinity", "1_000",
                     "0.000000000001", "9" * 400, ""]),
)
ODD_DATE = st.one_of(
    st.sampled_from([
        "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00", "0001-01-01",
        "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+14:00", "9999-12-31",
        "2025-02-30", "2025-13-01", "2025-06-01T25:00:00Z", "1970-01-01T00:00:00Z",
        "2025-06-01T09:30:00+99:00", "now", "", "T", "-2025-01-01"]),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
)
RECENT = st.integers(min_value=0, max_value=30 * 24 * 3600).map(
    lambda s: (NOW - timedelta(seconds=s)).isoformat())
WRONG_TYPE = st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
ID_POOL = st.sampled_from(["evt-fuzz-1", "evt-fuzz-2", "conv-fuzz-1",
                           "01900000-0000-71ed-8000-000000000000"])


TOKENS = st.integers(min_value=0, max_value=100_000)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "provider": st.sampled_from(["openai", "anthropic", "google"]),
    "model": st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku", "unknown-x"]),
    "alias": st.sampled_from(["fast", "deep", ""]),
    "profile": st.just("default"),
    "input_tokens": TOKENS,
    "output_tokens": TOKENS,
    "cached_input_tokens": TOKENS,
    "reasoning_tokens": TOKENS,
    "cost": st.decimals(min_value=0, max_value=10, places=6).map(float),
    "latency_ms": st.integers(min_value=0, max_value=60_000),
    "timestamp": RECENT,
    "event_id": st.one_of(ID_POOL, st.uuids().map(lambda u: f"evt-{u}")),
    "conversation_id": ID_POOL,
    "kind": st.sampled_from(["usage", "conversation"]),
    "origin": st.just("app"),
    "id_at_origin": ID_POOL,
    "metadata": st.dictionaries(st.sampled_from(["team", "run", "k"]),
                                st.integers() | st.text(max_size=10), max_size=3),
    "cost_source": st.sampled_from(["provider", "client"]),
    "content_sha256": st.just("ab" * 32),
}
REQUIRED = ("provider", "model")
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(VALID, HOSTILE_TEXT),
    **dict.fromkeys(("input_tokens", "output_tokens", "cached_input_tokens",
                     "reasoning_tokens", "cost", "latency_ms"), HOSTILE_NUMBER),
    "timestamp": ODD_DATE,
}
UNKNOWN = st.dictionaries(st.sampled_from(["tenant", "seq", "leaf_hash", "extra", ""]),
                          st.integers(), min_size=1, max_size=1)


def spoil(draw: st.DrawFn, body: dict[str, Any], hostile: dict[str, st.SearchStrategy[Any]]
          ) -> dict[str, Any]:
    """``body`` with up to two of its fields made hostile (a hostile value, a wrong type,
    or left out), and now and then an unknown field: most bodies are refused for one or
    two precise reasons, some are accepted."""
    for name in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=2, unique=True)):
        value = draw(st.one_of(hostile[name], WRONG_TYPE, st.just(MISSING)))
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        body.update(draw(UNKNOWN))
    return body


@st.composite
def plausible_events(draw: st.DrawFn) -> dict[str, Any]:
    """The required fields and some optional ones, each plausible."""
    event = {name: draw(strategy) for name, strategy in VALID.items()
             if name in REQUIRED or draw(st.booleans())}
    if "cost" not in event:
        event.pop("cost_source", None)  # a stated cost source needs a cost
    return event


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An event body: plausible, then spoiled."""
    return spoil(draw, draw(plausible_events()), HOSTILE)


@st.composite
def batches(draw: st.DrawFn) -> Any:
    """``{"events": [...]}`` of plausible events, one of them spoiled half the time, or a
    malformed batch."""
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        return draw(st.sampled_from([{"events": []}, {"events": None}, {"events": {}}, {},
                                     {"events": [{}], "extra": 1}]))
    batch = draw(st.lists(plausible_events(), min_size=1, max_size=6))
    if draw(st.booleans()):
        index = draw(st.integers(min_value=0, max_value=len(batch) - 1))
        batch[index] = spoil(draw, batch[index], HOSTILE)
    return {"events": batch}
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                           "content": st.text(max_size=20)}), max_size=3)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    body = {"messages": draw(MESSAGES), "metadata": draw(plausible_events())}
    if draw(st.booleans()):
        body["response"] = {"content": draw(st.text(max_size=20))}
    if draw(st.booleans()):
        body["conversation_id"] = draw(ID_POOL)
    return spoil(draw, body, {"messages": st.one_of(HOSTILE_TEXT, st.lists(HOSTILE_TEXT)),
                              "response": st.one_of(HOSTILE_TEXT, HOSTILE_NUMBER),
                              "metadata": st.one_of(HOSTILE_TEXT, events()),
                              "conversation_id": HOSTILE_TEXT})


MODES = st.one_of(
    st.just({"since_last_receipt": True}),
    st.builds(lambda start: {"start_date": start, "end_date": NOW.date().isoformat()},
              RECENT),
    st.builds(lambda ids: {"log_ids": ids}, st.lists(ID_POOL, min_size=1, max_size=3)),
    st.builds(lambda conv: {"conversation_id": conv}, ID_POOL),
)


@st.composite
def selections(draw: st.DrawFn) -> dict[str, Any]:
    """A receipt request: one selection mode, maybe a description and tags, spoiled."""
    body = dict(draw(MODES))
    if draw(st.booleans()):
        body["description"] = "fuzz"
    if draw(st.booleans()):
        body["tags"] = ["t"]
    return spoil(draw, body, {
        "start_date": ODD_DATE, "end_date": ODD_DATE,
        "log_ids": st.one_of(st.lists(HOSTILE_TEXT, max_size=3), HOSTILE_TEXT),
        "conversation_id": HOSTILE_TEXT, "since_last_receipt": HOSTILE_NUMBER,
        "description": HOSTILE_TEXT, "tags": st.lists(HOSTILE_TEXT, max_size=3)})


JUNK = st.sampled_from([b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"a": 1}{"b": 2}',
                        b'{"provider": "openai", "model": "m", "provider": "x"}'])


@st.composite
def encodings(draw: st.DrawFn, bodies: st.SearchStrategy[Any]) -> bytes:
    """A body as JSON (NaN and Infinity as the literals Python writes), now and then
    truncated, or not JSON at all."""
    how = draw(st.integers(min_value=0, max_value=9))
    if how == 0:
        return draw(JUNK)
    text = json.dumps(draw(bodies), allow_nan=True)
    if how == 1:
        text = text[:draw(st.integers(min_value=0, max_value=len(text) - 1))]
    return text.encode("utf-8", "surrogatepass")


# -- the server and what a request may change ------------------------------------------
@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = serverproc.start(tmp_path_factory.mktemp("hostile") / "data",
                              projects=("alpha",))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http(hostile_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_server.url, headers=hostile_server.headers("alpha"),
                      timeout=60) as client:
        yield client


def files(data: Path) -> dict[str, int]:
    """Every file under the data directory with its size."""
    out = {}
    for folder, _, names in os.walk(data):
        for name in names:
            path = Path(folder, name)
            out[str(path.relative_to(data))] = path.stat().st_size
    return out


def state(http: httpx.Client, data: Path) -> dict[str, Any]:
    """The project's event count and log size (read through the server: ``stats``
    writes nothing) and the files under the data directory."""
    stats = http.get("/api/v1/stats")
    assert stats.status_code == 200, stats.text
    return {"events": stats.json()["events"], "log_size": stats.json()["log_size"],
            "files": files(data)}


def post(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    event(f"{path}: {response.status_code}")
    assert response.status_code < 500, (path, body[:500], response.status_code,
                                        response.text[:500])
    return response


def assert_refusal_changed_nothing(response: httpx.Response, before: dict[str, Any],
                                   after: dict[str, Any], body: bytes) -> None:
    answer = response.json()
    ErrorOut.model_validate(answer)
    assert set(answer) <= set(ErrorOut.model_fields), answer
    assert isinstance(answer["detail"], str) and answer["detail"], answer
    changed = {name: (before["files"].get(name), after["files"].get(name))
               for name in before["files"].keys() | after["files"].keys()
               if before["files"].get(name) != after["files"].get(name)}
    assert after == before, (body[:500], response.status_code, answer, changed)


def assert_readable(http: httpx.Client, log_ids: list[str]) -> None:
    for log_id in log_ids:
        r = http.get(f"/api/v1/logs/{log_id}")
        assert r.status_code == 200, (log_id, r.text)
        assert r.json()["event_id"] == log_id


def attempt(http: httpx.Client, server: Server, path: str,
            body: bytes) -> tuple[httpx.Response, dict[str, Any], dict[str, Any]] | None:
    """Post ``body``; None when it was refused (having checked that the refusal changed
    nothing), else the answer and the state before and after it."""
    before = state(http, server.data)
    r = post(http, path, body)
    after = state(http, server.data)
    if r.status_code >= 400:
        assert_refusal_changed_nothing(r, before, after, body)
        return None
    return r, before, after


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


# -- the tests ---------------------------------------------------------------------------
@FUZZ
@given(body=encodings(events()))
def test_single_events(http: httpx.Client, hostile_server: Server, body: bytes) -> None:
    """``POST /api/v1/log`` (the fast path, and the route when it declines)."""
    done = attempt(http, hostile_server, "/api/v1/log", body)
    if done is None:
        return
    r, before, after = done
    ack = r.json()
    assert after["events"] == before["events"] + int(ack["created"])
    assert_readable(http, [ack["log_id"]])


@FUZZ
@given(body=encodings(batches()))
def test_batches(http: httpx.Client, hostile_server: Server, body: bytes) -> None:
    """``POST /api/v1/log/batch``: all or nothing."""
    done = attempt(http, hostile_server, "/api/v1/log/batch", body)
    if done is None:
        return
    r, before, after = done
    answer = r.json()
    assert after["events"] == before["events"] + answer["created"]
    assert_readable(http, [log["log_id"] for log in answer["logs"]])


@FUZZ
@given(body=encodings(conversations()))
def test_conversations(http: httpx.Client, hostile_server: Server, body: bytes) -> None:
    """``POST /api/v1/conversations/log``: a refused one stores no content either."""
    done = attempt(http, hostile_server, "/api/v1/conversations/log", body)
    if done is None:
        return
    r, before, after = done
    answer = r.json()
    assert after["events"] - before["events"] in (0, 1)
    assert_readable(http, [answer["message_id"]])
    content = http.get(f"/api/v1/logs/{answer['message_id']}/content")
    assert content.status_code == 200, content.text


@FUZZ
@given(body=encodings(selections()), generate=st.booleans())
def test_receipts(http: httpx.Client, hostile_server: Server, body: bytes,
                  generate: bool) -> None:
    """``POST /api/v1/receipts/preview`` writes nothing; ``generate`` writes a receipt that
    reads back, or nothing when refused."""
    path = "/api/v1/receipts/" + ("generate" if generate else "preview")
    done = attempt(http, hostile_server, path, body)
    if done is None:
        return
    r, before, after = done
    if not generate:
        assert after == before, "a preview wrote something"
        return
    receipt_id = r.json()["receipt"]["receipt_id"]
    got = http.get(f"/api/v1/receipts/{receipt_id}")
    assert got.status_code == 200 and got.json()["receipt_id"] == receipt_id
