"""The API's contract, run on both transports: local (``LedgerService`` on a temporary
data directory) and HTTP (a real ``llmring serve`` from ``tests.support.serverproc``).
Every case calls operations of ``ledger.api.operations`` and expects the same answer and
the same refusal (``LedgerHTTPError`` with the same status) from either transport."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger.api import operations as ops
from ledger.api.refusals import LedgerHTTPError
from ledger.api.service import LedgerService
from ledger.api.transport import HttpTransport, LocalTransport
from ledger.client.async_api import AsyncLedgerClient, EmbeddedClient, ServerClient
from ledger.errors import NothingToCertifyError, ReceiptRequestError
from ledger.storage.content import content_sha256
from ledger.storage.layout import DataDir
from tests.support import serverproc
from tests.support.serverproc import Server

CALL = {"provider": "openai", "model": "gpt-4o-mini", "alias": "fast", "input_tokens": 100,
        "output_tokens": 20, "cost": 0.0025}
TRANSPORTS = ("local", "http")


@dataclass
class Side:
    """One transport's world: how to get an API for a fresh project, and its data
    directory (to build a fork of it)."""

    kind: str
    data: Path
    api_for: Callable[[str], Any]
    client_for: Callable[[str, Path], AsyncLedgerClient]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("contract-http") / "data", projects=())
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerService]:
    svc = LedgerService(tmp_path_factory.mktemp("contract-local") / "data")
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(params=TRANSPORTS)
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    opened: list[Any] = []
    if request.param == "local":
        svc: LedgerService = request.getfixturevalue("service")

        def local_api(project: str) -> Any:
            return LocalTransport(svc, project)

        def local_client(project: str, state: Path) -> AsyncLedgerClient:
            # the open service: the directory's lock is held once
            return EmbeddedClient(svc, project, state_dir=state)

        yield Side("local", svc.data, local_api, local_client)
    else:
        srv: Server = request.getfixturevalue("server")

        def http_api(project: str) -> Any:
            transport = HttpTransport(srv.url, serverproc.create_key(srv.data, project))
            opened.append(transport)
            return transport

        def http_client(project: str, state: Path) -> AsyncLedgerClient:
            return ServerClient(srv.url, serverproc.create_key(srv.data, project),
                                state_dir=state)

        yield Side("http", srv.data, http_api, http_client)
    for transport in opened:
        transport.close()


_counter = iter(range(10**6))


@pytest.fixture
def api(side: Side) -> Any:
    """The API of a project no other case writes to."""
    return side.api_for(f"c{next(_counter)}-{side.kind}")


def refused(call: Callable[[], Any]) -> LedgerHTTPError:
    with pytest.raises(LedgerHTTPError) as info:
        call()
    return info.value


def plain(value: Any) -> Any:
    """An answer as JSON carries it (dates as text)."""
    return orjson.loads(orjson.dumps(value))


# -- the project ---------------------------------------------------------------------------
def test_whoami_names_the_project_and_its_log(api: Any) -> None:
    me = api.call(ops.WHOAMI)
    assert me["project"].startswith("c") and me["origin"].endswith("/" + me["project"])


# -- logging -------------------------------------------------------------------------------
def test_log_usage_answers_the_acknowledgement(api: Any) -> None:
    ack = api.call(ops.LOG_USAGE, event=CALL)
    assert set(ack) == {"log_id", "cost", "timestamp", "seq", "cost_nanos", "cost_source",
                        "conversation_id", "created"}
    assert ack["cost"] == pytest.approx(0.0025) and ack["cost_nanos"] == 2_500_000
    assert ack["created"] is True and ack["seq"] == 0


def test_a_retry_with_the_same_event_id_is_answered_again(api: Any) -> None:
    first = api.call(ops.LOG_USAGE, event={**CALL, "event_id": "retry-1"})
    again = api.call(ops.LOG_USAGE, event={**CALL, "event_id": "retry-1"})
    assert again["log_id"] == first["log_id"] == "retry-1"
    assert first["created"] is True and again["created"] is False
    assert api.call(ops.LIST_LOGS)["total"] == 1


def test_the_same_event_id_with_other_content_is_a_409(api: Any) -> None:
    api.call(ops.LOG_USAGE, event={**CALL, "event_id": "dup-1"})
    err = refused(lambda: api.call(ops.LOG_USAGE, event={**CALL, "event_id": "dup-1",
                                                         "input_tokens": 7}))
    assert err.status == 409 and "dup-1" in str(err.detail)


def test_log_batch_is_all_or_nothing(api: Any) -> None:
    answer = api.call(ops.LOG_BATCH, events=[CALL, CALL, {**CALL, "event_id": "b-1"}])
    assert answer["count"] == 3 and answer["created"] == 3
    assert [log["seq"] for log in answer["logs"]] == [0, 1, 2]
    err = refused(lambda: api.call(ops.LOG_BATCH, events=[CALL, {"provider": "openai"}]))
    assert err.status == 422
    assert api.call(ops.LIST_LOGS)["total"] == 3


LITELLM = {"id": "chatcmpl-1", "status": "success", "custom_llm_provider": "openai",
           "model": "gpt-4o-mini", "model_group": "fast", "startTime": 1767225600.25,
           "endTime": 1767225600.5, "prompt_tokens": 10, "completion_tokens": 20,
           "response_cost": 0.00010169999999999999, "end_user": "acme"}


def test_log_litellm_records_each_call_once_all_or_nothing(api: Any) -> None:
    """LiteLLM's payloads: one event per successful call, a failure skipped, a retry
    repeated, a reused id a 409 and a bad payload a 422, both writing nothing."""
    failed = {**LITELLM, "id": "chatcmpl-f", "status": "failure"}
    answer = api.call(ops.LOG_LITELLM, payloads=[LITELLM, {**LITELLM, "id": "chatcmpl-2"},
                                                 failed])
    assert answer == {"received": 3, "accepted": 2, "repeated": 0, "skipped": 1}
    assert api.call(ops.LOG_LITELLM, payloads=LITELLM) == {
        "received": 1, "accepted": 0, "repeated": 1, "skipped": 0}
    logs = api.call(ops.LIST_LOGS)["logs"]
    assert [(e["event_id"], e["alias"], e["cost_nanos"], e["latency_ms"]) for e in logs] == [
        ("chatcmpl-1", "fast", 101_700, 250), ("chatcmpl-2", "fast", 101_700, 250)]
    assert logs[0]["metadata"] == {"litellm.end_user": "acme"}
    err = refused(lambda: api.call(ops.LOG_LITELLM, payloads=[
        {**LITELLM, "id": "chatcmpl-3"}, {**LITELLM, "prompt_tokens": 11}]))
    assert err.status == 409 and "chatcmpl-1" in str(err.detail)
    err = refused(lambda: api.call(ops.LOG_LITELLM, payloads=[
        {**LITELLM, "id": "chatcmpl-3"}, {**LITELLM, "id": "chatcmpl-4", "prompt_tokens": -1}]))
    assert err.status == 422 and "event 1: prompt_tokens" in str(err.detail)
    assert api.call(ops.LIST_LOGS)["total"] == 2


def otlp_traces(*spans: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON export request of ``spans`` (name and attributes), hex ids."""
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 10**9
    return {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "app"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"{i + 1:016x}",
             "name": span["name"], "startTimeUnixNano": str(start),
             "endTimeUnixNano": str(start + 250 * 10**6),
             "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int)
                             else {"stringValue": v}} for k, v in span["attrs"].items()]}
            for i, span in enumerate(spans)]}]}]}


GENAI = {"name": "chat", "attrs": {"gen_ai.provider.name": "openai",
                                   "gen_ai.request.model": "gpt-4o-mini",
                                   "gen_ai.usage.input_tokens": 10,
                                   "gen_ai.usage.output_tokens": 20,
                                   "gen_ai.usage.cost": "0.00010169999999999999"}}


def test_log_otlp_records_genai_spans_once_all_or_nothing(api: Any) -> None:
    """OTLP/JSON spans: a GenAI span is one event, the other span counted as rejected, a
    re-export repeats; a bad GenAI span is a 400 naming the span and attribute, and
    nothing of its request is written."""
    http = {"name": "GET /", "attrs": {"http.request.method": "GET"}}
    answer = api.call(ops.LOG_OTLP, traces=otlp_traces(GENAI, http))
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    assert api.call(ops.LOG_OTLP, traces=otlp_traces(GENAI, http)) == answer
    [event] = api.call(ops.LIST_LOGS)["logs"]
    assert event["event_id"] == "otel-5b8efff798038103d269b633813fc60c-0000000000000001"
    assert (event["model"], event["alias"], event["provider"], event["latency_ms"],
            event["cost_nanos"], event["origin"]) == (
        "gpt-4o-mini", "gpt-4o-mini", "openai", 250, 101_700, "otlp")
    assert event["metadata"]["otel.service"] == "app"
    negative = {"name": "chat 2", "attrs": {**GENAI["attrs"],
                                            "gen_ai.usage.output_tokens": -1}}
    err = refused(lambda: api.call(ops.LOG_OTLP, traces=otlp_traces(GENAI, GENAI, negative)))
    assert err.status == 400 and err.code == "invalid_span"
    assert "gen_ai.usage.output_tokens: must be an integer >= 0" in str(err.detail)
    assert "'chat 2'" in str(err.detail)
    err = refused(lambda: api.call(ops.LOG_OTLP, traces={"resourceSpans": [{"scopeSpans": 3}]}))
    assert err.status == 400 and "scopeSpans" in str(err.detail)
    assert api.call(ops.LIST_LOGS)["total"] == 1


def test_log_conversation_stores_its_content(api: Any) -> None:
    messages = [{"role": "user", "content": "hello"}]
    answer = api.call(ops.LOG_CONVERSATION, messages=messages,
                      response={"content": "hi"}, metadata={**CALL, "feature": "chat"})
    assert set(answer) == {"conversation_id", "message_id", "receipt", "cost", "timestamp",
                           "content_sha256"}
    assert answer["receipt"] is None
    content = orjson.loads(api.call(ops.LOG_CONTENT, log_id=answer["message_id"]))
    assert content == {"messages": messages, "response": {"content": "hi"}}
    event = api.call(ops.GET_LOG, log_id=answer["message_id"])
    assert event["kind"] == "conversation" and event["metadata"] == {"feature": "chat"}


def test_a_conversation_retried_without_conversation_id_is_answered_again(api: Any) -> None:
    """The ledger names the conversation after the event id: the retry is a repeat."""
    messages = [{"role": "user", "content": "hello"}]
    meta = {**CALL, "event_id": "conv-retry"}
    reply = {"content": "hi"}
    first = api.call(ops.LOG_CONVERSATION, messages=messages, response=reply, metadata=meta)
    again = api.call(ops.LOG_CONVERSATION, messages=messages, response=reply, metadata=meta)
    assert again == first
    assert api.call(ops.LIST_LOGS)["total"] == 1


def test_a_refused_conversation_leaves_no_content_behind(side: Side) -> None:
    """A 409 stores nothing: no event, and no file of the refused messages."""
    api = side.api_for(f"c{next(_counter)}-{side.kind}")
    project = api.call(ops.WHOAMI)["project"]
    meta = {**CALL, "event_id": "conv-taken"}
    mine, secret, reply = [{"role": "user", "content": "mine"}], [
        {"role": "user", "content": "a secret"}], {"content": "ok"}
    first = api.call(ops.LOG_CONVERSATION, messages=mine, response=reply, metadata=meta)
    err = refused(lambda: api.call(ops.LOG_CONVERSATION, messages=secret, response=reply,
                                   metadata=meta))
    assert err.status == 409
    refused_sha = content_sha256(secret, reply)
    assert not DataDir(side.data).content_file(project, refused_sha).exists()
    assert orjson.loads(api.call(ops.LOG_CONTENT, log_id=first["message_id"])) == {
        "messages": mine, "response": reply}
    assert api.call(ops.LIST_LOGS)["total"] == 1


# -- events --------------------------------------------------------------------------------
def test_list_and_get_logs(api: Any) -> None:
    ids = [log["log_id"] for log in api.call(ops.LOG_BATCH, events=[CALL] * 5)["logs"]]
    page = api.call(ops.LIST_LOGS, limit=2, offset=1)
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [e["event_id"] for e in page["logs"]] == ids[1:3]
    newest = api.call(ops.LIST_LOGS, limit=1, order="-seq")["logs"][0]
    assert newest["event_id"] == ids[-1]
    event = api.call(ops.GET_LOG, log_id=ids[0])
    assert event["event_id"] == ids[0] and event["seq"] == 0 and "leaf_hash" in event
    tomorrow = datetime.now(UTC).date().isoformat()
    assert api.call(ops.LIST_LOGS, end="2000-01-01")["total"] == 0
    assert api.call(ops.LIST_LOGS, end=tomorrow)["total"] == 5


def test_another_projects_log_is_not_found(side: Side) -> None:
    alpha, beta = side.api_for(f"a{next(_counter)}"), side.api_for(f"b{next(_counter)}")
    log_id = alpha.call(ops.LOG_USAGE, event=CALL)["log_id"]
    err = refused(lambda: beta.call(ops.GET_LOG, log_id=log_id))
    assert err.status == 404
    assert refused(lambda: beta.call(ops.LOG_CONTENT, log_id=log_id)).status == 404


# -- reports -------------------------------------------------------------------------------
def test_rollup_groups_calls(api: Any) -> None:
    api.call(ops.LOG_BATCH, events=[CALL, CALL, {**CALL, "model": "gpt-4o", "cost": 1}])
    answer = plain(api.call(ops.ROLLUP, by=["model", "day"], tz="UTC"))
    assert answer["by"] == ["model", "day"] and answer["tz"] == "UTC"
    by_model = {r["model"]: r for r in answer["rows"]}
    assert by_model["gpt-4o-mini"]["calls"] == 2 and by_model["gpt-4o"]["cost"] == 1.0
    assert isinstance(by_model["gpt-4o"]["day"], str)


def test_export_in_every_format(api: Any) -> None:
    api.call(ops.LOG_BATCH, events=[CALL] * 3)
    lines = api.call(ops.EXPORT, format="jsonl").splitlines()
    assert len(lines) == 3 and orjson.loads(lines[0])["model"] == "gpt-4o-mini"
    assert len(api.call(ops.EXPORT, format="csv").splitlines()) == 4
    assert api.call(ops.EXPORT, format="parquet")[:4] == b"PAR1"
    focus = api.call(ops.EXPORT, format="focus-csv").decode().splitlines()
    assert len(focus) == 4 and focus[0].startswith('"BilledCost"')
    assert focus[1].startswith('"0.002500000"')
    assert api.call(ops.EXPORT, format="focus-parquet")[:4] == b"PAR1"
    assert refused(lambda: api.call(ops.EXPORT, format="focus")).status == 422


def test_stats_of_the_project(api: Any) -> None:
    api.call(ops.LOG_BATCH, events=[CALL] * 2)
    stats = api.call(ops.STATS)
    assert stats["events"] == 2 and stats["log_size"] == 2
    assert stats["cost_nanos"] == 5_000_000 and len(stats["root"]) == 64


# -- the log tree --------------------------------------------------------------------------
def test_checkpoint_and_consistency(api: Any) -> None:
    from ledger.tlog.checkpoint import Verifier
    from ledger.tlog.consistency import FORMAT, check_extends, checkpoint_of_note
    from ledger.tlog.signing import parse_public_keys_json

    api.call(ops.LOG_BATCH, events=[CALL] * 3)
    first = api.call(ops.CHECKPOINT)
    assert first["size"] == 3 and first["note"] in first["cosigned_note"]
    assert first["origin"] == api.call(ops.WHOAMI)["origin"]
    assert api.call(ops.CHECKPOINT)["note"] == first["note"]  # unchanged log: same one
    api.call(ops.LOG_BATCH, events=[CALL] * 2)
    second = api.call(ops.CHECKPOINT)
    proof = api.call(ops.CONSISTENCY, first=3, second=5)
    assert proof["first"] == 3 and proof["second"] == 5 and proof["proof"]
    assert api.call(ops.CONSISTENCY, first=3)["second"] == 5
    keys = [Verifier.from_info(k) for k in parse_public_keys_json(api.call(ops.PUBLIC_KEYS))]
    new = check_extends(checkpoint_of_note(first["note"]),
                        {"format": FORMAT, "new": second["note"], "proof": proof["proof"]},
                        keys)
    assert new.size == 5
    assert refused(lambda: api.call(ops.CONSISTENCY, first=3, second=9)).status == 400
    assert refused(lambda: api.call(ops.CONSISTENCY, first=-1)).status == 422


def test_inclusion_of_a_log(api: Any) -> None:
    ids = [log["log_id"] for log in api.call(ops.LOG_BATCH, events=[CALL] * 3)["logs"]]
    bundle = api.call(ops.LOG_INCLUSION, log_id=ids[1])
    assert bundle["format"] == "ledger-log-inclusion/v1"
    assert bundle["leaf_index"] == 1 and bundle["tree_size"] == 3
    assert refused(lambda: api.call(ops.LOG_INCLUSION, log_id="nope")).status == 404
    assert refused(lambda: api.call(ops.LOG_INCLUSION, log_id=ids[0], size=0)).status == 422


def test_a_note_the_ledger_never_signed_is_refused(api: Any) -> None:
    err = refused(lambda: api.call(ops.ADD_COSIGNATURES, note="not a note"))
    assert err.status == 400 and "note" in str(err.detail)


def test_the_log_as_tlog_tiles(api: Any) -> None:
    """The checkpoint, hash tiles and the caller's entry bundles answer the same bytes on
    either transport; nothing past the signed checkpoint, and no other project's
    bundles."""
    from hashlib import sha256

    from ledger.tlog.published import decode_bundle

    project = api.call(ops.WHOAMI)["project"]
    api.call(ops.LOG_BATCH, events=[CALL, CALL, CALL])
    signed = api.call(ops.CHECKPOINT)
    assert api.call(ops.TLOG_CHECKPOINT, project=project) == signed["cosigned_note"]
    tile = api.call(ops.TLOG_TILE, project=project, level="0", index="000.p/3")
    entries = decode_bundle(api.call(ops.TLOG_ENTRIES, project=project, index="000.p/3"))
    assert tile == b"".join(sha256(b"\0" + e).digest() for e in entries)
    for op, params in ((ops.TLOG_TILE, {"level": "0", "index": "000.p/4"}),
                       (ops.TLOG_TILE, {"level": "0", "index": "x01"}),
                       (ops.TLOG_ENTRIES, {"index": "000"}),
                       (ops.TLOG_CHECKPOINT, {"project": "nobody"}),
                       (ops.TLOG_ENTRIES, {"project": "nobody", "index": "000.p/1"})):
        assert refused(lambda op=op, params=params: api.call(
            op, **{"project": project, **params})).status == 404


# -- receipts ------------------------------------------------------------------------------
def test_receipts_preview_generate_read_prove_and_verify(api: Any) -> None:
    ids = [log["log_id"] for log in api.call(ops.LOG_BATCH, events=[CALL] * 4)["logs"]]
    assert api.call(ops.UNCERTIFIED)["total"] == 4
    preview = api.call(ops.PREVIEW_RECEIPT, since_last_receipt=True)
    assert preview["total_logs"] == 4 and preview["total_cost"] == pytest.approx(0.01)
    made = api.call(ops.GENERATE_RECEIPT, since_last_receipt=True, description="daily",
                    tags=["a", "b"])
    receipt = made["receipt"]
    rid = receipt["receipt_id"]
    assert made["certified_count"] == 4 and receipt["tags"] == ["a", "b"]
    assert api.call(ops.UNCERTIFIED)["total"] == 0
    assert api.call(ops.GET_RECEIPT, receipt_id=rid) == receipt
    listed = api.call(ops.LIST_RECEIPTS)
    assert listed["total"] == 1 and listed["receipts"][0]["receipt_id"] == rid
    logs = api.call(ops.RECEIPT_LOGS, receipt_id=rid, limit=2)
    assert logs["total"] == 4 and [log["id"] for log in logs["logs"]] == ids[:2]
    bundle = api.call(ops.PROVE, receipt_id=rid, log_id=ids[2])
    assert bundle["format"] == "ledger-proof/v1"
    checked = api.call(ops.VERIFY_RECEIPT, document=receipt)
    assert checked["valid"] is True and checked["receipt_id"] == rid
    assert api.call(ops.VERIFY_RECEIPT, document=bundle)["valid"] is True
    forged = api.call(ops.VERIFY_RECEIPT, document={**receipt, "total_cost_nanos": 1})
    assert forged["valid"] is False


def test_the_uncertified_listing_totals_the_whole_set_not_the_page(side: Side,
                                                                  tmp_path: Path) -> None:
    """More than one page of uncertified logs (some certified in between, some
    unpriced): the listing's totals are those of every uncertified log, on every page,
    and every row says where its cost came from."""
    from decimal import Decimal

    project = f"unc{next(_counter)}"
    api = side.api_for(project)
    priced = [{**CALL, "cost": f"0.000{i:06d}"} for i in range(1, 231)]
    unpriced = [{"provider": "nosuch", "model": "nosuch-model", "input_tokens": 5,
                 "output_tokens": 1}] * 3
    logs = api.call(ops.LOG_BATCH, events=priced + unpriced)["logs"]
    api.call(ops.GENERATE_RECEIPT, log_ids=[log["log_id"] for log in logs[10:20]])
    open_logs = logs[:10] + logs[20:]
    want_nanos = sum(log["cost_nanos"] for log in open_logs)
    assert want_nanos == sum(i for i in range(1, 231) if not 11 <= i <= 20)

    seen = []
    for offset in (0, 100, 200):
        page = api.call(ops.UNCERTIFIED, limit=100, offset=offset)
        assert page["total"] == len(open_logs) == 223
        assert page["total_cost_nanos"] == want_nanos
        assert Decimal(page["total_cost"]) == Decimal(want_nanos) / 10**9
        assert page["unpriced_logs"] == 3
        seen += page["logs"]
    assert [row["id"] for row in seen] == [log["log_id"] for log in open_logs]
    assert [row["cost_source"] for row in seen] == [log["cost_source"] for log in open_logs]
    assert [row["cost_source"] for row in seen][-3:] == ["unpriced"] * 3

    async def first_page() -> dict[str, Any]:
        async with side.client_for(project, tmp_path) as client:
            return await client.get_uncertified_logs()  # type: ignore[no-any-return]

    page = asyncio.run(first_page())
    assert len(page["logs"]) == 100 and page["total_cost_nanos"] == want_nanos
    assert Decimal(page["total_cost"]) * 10**9 == want_nanos and page["unpriced_logs"] == 3


def test_an_empty_uncertified_listing_totals_zero(api: Any) -> None:
    page = api.call(ops.UNCERTIFIED)
    assert (page["total"], page["total_cost_nanos"], page["unpriced_logs"]) == (0, 0, 0)
    assert float(page["total_cost"]) == 0


def test_receipts_by_dates_and_by_log_ids(api: Any) -> None:
    ids = [log["log_id"] for log in api.call(ops.LOG_BATCH, events=[CALL] * 3)["logs"]]
    today = datetime.now(UTC).date()
    by_ids = api.call(ops.GENERATE_RECEIPT, log_ids=ids[:2])
    assert by_ids["certified_count"] == 2
    by_dates = api.call(ops.PREVIEW_RECEIPT, start_date=today, end_date=today)
    assert by_dates["total_logs"] == 3


def test_receipt_refusals(api: Any) -> None:
    api.call(ops.LOG_USAGE, event=CALL)
    missing = refused(lambda: api.call(ops.GET_RECEIPT, receipt_id="rcpt_" + "0" * 32))
    assert missing.status == 404
    assert refused(lambda: api.call(ops.RECEIPT_LOGS, receipt_id="rcpt_x")).status == 404
    assert refused(lambda: api.call(ops.PROVE, receipt_id="rcpt_x", log_id="x")).status == 404
    no_mode = refused(lambda: api.call(ops.GENERATE_RECEIPT))
    assert no_mode.status == 400 and "exactly one" in str(no_mode.detail)
    unknown = refused(lambda: api.call(ops.GENERATE_RECEIPT, log_ids=["nope"]))
    assert unknown.status == 400
    backwards = refused(lambda: api.call(ops.PREVIEW_RECEIPT, start_date="2025-10-31",
                                         end_date="2025-10-01"))
    assert backwards.status == 400 and "before" in str(backwards.detail)


def test_an_empty_selection_previews_as_zeros_and_generate_refuses_it_by_code(
        api: Any) -> None:
    """A quiet day: preview of an empty selection answers zero totals (a project with no
    logs, or everything certified); generate refuses with status 400 and the code
    ``nothing_to_certify`` (``NothingToCertifyError``, a ``ReceiptRequestError``),
    which tells "nothing new" from a bad request."""
    empty = api.call(ops.PREVIEW_RECEIPT, since_last_receipt=True)
    assert (empty["total_logs"], empty["total_cost"], empty["total_cost_nanos"]) == (0, 0, 0)
    none = refused(lambda: api.call(ops.GENERATE_RECEIPT, since_last_receipt=True))
    assert isinstance(none, NothingToCertifyError) and isinstance(none, ReceiptRequestError)
    assert (none.status, none.code) == (400, "nothing_to_certify")
    assert "has no logs" in str(none.detail)
    api.call(ops.LOG_USAGE, event=CALL)
    api.call(ops.GENERATE_RECEIPT, since_last_receipt=True)
    quiet = api.call(ops.PREVIEW_RECEIPT, since_last_receipt=True)
    assert (quiet["total_logs"], quiet["total_cost_nanos"], quiet["by_model"]) == (0, 0, {})
    again = refused(lambda: api.call(ops.GENERATE_RECEIPT, since_last_receipt=True))
    assert again.code == "nothing_to_certify" and "already certified" in str(again.detail)
    day = api.call(ops.PREVIEW_RECEIPT, start_date="2020-01-01", end_date="2020-01-01")
    assert day["total_logs"] == 0 and day["scope"]["mode"] == "date_range"
    bad = refused(lambda: api.call(ops.GENERATE_RECEIPT))
    assert bad.code == "invalid_receipt_request"


def test_tags_must_be_a_list_of_strings(api: Any) -> None:
    """A bare string is not a list of tags: 422 naming the field, nothing signed."""
    api.call(ops.LOG_USAGE, event=CALL)
    err = refused(lambda: api.call(ops.GENERATE_RECEIPT, since_last_receipt=True,
                                   tags="daily"))
    assert err.status == 422 and "tags" in str(err.detail)
    assert api.call(ops.LIST_RECEIPTS)["total"] == 0
    made = api.call(ops.GENERATE_RECEIPT, since_last_receipt=True, tags=("daily",))
    assert made["receipt"]["tags"] == ["daily"]


def test_the_clients_skip_an_empty_selection_and_refuse_a_bare_tag_string(
        side: Side, tmp_path: Path) -> None:
    """``generate_receipt(..., if_empty="skip")`` returns None on a quiet day (the
    default raises ``NothingToCertifyError``); ``tags="daily"`` is a ``TypeError``
    naming the field, before anything is sent."""
    async def main() -> None:
        async with side.client_for(f"quiet{next(_counter)}", tmp_path) as client:
            with pytest.raises(TypeError, match="tags"):
                await client.generate_receipt(since_last_receipt=True, tags="daily")
            await client.log_usage(**CALL)
            made = await client.generate_receipt(since_last_receipt=True, tags=["daily"],
                                                 if_empty="skip")
            assert made is not None and made["receipt"]["tags"] == ["daily"]
            assert await client.generate_receipt(since_last_receipt=True,
                                                 if_empty="skip") is None
            with pytest.raises(NothingToCertifyError):
                await client.generate_receipt(since_last_receipt=True)
            with pytest.raises(ValueError, match="if_empty"):
                await client.generate_receipt(since_last_receipt=True, if_empty="ignore")
            preview = await client.preview_receipt(since_last_receipt=True)
            assert preview["total_logs"] == 0 and preview["total_cost"] == 0

    asyncio.run(main())


# -- public keys ---------------------------------------------------------------------------
def test_public_keys(api: Any) -> None:
    keys = api.call(ops.PUBLIC_KEYS)
    assert keys["keys"] and all("key_id" in k for k in keys["keys"])
    assert api.call(ops.PUBLIC_KEY_PEM).startswith("-----BEGIN PUBLIC KEY-----")


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(("op", "params", "status"), [
    (ops.LOG_USAGE, {"event": {"provider": "openai"}}, 422),
    (ops.LOG_USAGE, {"event": {**CALL, "input_tokens": -1}}, 422),
    (ops.LIST_LOGS, {"limit": 0}, 422),
    (ops.LIST_LOGS, {"offset": -1}, 422),
    (ops.LIST_LOGS, {"order": "ts"}, 422),
    (ops.LIST_LOGS, {"start": "not-a-date"}, 400),
    (ops.LIST_LOGS, {"start": "2025-10-02", "end": "2025-10-01"}, 400),
    (ops.UNCERTIFIED, {"limit": 1001}, 422),
    (ops.ROLLUP, {"by": ["meta."]}, 400),  # a bare unknown name is a metadata key
    (ops.ROLLUP, {"by": ["cust\x01omer"]}, 400),
    (ops.ROLLUP, {"where": ["customer"]}, 400),
    (ops.EXPORT, {"where": ["=acme"]}, 400),
    (ops.SET_DIMENSIONS, {"keys": ["a,b"]}, 400),
    (ops.ROLLUP, {"tz": "Mars/Olympus"}, 400),
    (ops.EXPORT, {"format": "xml"}, 422),
])
def test_bad_input_is_refused_alike(api: Any, op: ops.Operation, params: dict[str, Any],
                                    status: int) -> None:
    err = refused(lambda: api.call(op, **params))
    assert err.status == status and err.detail


# -- one scenario, the same answers ----------------------------------------------------------
def _scenario(api: Any) -> dict[str, Any]:
    fixed = {**CALL, "timestamp": "2025-10-01T12:00:00Z"}
    out: dict[str, Any] = {}
    out["log"] = api.call(ops.LOG_USAGE, event={**fixed, "event_id": "s-1"})
    out["batch"] = api.call(ops.LOG_BATCH, events=[{**fixed, "event_id": f"s-{i}"}
                                                   for i in range(2, 5)])
    out["rollup"] = api.call(ops.ROLLUP, by=["model", "day"])
    out["event"] = api.call(ops.GET_LOG, log_id="s-2")
    out["preview"] = api.call(ops.PREVIEW_RECEIPT, log_ids=["s-1", "s-3"])
    out["export"] = [orjson.loads(line) for line in
                     api.call(ops.EXPORT, format="jsonl").splitlines()]
    out["consistency"] = api.call(ops.CONSISTENCY, first=1, second=4)
    return plain(out)


def test_both_transports_give_the_same_answers(service: LedgerService, server: Server
                                               ) -> None:
    project = f"same{next(_counter)}"
    local = _scenario(LocalTransport(service, project))
    http = HttpTransport(server.url, serverproc.create_key(server.data, project))
    try:
        remote = _scenario(http)
    finally:
        http.close()

    def without_times(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_times(v) for k, v in value.items() if k != "recorded_at"}
        if isinstance(value, list):
            return [without_times(v) for v in value]
        return value

    for name in local:
        assert without_times(local[name]) == without_times(remote[name]), name


# -- the async clients on either transport -------------------------------------------------
def test_the_client_checks_each_checkpoint_extends_the_last_it_saw(side: Side,
                                                                    tmp_path: Path) -> None:
    from ledger.tlog.consistency import TamperEvidence

    project = f"cp{next(_counter)}"
    state = tmp_path / "seen"

    async def two_checkpoints() -> tuple[int, int]:
        async with side.client_for(project, state) as client:
            await client.log_batch([CALL] * 2)
            first = await client.checkpoint()
            await client.log_usage(CALL)
            second = await client.checkpoint()  # checked against the first
            return first["size"], second["size"]

    assert asyncio.run(two_checkpoints()) == (2, 3)
    assert len(list(state.glob("*.note"))) == 1

    # A fork: the same key and origin, another history, smaller than the honest log. A
    # client that kept the fork's checkpoint must not accept the honest log.
    from ledger import Ledger

    fork = tmp_path / "fork"
    fork.mkdir()
    shutil.copytree(side.data / "keys", fork / "keys")
    shutil.copy(side.data / "config.json", fork / "config.json")
    with Ledger(fork, pricer=None, checkpoint_interval=None) as led:
        led.append_many([{"provider": "x", "model": "y", "cost": "0"} for _ in range(2)],
                        tenant=project)
        forked = led.checkpoint(project)
    next(state.glob("*.note")).write_text(forked.note)

    async def checkpoint() -> dict[str, Any]:
        async with side.client_for(project, state) as client:
            return await client.checkpoint()

    with pytest.raises(TamperEvidence, match="does not extend"):
        asyncio.run(checkpoint())


def test_client_refusals_are_the_same_error(side: Side, tmp_path: Path) -> None:
    async def main() -> list[int]:
        statuses = []
        async with side.client_for(f"err{next(_counter)}", tmp_path) as client:
            for call in (client.get_receipt("rcpt_" + "f" * 32), client.generate_receipt(),
                         client.log_usage(provider="openai"), client.get_log("nope")):
                try:
                    await call
                except LedgerHTTPError as exc:
                    statuses.append(exc.status)
        return statuses

    assert asyncio.run(main()) == [404, 400, 422, 404]


def test_both_transports_refuse_with_the_same_error_class(service: LedgerService,
                                                          server: Server) -> None:
    project = f"errs{next(_counter)}"
    cases: list[tuple[ops.Operation, dict[str, Any]]] = [
        (ops.GET_RECEIPT, {"receipt_id": "rcpt_" + "0" * 32}),
        (ops.GET_LOG, {"log_id": "nope"}),
        (ops.GENERATE_RECEIPT, {}),
        (ops.LOG_USAGE, {"event": {"provider": "openai"}}),
        (ops.LIST_LOGS, {"limit": 0}),
        (ops.LIST_LOGS, {"start": "not-a-date"}),
        (ops.ROLLUP, {"by": ["meta."]}),  # a bare unknown name is a metadata key now
        (ops.ADD_COSIGNATURES, {"note": "not a note"}),
    ]

    def errors(api: Any) -> list[tuple[str, int]]:
        api.call(ops.LOG_USAGE, event={**CALL, "event_id": "e-1"})
        out = [(type(e).__name__, e.status) for e in (
            refused(lambda op=op, params=params: api.call(op, **params))
            for op, params in cases)]
        conflict = refused(lambda: api.call(ops.LOG_USAGE, event={**CALL, "event_id": "e-1",
                                                                   "input_tokens": 1}))
        return [*out, (type(conflict).__name__, conflict.status)]

    local = errors(LocalTransport(service, project))
    http = HttpTransport(server.url, serverproc.create_key(server.data, project))
    try:
        remote = errors(http)
    finally:
        http.close()
    assert local == remote
    assert [status for _, status in local] == [404, 404, 400, 422, 422, 400, 400, 400, 409]


# -- budgets ---------------------------------------------------------------------------------
def test_budgets_set_list_status_and_remove(api: Any) -> None:
    made = api.call(ops.SET_BUDGET, name="daily", amount="2.50", period="day",
                    tz="Europe/Paris", thresholds=[50, 100],
                    webhook="https://hooks.example.com/llm")
    secret = made.pop("webhook_secret")
    assert secret.startswith("whsec_")
    assert (made["amount"], made["amount_nanos"], made["thresholds"], made["hard"]) == (
        "2.500000000", 2_500_000_000, [50, 100], False)
    assert api.call(ops.LIST_BUDGETS)["budgets"] == [made]
    api.call(ops.LOG_USAGE, event={**CALL, "cost": "1.25"})
    (state,) = api.call(ops.BUDGET_STATUS)["budgets"]
    assert (state["spent"], state["percent"], state["crossed"], state["refusing"]) == (
        "1.250000000", 50.0, [50], False)
    assert state["last_alert"]["threshold"] == 50
    assert state["current_period"]["tz"] == "Europe/Paris"
    assert secret not in orjson.dumps(state).decode()
    assert api.call(ops.REMOVE_BUDGET, name="daily") == {"removed": "daily"}
    assert api.call(ops.LIST_BUDGETS) == {"budgets": []}
    assert refused(lambda: api.call(ops.REMOVE_BUDGET, name="daily")).status == 404


def test_a_bad_budget_is_refused_alike(api: Any) -> None:
    for params in ({"amount": "0"}, {"amount": "abc"}, {"period": "year"},
                   {"tz": "Mars/Olympus"}, {"thresholds": [0]}, {"webhook": "ftp://x"},
                   {"webhook_secret": "short"}, {"name": "-x"}):
        err = refused(lambda params=params: api.call(ops.SET_BUDGET, **{
            "name": "b", "amount": "1", "period": "day", **params}))
        assert (err.status, type(err).__name__) == (422, "InvalidRequestError"), params
        assert err.detail
    assert api.call(ops.LIST_BUDGETS) == {"budgets": []}


def test_a_hard_budget_refuses_logs_with_402_alike(api: Any) -> None:
    api.call(ops.SET_BUDGET, name="cap", amount="0.01", period="month", hard=True)
    api.call(ops.LOG_USAGE, event={**CALL, "cost": "0.01"})
    total = api.call(ops.LIST_LOGS)["total"]
    for op, params in ((ops.LOG_USAGE, {"event": CALL}), (ops.LOG_BATCH, {"events": [CALL]}),
                       (ops.LOG_CONVERSATION, {"messages": [{"role": "user", "content": "x"}],
                                               "metadata": CALL}),
                       (ops.LOG_LITELLM, {"payloads": [LITELLM]}),
                       (ops.LOG_OTLP, {"traces": otlp_traces(GENAI)})):
        err = refused(lambda op=op, params=params: api.call(op, **params))
        assert (type(err).__name__, err.status, err.code) == (
            "BudgetExceededError", 402, "budget_exceeded")
    assert api.call(ops.LIST_LOGS)["total"] == total
    assert api.call(ops.BUDGET_STATUS)["budgets"][0]["refusing"] is True


# -- prices --------------------------------------------------------------------------------
PRICE_ROWS = [
    {"provider": "openai", "model": "gpt-4o", "since": "2026-01-01", "input": "2.00",
     "output": "8.00"},
    {"provider": "openai", "model": "gpt-4o", "since": "2026-06-01", "input": "1.5",
     "cached_input": "0.75", "output": "6"},
    {"provider": "openai", "model": "gpt-4o-mini", "discount": "15"},
]
PRICED = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_003,
          "cached_input_tokens": 200_001, "output_tokens": 77_777}


def test_price_overrides_price_the_calls_and_are_explained_alike(api: Any) -> None:
    """Two effective dates price calls before and after the change to the nano-dollar, a
    discount applies to the packaged price, the price_ids name the rows, a receipt of
    these calls verifies, and ``show`` explains each price (and a stored event)."""
    made = api.call(ops.SET_PRICES, rows=PRICE_ROWS)
    ids = [row["id"] for row in made["set"]]
    assert made["version"] == 1 and made["replaced"] == []
    assert api.call(ops.LIST_PRICES)["rows"] == sorted(made["set"], key=lambda r: (
        r["provider"], r["model"], r["since"] or ""))
    logs = api.call(ops.LOG_BATCH, events=[
        {**PRICED, "ts": "2026-05-31T23:59:59.999999Z"},
        {**PRICED, "ts": "2026-06-01T00:00:00Z"},
        {**PRICED, "model": "gpt-4o-mini", "ts": "2026-06-01T00:00:00Z"},
        {**PRICED, "ts": "2026-06-02T00:00:00Z", "cost": "0.25"}])["logs"]
    # (1,000,003 × 2 + 77,777 × 8) / 10⁶ USD; (800,002 × 1.5 + 200,001 × 0.75 + 77,777 × 6)
    # / 10⁶ USD; packaged gpt-4o-mini 181,666,575 nano-USD × 0.85 = 154,416,588.75
    assert [log["cost_nanos"] for log in logs] == [2_622_222_000, 1_816_665_750, 154_416_589,
                                                    250_000_000]
    stored = [api.call(ops.GET_LOG, log_id=log["log_id"]) for log in logs]
    assert stored[0]["price_id"] == f"override/{made['project']}/{ids[0]}/openai/gpt-4o;" \
        "since=2026-01-01"
    assert stored[1]["price_id"].startswith(f"override/{made['project']}/{ids[1]}/")
    assert stored[2]["price_id"].endswith(f";discount=15%;override={made['project']}/{ids[2]}")
    assert stored[3]["price_id"] is None and stored[3]["cost_source"] == "client"
    receipt = api.call(ops.GENERATE_RECEIPT, since_last_receipt=True)["receipt"]
    assert receipt["total_cost_nanos"] == sum(log["cost_nanos"] for log in logs)
    assert api.call(ops.VERIFY_RECEIPT, document=receipt)["valid"] is True

    shown = api.call(ops.SHOW_PRICE, model="gpt-4o", provider="openai", at="2026-03-01",
                     input_tokens=1_000_003, cached_input_tokens=200_001,
                     output_tokens=77_777)
    assert (shown["source"], shown["cost_nanos"], shown["price_id"]) == (
        "override", 2_622_222_000, stored[0]["price_id"])
    assert shown["override"]["in_force"] == {"from": "2026-01-01", "until": "2026-06-01"}
    assert shown["arithmetic"][-1].startswith("rounded half to even to nano-USD: 2622222000")
    explained = api.call(ops.SHOW_PRICE, log_id=logs[2]["log_id"])
    assert explained["source"] == "override_discount" and explained["log"]["matches"] is True
    assert api.call(ops.SHOW_PRICE, log_id=logs[3]["log_id"])["log"]["matches"] is None

    # removing a row prices later calls by the packaged table; stored events keep theirs
    removed = api.call(ops.REMOVE_PRICE, row_id=ids[2])
    assert [r["id"] for r in removed["removed"]] == [ids[2]] and removed["version"] == 2
    again = api.call(ops.SHOW_PRICE, log_id=logs[2]["log_id"])
    assert again["log"]["matches"] is False and again["source"] == "packaged"
    assert api.call(ops.GET_LOG, log_id=logs[2]["log_id"]) == stored[2]
    assert refused(lambda: api.call(ops.REMOVE_PRICE, row_id=ids[2])).status == 404


def test_bad_price_rows_and_requests_are_refused_alike(api: Any) -> None:
    api.call(ops.SET_PRICES, rows=PRICE_ROWS[:1])
    before = api.call(ops.LIST_PRICES)
    for rows in ([{**PRICE_ROWS[0], "input": "-1"}],
                 [{**PRICE_ROWS[0], "input": 2.5}],
                 [{**PRICE_ROWS[0], "output": "0.0000000000001"}],
                 [{**PRICE_ROWS[0], "tier": "gold"}],
                 [PRICE_ROWS[1], {**PRICE_ROWS[1], "input": "9"}],
                 [{"provider": "openai", "model": "gpt-4o"}],
                 [{**PRICE_ROWS[1], "since": "June"}]):
        err = refused(lambda rows=rows: api.call(ops.SET_PRICES, rows=rows))
        assert (err.status, type(err).__name__) == (422, "InvalidRequestError"), rows
        assert err.detail
    for params in ({"model": "gpt-4o", "at": "not a date"},
                   {"model": "gpt-4o", "input_tokens": 1, "cached_input_tokens": 2},
                   {"provider": "openai"}):
        err = refused(lambda params=params: api.call(ops.SHOW_PRICE, **params))
        assert err.status == 422, params
    assert refused(lambda: api.call(ops.SHOW_PRICE, log_id="nope")).status == 404
    assert api.call(ops.LIST_PRICES) == before


def test_the_clients_manage_price_overrides(side: Side, tmp_path: Path) -> None:
    """The Python clients set, list, explain and remove price overrides as the API does."""
    async def main() -> tuple[Any, ...]:
        async with side.client_for(f"pri{next(_counter)}", tmp_path) as client:
            made = await client.set_prices(PRICE_ROWS[:2])
            listed = await client.list_prices()
            shown = await client.show_price("gpt-4o", provider="openai",
                                            at=datetime(2026, 7, 1, 12), input_tokens=1_000,
                                            output_tokens=100)
            removed = await client.remove_price(listed["rows"][0]["id"])
            return made, listed, shown, removed, await client.list_prices()

    made, listed, shown, removed, after = asyncio.run(main())
    assert [r["since"] for r in listed["rows"]] == ["2026-01-01", "2026-06-01"]
    assert shown["price_id"].startswith("override/") and ";since=2026-06-01" in shown["price_id"]
    assert shown["cost"] == "0.002100000"  # 1,000 × $1.5/M + 100 × $6/M
    assert [r["id"] for r in after["rows"]] == [listed["rows"][1]["id"]]
    assert made and removed


def test_the_clients_manage_budgets(side: Side, tmp_path: Path) -> None:
    async def main() -> tuple[Any, ...]:
        async with side.client_for(f"bud{next(_counter)}", tmp_path) as client:
            made = await client.set_budget("weekly", amount="5", period="week",
                                           webhook_secret="x" * 16,
                                           webhook="https://hooks.example.com/w")
            listed = await client.list_budgets()
            status = await client.budget_status()
            removed = await client.remove_budget("weekly")
            return made, listed, status, removed

    made, listed, status, removed = asyncio.run(main())
    assert "webhook_secret" not in made and listed["budgets"] == [made]
    assert status["budgets"][0]["spent"] == "0.000000000"
    assert removed == {"removed": "weekly"}
