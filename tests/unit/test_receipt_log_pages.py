"""A receipt's log pages as the server sends them (``Receipts.logs_json``, built column by
column: ``projections.logjson``) are byte for byte ``orjson.dumps`` of the log dicts
(``Receipts.logs``, the embedded answer), with the C row writer and with Arrow compute
alike, over the unsealed tail, sealed segments and both; a page at any offset, however
deep, holds the same logs as that stretch of a walk from the start; a receipt's kept
runs never answer for another project; and the server's fast path
(``ReceiptLogsFastPath``) answers a well-formed request with the route's very bytes and
leaves every other one (wrong project, bad paging, no or a bad key) to the route."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest
from starlette.types import Receive, Scope, Send

from ledger import Ledger
from ledger.api.apikeys import ApiKeyStore
from ledger.errors import ReceiptNotFoundError
from ledger.model.native import NATIVE_MODULE
from ledger.receipts.issuance import Receipts
from ledger.server.app import ServerConfig, ServerState, create_app
from ledger.server.receipts import ReceiptLogsFastPath
from projections import logjson
from projections.receipts import _log_dicts
from tests.unit.test_tail_reads import events


@pytest.fixture(params=["native", "arrow"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The rows written by ``_native.json_rows`` and by Arrow compute."""
    if request.param == "arrow":
        monkeypatch.setattr(logjson, "NATIVE_MODULE", None)
    elif NATIVE_MODULE is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    return request.param


TEXTS = ['plain', 'a"quote', "back\\slash", "ctl\x00\x01\x08\t\n\x0b\x0c\r\x1f", "\x7f",
         "é ü 😀 \u2028", "", "</script>"]


def log_table(n: int, seed: int, *, chunks: int = 1) -> pa.Table:
    """``LOG_COLUMNS`` rows with every kind of value the JSON must write alike: texts
    needing escapes, non-ASCII, empty and null ones, integers up to 2**53 - 1, nulls in
    the optional counts, negative and tiny costs, timestamps over years 1 to 9999, and
    dictionary-encoded columns whose chunks have dictionaries of their own."""
    rng = random.Random(seed)

    def text(nullable: bool) -> list[str | None]:
        return [None if nullable and rng.random() < 0.2 else
                rng.choice(TEXTS) + str(rng.randrange(5)) for _ in range(n)]

    def ints(nullable: bool) -> list[int | None]:
        return [None if nullable and rng.random() < 0.3 else
                rng.choice([0, 1, 2**53 - 1, rng.randrange(10**9)]) for _ in range(n)]

    def encoded(values: list[str | None]) -> pa.ChunkedArray:
        size = -(-n // chunks)
        return pa.chunked_array([pa.array(values[i:i + size]).dictionary_encode()
                                 for i in range(0, n, size)])

    ts = [rng.choice([0, -1, 253402300799999999, -62135596800000000,
                      rng.randrange(-62135596800000000, 253402300800000000)])
          for _ in range(n)]
    return pa.table({
        "event_id": text(False), "kind": encoded(text(False)),
        "conversation_id": text(True), "alias": encoded(text(True)),
        "provider": encoded(text(False)), "model": pa.array(text(False)),
        "input_tokens": ints(False), "output_tokens": ints(False),
        "cached_input_tokens": pa.array(ints(True), pa.int64()),
        "reasoning_tokens": pa.array(ints(True), pa.int64()),
        "cost_nanos": [rng.choice([0, 1, -5, 123456789, 2**62, rng.randrange(-10**12, 10**12)])
                       for _ in range(n)],
        "cost_source": encoded(text(False)),
        "ts_us": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "seq": list(range(n))})


@pytest.mark.parametrize("chunks", [1, 3])
def test_a_page_is_written_as_orjson_writes_the_log_dicts(writer: str, chunks: int):
    """Whole, sliced and empty tables; one dictionary per column or one per chunk."""
    table = log_table(600, seed=chunks, chunks=chunks)
    for part in (table, table.slice(7, 250), table.slice(599), table.slice(0, 0)):
        assert logjson.log_array_json(part) == orjson.dumps(_log_dicts(part))


def test_timestamps_past_year_9999_are_written_as_numpy_writes_them(writer: str):
    """The C writer leaves a page with a timestamp outside years 1 to 9999 to Arrow
    compute and numpy (no event has one, but the text stays the dicts' text)."""
    table = log_table(5, seed=9)
    late = pa.array([253402300800000000, 0, 1, 2, -62135596800000001], pa.int64())
    table = table.set_column(12, "ts_us", late.cast(pa.timestamp("us", tz="UTC")))
    assert logjson.log_array_json(table) == orjson.dumps(_log_dicts(table))


def build(path: Path, seal: str) -> tuple[Ledger, Receipts, list[str]]:
    """3,000 events in appends of several sizes, two receipts (every third log of the
    first 1,200 by id: many runs; then everything since), sealed as ``seal`` says."""
    ledger = Ledger(path, auto_seal=False, checkpoint_interval=None)
    receipts = Receipts(ledger)
    evs = events(3_000, seed=11)
    ledger.append_many(evs[:1_200])
    scattered = receipts.generate(log_ids=[e["event_id"] for e in evs[:1_200:3]])
    if seal == "half":
        ledger.seal()
    for at in range(1_200, 3_000, 450):
        ledger.append_many(evs[at:at + 450])
    since = receipts.generate(since_last_receipt=True)
    if seal == "all":
        ledger.seal()
    return ledger, receipts, [scattered["receipt"]["receipt_id"],
                              since["receipt"]["receipt_id"]]


@pytest.mark.parametrize("seal", ["none", "half", "all"])
def test_every_page_equals_the_embedded_answer_and_deep_offsets_the_walk(
        tmp_path: Path, writer: str, seal: str):
    """Walked at limit=1000 and read at offsets anywhere (deep, unaligned, at the end,
    past it): each body is ``orjson.dumps`` of ``logs``' dict, and each page's logs are
    that stretch of the walk."""
    ledger, receipts, receipt_ids = build(tmp_path / "d", seal)
    try:
        for rid in receipt_ids:
            walk: list[dict[str, Any]] = []
            total = receipts.logs("default", rid, limit=1)["total"]
            for offset in range(0, total + 1, 1_000):
                body = receipts.logs_json("default", rid, 1_000, offset)
                assert body == orjson.dumps(receipts.logs("default", rid, 1_000, offset))
                walk.extend(orjson.loads(body)["logs"])
            assert len(walk) == total and [log["seq"] for log in walk] == sorted(
                log["seq"] for log in walk)
            for limit, offset in ((1_000, total - 1), (7, total // 2 + 3), (1, 0),
                                  (333, total - 100), (1_000, total), (5, 10**9)):
                body = receipts.logs_json("default", rid, limit, offset)
                assert body == orjson.dumps(receipts.logs("default", rid, limit, offset))
                assert orjson.loads(body)["logs"] == walk[offset:offset + limit]
    finally:
        ledger.close()


def test_a_receipts_kept_runs_answer_only_for_its_project(tmp_path: Path):
    """Read once (its runs kept), a receipt is still not found under another project,
    and an unknown id is not found either."""
    with Ledger(tmp_path / "d", auto_seal=False, checkpoint_interval=None) as ledger:
        receipts = Receipts(ledger)
        ledger.append_many(events(20, seed=2), tenant="alpha")
        rid = receipts.generate("alpha", since_last_receipt=True)["receipt"]["receipt_id"]
        assert orjson.loads(receipts.logs_json("alpha", rid, 100, 0))["total"] == 20
        for tenant, receipt_id in (("beta", rid), ("alpha", "rcpt_unknown")):
            with pytest.raises(ReceiptNotFoundError):
                receipts.logs_json(tenant, receipt_id, 100, 0)
            with pytest.raises(ReceiptNotFoundError):
                receipts.logs(tenant, receipt_id, 100, 0)


def test_the_c_writer_refuses_columns_that_do_not_fit():
    """``json_rows`` checks the buffers it is given against the row count."""
    if NATIVE_MODULE is None:
        pytest.skip("ledger.model._native is not built")
    short = np.zeros(2, np.int64)
    with pytest.raises(ValueError):
        NATIVE_MODULE.json_rows(3, (b'{"a":',), (("i", short, None),))
    with pytest.raises(ValueError):
        NATIVE_MODULE.json_rows(1, (b'{"a":',), (("s", np.array([0, 9], np.int64), b"ab",
                                                  None),))
    with pytest.raises(ValueError):
        NATIVE_MODULE.json_rows(2, (b'{"a":',), (("c", b"1.5"),))


class Counted:
    """An ASGI app passing requests on, counting them (the route's share)."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


def test_the_fast_path_answers_as_the_route_and_leaves_the_rest_to_it(tmp_path: Path):
    """The same requests to the app alone (the route) and behind the fast path: the
    same status, body and content type every time; the well-formed ones never reach
    the route, every other one does."""
    data = tmp_path / "data"
    state = ServerState(ServerConfig(data))
    app = create_app(ServerConfig(data), state=state)
    app.state.server = state  # the ASGI transport runs no lifespan
    keys = {p: ApiKeyStore(data).create(p)[0] for p in ("alpha", "beta")}
    state.service.log_batch("alpha", events(2_500, seed=4))
    rid = state.service.generate_receipt("alpha", since_last_receipt=True)[
        "receipt"]["receipt_id"]
    logs = f"/api/v1/receipts/{rid}/logs"
    fast = [(keys["alpha"], f"{logs}?limit=1000&offset={o}") for o in (0, 1_000, 2_000, 2_500)]
    fast += [(keys["alpha"], logs), (keys["alpha"], f"{logs}?offset=2499"),
             (keys["alpha"], f"{logs}?limit=7&offset=0042")]
    declined = [(keys["beta"], f"{logs}?limit=10"),
                (keys["alpha"], "/api/v1/receipts/rcpt_unknown/logs"),
                *[(keys["alpha"], f"{logs}?{q}") for q in (
                    "limit=0", "limit=1001", "limit=abc", "limit=1.5", "offset=-1",
                    f"offset={2**53}", "limit=10&limit=20", "limit=", "x=1", "limit=+5")],
                (None, logs), ("no-such-key", logs)]

    async def answers(asgi: Any) -> list[tuple[int, bytes, str]]:
        out = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi),
                                     base_url="http://ledger") as http:
            for key, url in fast + declined:
                r = await http.get(url, headers={"X-API-Key": key} if key else {})
                out.append((r.status_code, r.content, r.headers.get("content-type", "")))
        return out

    try:
        routed = asyncio.run(answers(app))
        counted = Counted(app)
        served = asyncio.run(answers(ReceiptLogsFastPath(counted, app)))
    finally:
        state.close()
    assert served == routed
    assert counted.calls == len(declined)
    statuses = [status for status, _, _ in routed]
    assert statuses[:len(fast)] == [200] * len(fast)
    assert statuses[len(fast):] == [404, 404, *[422] * 6, 200, 422, 200, 200, 401, 401]
    walk = [log for _, body, _ in routed[:4] for log in orjson.loads(body)["logs"]]
    assert len(walk) == 2_500 and orjson.loads(routed[5][1])["logs"] == walk[2_499:]
