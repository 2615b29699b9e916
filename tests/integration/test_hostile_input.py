"""The bad-input battery, against a real ``llmring serve`` process: every family of input
the server must refuse, on every endpoint that takes it (docs/formats.md, "What the
ledger accepts"):

* instants an offset takes past the calendar's ends (UTC years 1 to 9999), as an event's
  ``timestamp``, a query's ``start``/``end`` and a receipt's ``start_date``/``end_date``;
* ids in the ledger's generated shape whose embedded time is past 9999;
* money that is not finite, out of range or over-precise, as text and as numbers;
* time zones Python knows but the query engine (DuckDB) does not;
* control (C0, DEL, C1), bidirectional-formatting and zero-width characters in ids,
  identifier-like text fields, metadata keys and receipt tags;
* booleans where a number is meant; values with a trailing newline.

Each is answered with a 4xx and the documented error body (``{"detail", "code", …}``),
never a 5xx, and changes nothing: the event count, the log size and every file under
the data directory (its name and size) are as before. The server writes two kinds of
file on reads and on its own: the Merkle tree's cached levels (``tree/``, when a proof or
a root is first read after the log grew) and cadence checkpoints (``checkpoints/``, every
60 s for a log that grew). The module reads a proof and signs a checkpoint after seeding,
so neither is due while it runs, and no file is left out of the comparison.

The battery runs twice, once with the C loops of batch preparation and once with the
pure-Python ones (``LLMRING_PURE_PYTHON=1``): the server's fast write path appends what
those column checks clear, so both must refuse alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import serverproc
from tests.support.serverproc import Server

LOG, BATCH, CONVERSATION = "/api/v1/log", "/api/v1/log/batch", "/api/v1/conversations/log"
PREVIEW, GENERATE = "/api/v1/receipts/preview", "/api/v1/receipts/generate"
SET_BY_CONVERSATION = {"kind", "conversation_id", "content_sha256"}
SEED_CONTENT = [{"role": "user", "content": "verbatim: \u202eabc\u202c \u200b\u2066x\u2069 "
                 "\x85 \x7f \ufeff"}]


def usage(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "alias": "fast",
                             "input_tokens": 12, "output_tokens": 3}
    event.update(overrides)
    return event


def seeded(data: Path, *, pure_python: bool) -> Server:
    """A server seeded with usage events, a conversation whose content holds the
    characters refused in ids, and a receipt; then a proof read and a checkpoint signed,
    so nothing is due to be written."""
    with pytest.MonkeyPatch.context() as env:
        if pure_python:
            env.setenv("LLMRING_PURE_PYTHON", "1")
        else:
            env.delenv("LLMRING_PURE_PYTHON", raising=False)
        server = serverproc.start(data, projects=("alpha",))
    try:
        with client_of(server) as c:
            for i in range(3):
                assert c.post(LOG, json=usage(event_id=f"seed-{i}")).status_code == 200
            r = c.post(CONVERSATION, json={"conversation_id": "conv-seed",
                                           "messages": SEED_CONTENT,
                                           "metadata": usage(event_id="seed-conv")})
            assert r.status_code == 200, r.text
            r = c.post(GENERATE, json={"since_last_receipt": True})
            assert r.status_code == 200, r.text
            server.receipt_id = r.json()["receipt"]["receipt_id"]  # type: ignore[attr-defined]
            assert c.get("/api/v1/log/inclusion/seed-0").status_code == 200
            assert c.get("/api/v1/log/checkpoint").status_code == 200
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server of the battery (batches prepared by the C loops, when built)."""
    started = seeded(tmp_path_factory.mktemp("native") / "data", pure_python=False)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def python_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same with ``LLMRING_PURE_PYTHON=1``: the pure-Python column checks."""
    started = seeded(tmp_path_factory.mktemp("python") / "data", pure_python=True)
    yield started
    started.stop()


def client_of(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.headers("alpha"), timeout=30)


def state(server: Server, c: httpx.Client) -> tuple[int, int, dict[str, int]]:
    """(events, log size, {file under the data directory: its size})."""
    logs = c.get("/api/v1/logs", params={"limit": 1})
    tree = c.get("/api/v1/log/consistency", params={"first": 0})
    assert logs.status_code == tree.status_code == 200, (logs.text, tree.text)
    files = {str(p.relative_to(server.data)): p.stat().st_size
             for p in server.data.rglob("*") if p.is_file()}
    return logs.json()["total"], tree.json()["second"], files


@dataclass
class Probe:
    """A client of one seeded server, for requests that must all be refused."""

    server: Server
    client: httpx.Client

    def refused(self, method: str, path: str, *, status: int, code: str, json: Any = None,
                params: dict[str, Any] | None = None, names: str = "") -> dict[str, Any]:
        """Send the request; assert it was refused with ``status`` and the documented
        body (``detail`` naming ``names``, ``code``)."""
        r = self.client.request(method, path, json=json, params=params)
        assert r.status_code == status, (r.status_code, r.text)
        body = r.json()
        assert isinstance(body["detail"], str) and body["detail"], body
        assert body["code"] == code, body
        assert names in body["detail"], body
        return body

    def refused_everywhere(self, event: dict[str, Any], names: str) -> None:
        """``event`` refused on every route that writes events (``event_routes``)."""
        for path, body in event_routes(event):
            self.refused("POST", path, json=body, status=422, code="invalid_event",
                         names=names)


def checked(server: Server) -> Iterator[Probe]:
    """A probe whose test changes nothing: the event count, the log size and the files
    under the data directory are the same after the test as before."""
    with client_of(server) as c:
        before = state(server, c)
        yield Probe(server, c)
        assert state(server, c) == before


@pytest.fixture
def reader(server: Server) -> Iterator[Probe]:
    """For refusals that do not depend on how batches are prepared."""
    yield from checked(server)


@pytest.fixture(params=["native", "python"])
def writer(request: pytest.FixtureRequest) -> Iterator[Probe]:
    """For refused writes: once against each kind of column checks."""
    yield from checked(request.getfixturevalue(
        "server" if request.param == "native" else "python_server"))


def event_routes(event: dict[str, Any]) -> list[tuple[str, Any]]:
    """``event`` sent to every route that writes events: alone, in a batch small enough
    for the per-event path, in one the column checks take (the bad event at index 2), and
    as a conversation (its fields in ``metadata``) unless it sets a field the
    conversation log sets itself."""
    good = [usage(event_id=f"fresh-{i}") for i in range(5)]
    routes = [(LOG, event), (BATCH, {"events": [event]}),
              (BATCH, {"events": [*good[:2], event, *good[2:]]})]
    if not event.keys() & SET_BY_CONVERSATION:  # else they are metadata keys there
        routes.append((CONVERSATION, {"messages": [{"role": "user", "content": "hi"}],
                                      "metadata": event}))
    return routes


# -- instants past the calendar's ends ------------------------------------------------------
EDGE_INSTANTS = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+23:59",
                 "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-00:01"]
READS = ["/api/v1/logs", "/api/v1/usage/rollup", "/api/v1/exports/events"]


@pytest.mark.parametrize("instant", EDGE_INSTANTS)
def test_an_event_time_past_the_calendar_is_refused(writer: Probe, instant: str) -> None:
    writer.refused_everywhere(usage(timestamp=instant), "out of range")
    writer.refused_everywhere(usage(ts=instant), "out of range")


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("bound", ["start", "end"])
@pytest.mark.parametrize("instant", [*EDGE_INSTANTS, "9999-12-31", "0000-01-01"])
def test_a_query_bound_past_the_calendar_is_refused(reader: Probe, path: str, bound: str,
                                                    instant: str) -> None:
    if instant == "9999-12-31" and bound == "start":
        return  # a start at the last day is in range: its end would not be
    reader.refused("GET", path, params={bound: instant}, status=400, code="bad_request",
                   names=bound)


@pytest.mark.parametrize("path", READS)
def test_the_calendar_ends_themselves_are_answered(reader: Probe, path: str) -> None:
    """Bounds at the very first and last instants are in range, including an end whose
    window pruning would step past the calendar: an answer, not an error."""
    windows: list[dict[str, str]] = [
        {"start": "0001-01-01"}, {"end": "0001-01-01T00:00:00.000001Z"},
        {"end": "9999-12-31T23:59:59.999999Z"}, {"start": "9999-12-31"}]
    if path == "/api/v1/usage/rollup":
        windows.append({"start": "9999-12-31T23:59:59Z", "tz": "Pacific/Kiritimati",
                        "by": "day"})
    for params in windows:
        r = reader.client.get(path, params=params)
        assert r.status_code == 200, (params, r.text)


@pytest.mark.parametrize("route", [PREVIEW, GENERATE])
@pytest.mark.parametrize("dates", [
    {"start_date": "0001-01-01T00:00:00+01:00", "end_date": "2025-01-01"},
    {"start_date": "2025-01-01", "end_date": "9999-12-31"},
    {"start_date": "2025-01-01", "end_date": "9999-12-31T23:59:59-01:00"},
    {"start_date": "2025-01-01", "end_date": "9999-12-31T23:59:59.999999-00:01"},
])
def test_a_receipt_period_past_the_calendar_is_refused(reader: Probe, route: str,
                                                       dates: dict[str, str]) -> None:
    reader.refused("POST", route, json=dates, status=400, code="invalid_receipt_request",
                   names="out of range")


# -- generated-shape ids whose time is past 9999 ---------------------------------------------
LATE_IDS = ["ffffffff-ffff-71ed-bfff-ffffffffffff", "e677d21f-dc00-71ed-8000-000000000000"]


@pytest.mark.parametrize("log_id", LATE_IDS)
@pytest.mark.parametrize("route", ["/api/v1/logs/{}", "/api/v1/logs/{}/content",
                                   "/api/v1/log/inclusion/{}", "proof"])
def test_a_generated_id_past_9999_is_not_found(reader: Probe, log_id: str,
                                               route: str) -> None:
    code = "not_found"
    if route == "proof":
        receipt_id = reader.server.receipt_id  # type: ignore[attr-defined]
        route, code = f"/api/v1/receipts/{receipt_id}/proof/{{}}", "receipt_not_found"
    reader.refused("GET", route.format(log_id), status=404, code=code)


@pytest.mark.parametrize("route", [PREVIEW, GENERATE])
def test_log_ids_past_9999_are_unknown_ids(reader: Probe, route: str) -> None:
    reader.refused("POST", route, json={"log_ids": [*LATE_IDS, "seed-0"]}, status=400,
                   code="invalid_receipt_request", names=LATE_IDS[0])


# -- money -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cost", [
    "1e99999999999999999999", "-1e99999999999999999999", "1e-99999999999999999999",
    "1e999999999999999999", "NaN", "Infinity", "-1", "1e13", "0.0000000001",
    "0.1234567891", "١", "1_000", "0x10", "", " ", True, -0.5, 1e13, 1e-10, 5e11,
    0.1234567891, [1], {"usd": 1}])
def test_money_out_of_range_or_over_precise_is_refused(writer: Probe, cost: Any) -> None:
    writer.refused_everywhere(usage(cost=cost), "cost")


@pytest.mark.parametrize("nanos", [True, False, -1, 2**53, 1.5, "5", 10**30])
def test_cost_nanos_must_be_a_safe_integer(writer: Probe, nanos: Any) -> None:
    writer.refused_everywhere(usage(cost_nanos=nanos), "cost_nanos")


def test_a_number_too_large_for_a_double_is_refused(writer: Probe) -> None:
    """``1e400`` as JSON text: infinite once read, refused like any non-finite cost."""
    for path, body in ((LOG, b'{"provider": "p", "model": "m", "cost": 1e400}'),
                       (BATCH, b'{"events": [{"provider": "p", "model": "m", '
                               b'"cost": -1e400}]}')):
        r = writer.client.post(path, content=body,
                               headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_event"


# -- time zones ------------------------------------------------------------------------------
@pytest.mark.parametrize("tz", ["right/UTC", "posix/Europe/Paris", "posix/UTC", "localtime",
                                "Europe/Paris\n", "../../etc/passwd", "", "Nowhere/Else",
                                "x" * 60])
def test_a_zone_the_query_engine_does_not_know_is_refused(reader: Probe, tz: str) -> None:
    body = reader.refused("GET", "/api/v1/usage/rollup", params={"tz": tz, "by": "day"},
                          status=400, code="invalid_rollup", names="time zone")
    assert repr(tz)[:40] in body["detail"]


# -- identifier-like text --------------------------------------------------------------------
UNSAFE = {"DEL": "\x7f", "C1 NEL": "\x85", "C1 CSI": "\x9b", "RLO": "\u202e",
          "LRE": "\u202a", "FSI": "\u2068", "PDI": "\u2069", "RLM": "\u200f",
          "ALM": "\u061c", "ZWSP": "\u200b", "ZWJ": "\u200d", "WJ": "\u2060",
          "BOM": "\ufeff", "NUL": "\x00"}
TEXT_FIELDS = ["event_id", "conversation_id", "provider", "model", "alias", "profile",
               "price_id", "origin", "id_at_origin"]


@pytest.mark.parametrize("name", list(UNSAFE))
def test_unsafe_characters_are_refused_in_every_text_field(writer: Probe, name: str) -> None:
    char = UNSAFE[name]
    code_point = f"U+{ord(char):04X}"
    for field in TEXT_FIELDS:
        overrides: dict[str, Any] = {field: f"ab{char}cd"}
        if field == "price_id":
            overrides["cost"] = "0.01"
        if field == "conversation_id":
            overrides["kind"] = "conversation"
        writer.refused_everywhere(usage(**overrides), code_point)
    writer.refused_everywhere(usage(metadata={f"user{char}": "u1"}), code_point)
    writer.refused_everywhere(usage(metadata={"nested": {f"k{char}": 1}}), code_point)


@pytest.mark.parametrize("name", ["DEL", "RLO", "ZWSP", "C1 NEL"])
def test_unsafe_characters_are_refused_in_a_conversation_id(writer: Probe, name: str) -> None:
    writer.refused("POST", CONVERSATION,
                   json={"conversation_id": f"conv{UNSAFE[name]}", "messages": [],
                         "metadata": usage()},
                   status=422, code="invalid_event", names="conversation_id")


@pytest.mark.parametrize("name", ["DEL", "RLO", "ZWJ", "C1 CSI"])
def test_unsafe_characters_are_refused_in_receipt_tags(reader: Probe, name: str) -> None:
    reader.refused("POST", GENERATE,
                   json={"since_last_receipt": True, "tags": ["billing", f"q{UNSAFE[name]}"]},
                   status=400, code="invalid_receipt_request", names="tag")


def test_conversation_content_is_stored_verbatim(reader: Probe) -> None:
    """Message content is natural language, not an identifier: the characters refused in
    ids come back exactly as sent."""
    r = reader.client.get("/api/v1/logs/seed-conv/content")
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == SEED_CONTENT


# -- booleans are not numbers; whole-value patterns ------------------------------------------
@pytest.mark.parametrize("field", ["latency_ms", "input_tokens", "output_tokens",
                                   "cached_input_tokens", "cache_write_tokens",
                                   "reasoning_tokens", "cost"])
@pytest.mark.parametrize("value", [False, True])
def test_a_boolean_is_not_a_number(writer: Probe, field: str, value: bool) -> None:
    writer.refused_everywhere(usage(**{field: value}), field)


@pytest.mark.parametrize("route", [PREVIEW, GENERATE])
@pytest.mark.parametrize("flag", [1, 0, "true", "yes", None])
def test_a_number_is_not_a_boolean(reader: Probe, route: str, flag: Any) -> None:
    reader.refused("POST", route, json={"since_last_receipt": flag}, status=422,
                   code="invalid_request", names="since_last_receipt")


@pytest.mark.parametrize("params", [{"limit": "true"}, {"offset": "false"}])
def test_paging_takes_integers_only(reader: Probe, params: dict[str, str]) -> None:
    reader.refused("GET", "/api/v1/logs", params=params, status=422, code="invalid_request",
                   names=next(iter(params)))


def test_a_trailing_newline_in_a_hash_is_refused(writer: Probe) -> None:
    writer.refused_everywhere(usage(content_sha256="ab" * 32 + "\n"), "content_sha256")


def test_a_trailing_newline_in_a_choice_is_refused(reader: Probe) -> None:
    reader.refused("GET", "/api/v1/logs", params={"order": "seq\n"}, status=422,
                   code="invalid_request", names="order")


def test_the_battery_left_the_server_serving(reader: Probe) -> None:
    """After every refusal, the same connection still carries requests, the seeded events
    are all there, and the server logged no traceback."""
    for _ in range(3):
        r = reader.client.get("/api/v1/logs", params={"limit": 10})
        assert r.status_code == 200
    assert {e["event_id"] for e in r.json()["logs"]} == {
        "seed-0", "seed-1", "seed-2", "seed-conv"}
    port = reader.server.url.rsplit(":", 1)[1]
    assert "Traceback" not in serverproc.log_text(reader.server.data, int(port))
