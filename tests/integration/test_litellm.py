"""LiteLLM feeds the ledger: the real ``litellm`` package, with ``mock_response`` (no
network), logs its calls to a real ``llmring serve`` process through its own
``generic_api`` logger, configured as the proxy's ``callback_settings`` do, in each of its
three formats, and through the in-process ``LedgerLogger``. N completions are exactly N
events, each with the cost LiteLLM computed (rounded to nano-USD by the documented rule);
a retried batch adds nothing; a bad payload is a 4xx naming it and changes nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest
import yaml

from ledger.model.money import decimal_to_nanos
from tests.support import serverproc
from tests.support.paths import REPO
from tests.support.serverproc import Server

ROUTE = "/api/v1/integrations/litellm"
DOC = REPO / "docs" / "integrations.md"
FORMATS = ("json_array", "ndjson", "single")
PROJECTS = (*FORMATS, "sdk", "bad")
# LiteLLM prices each from its own (packaged) cost map.
CALLS = ("gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "gpt-4.1-nano", "claude-sonnet-4-5")
BIG_BODY = 1_000_000  # the server's --max-batch-body here: an oversized batch is cheap


def use_callbacks(litellm: ModuleType, *callbacks: Any) -> None:
    """Only ``callbacks`` from now on: LiteLLM copies ``litellm.callbacks`` into its
    success and failure lists at a call, so those are emptied too."""
    for name in ("input_callback", "success_callback", "failure_callback",
                 "_async_success_callback", "_async_failure_callback"):
        setattr(litellm, name, [])
    litellm.callbacks = list(callbacks)


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="module")
def outside_lookups() -> Iterator[list[str]]:
    """The names looked up for any host but this machine while the module runs (LiteLLM
    fetches its cost map at import unless told not to): each is refused and recorded."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOCAL_HOSTS:
            looked_up.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"no network in this test: {name}")
        return real(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", local_only)
        yield looked_up


@pytest.fixture(scope="module")
def litellm(outside_lookups: list[str]) -> Iterator[ModuleType]:
    """The ``litellm`` package, with its packaged cost map (no fetch at import), and no
    callbacks left after each test."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    yield litellm
    use_callbacks(litellm)


@pytest.fixture(autouse=True)
def no_network(outside_lookups: list[str]) -> Iterator[None]:
    """Every test here runs without the network: LiteLLM's calls are mocked."""
    yield
    assert outside_lookups == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("litellm") / "data", projects=(),
                           extra=("--max-batch-body", str(BIG_BODY)), quick_keys=PROJECTS)
    try:
        yield srv
    finally:
        srv.stop()


def documented_proxy_settings(server: Server, log_format: str) -> tuple[str, dict[str, Any]]:
    """The callback named in the proxy ``config.yaml`` of docs/integrations.md and its
    ``callback_settings``, aimed at ``server`` with the format's project key (resolving
    ``os.environ/LLMRING_API_KEY`` as the proxy does) and ``log_format``."""
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None, "docs/integrations.md has no config.yaml"
    config = yaml.safe_load(block.group(1))
    [name] = config["litellm_settings"]["success_callback"]
    settings = dict(config["callback_settings"][name])
    assert settings["callback_type"] == "generic_api"
    assert settings["endpoint"].endswith(ROUTE)
    settings["endpoint"] = server.url + ROUTE
    key = {"os.environ/LLMRING_API_KEY": server.keys[log_format]}
    settings["headers"] = {h: key.get(v, v) for h, v in settings["headers"].items()}
    assert "X-API-Key" in settings["headers"]
    return name, {**settings, "log_format": log_format}


def events(server: Server, project: str) -> list[dict[str, Any]]:
    answer = httpx.get(server.url + "/api/v1/logs", params={"limit": 1000},
                       headers=server.headers(project))
    assert answer.status_code == 200, answer.text
    return list(answer.json()["logs"])


def post(server: Server, project: str, body: bytes | Any) -> httpx.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(server.url + ROUTE, content=data, timeout=30,
                      headers={**server.headers(project), "Content-Type": "application/json"})


def appended(server: Server) -> float:
    """The server's ``llmring_events_appended_total`` (GET /metrics)."""
    text = httpx.get(server.url + "/metrics").text
    found = re.search(r"^llmring_events_appended_total (\S+)$", text, re.M)
    assert found is not None, text
    return float(found.group(1))


def nanos_of(response_cost: float) -> int:
    """The documented rule: LiteLLM's cost, from its decimal text, to nano-USD."""
    return decimal_to_nanos(Decimal(repr(response_cost)))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def complete(litellm: ModuleType, n: int) -> list[Any]:
    """``n`` mocked completions (no network), each with an end user and tags."""
    return [await litellm.acompletion(
        model=CALLS[i % len(CALLS)], messages=[{"role": "user", "content": f"question {i}"}],
        mock_response=f"answer {i}", user=f"customer-{i % 2}",
        metadata={"tags": ["batch", f"n{i}"]}) for i in range(n)]


def assert_recorded(recorded: list[dict[str, Any]], answers: list[Any]) -> None:
    """One event per completion: its id, LiteLLM's cost (rounded by our rule), tokens,
    model, provider and the end user and tags in metadata."""
    assert len(recorded) == len(answers)
    by_id = {e["event_id"]: e for e in recorded}
    assert set(by_id) == {a.id for a in answers}
    for i, answer in enumerate(answers):
        event = by_id[answer.id]
        cost = answer._hidden_params["response_cost"]
        assert cost > 0
        assert event["cost_nanos"] == nanos_of(cost) and event["cost_source"] == "client"
        assert event["input_tokens"] == answer.usage.prompt_tokens
        assert event["output_tokens"] == answer.usage.completion_tokens
        assert event["model"] == answer.model and event["origin"] == "litellm"
        assert event["provider"] in ("openai", "anthropic")
        assert event["alias"] == event["model"]  # plain SDK calls have no model group
        assert event["metadata"]["litellm.end_user"] == f"customer-{i % 2}"
        assert event["metadata"]["litellm.tags"] == ["batch", f"n{i}"]
        assert event["latency_ms"] is not None and event["latency_ms"] >= 0


@pytest.mark.parametrize("log_format", FORMATS)
def test_the_generic_api_logger_records_each_call_once_in_every_format(
        litellm: ModuleType, server: Server, log_format: str) -> None:
    """LiteLLM's own ``GenericAPILogger``, set up as the proxy does from the
    ``callback_settings`` of docs/integrations.md: 5 completions are 5 events with
    LiteLLM's costs; the same batch sent again by the logger (a retry) adds nothing, and
    the server answers it as 5 repeats."""
    from litellm.litellm_core_utils.logging_callback_manager import LoggingCallbackManager

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        name, settings = documented_proxy_settings(server, log_format)
        litellm.callback_settings = {name: settings}
        logger = LoggingCallbackManager.add_custom_callback_generic_api_str(name)
        assert type(logger).__name__ == "GenericAPILogger"
        use_callbacks(litellm, logger)
        try:
            answers = await complete(litellm, len(CALLS))
            await asyncio.sleep(0)  # LiteLLM queues the payloads in its logging task
            while len(logger.log_queue) < len(answers):
                await asyncio.sleep(0.05)
            sent = list(logger.log_queue)
            await logger.flush_queue()
            first = events(server, log_format)
            logger.log_queue.extend(sent)  # LiteLLM sends the same batch again
            await logger.flush_queue()
            return answers, first, sent
        finally:
            use_callbacks(litellm)

    answers, first, sent = asyncio.run(run())
    assert_recorded(first, answers)
    assert events(server, log_format) == first
    again = post(server, log_format, orjson.loads(orjson.dumps(sent, default=str)))
    assert again.status_code == 200, again.text
    assert again.json() == {"received": 5, "accepted": 0, "repeated": 5, "skipped": 0}


def test_the_in_process_logger_records_sync_and_async_calls(
        litellm: ModuleType, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """``LedgerLogger`` in ``litellm.callbacks``: ``completion`` and ``acompletion`` each
    record one event; a refused key, an unreachable server or one that never answers
    only logs a warning, and the user's call answers at once all the same."""
    from ledger.integrations.litellm import LedgerLogger

    use_callbacks(litellm, LedgerLogger(server.url, server.keys["sdk"], retry_delay=0.01))
    try:
        sync_answers = [litellm.completion(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"sync {i}"}],
            mock_response="fine", user="customer-0", metadata={"tags": ["batch", f"n{i}"]})
            for i in range(2)]
        wait_for(lambda: len(events(server, "sdk")) == 2, "the sync calls' events")

        async def run() -> list[Any]:
            answers = await complete(litellm, 3)
            deadline = time.monotonic() + 20  # the hook runs in the loop: wait in it
            while len(await asyncio.to_thread(events, server, "sdk")) < 5:
                assert time.monotonic() < deadline, "timed out waiting for 5 events"
                await asyncio.sleep(0.05)
            return answers

        async_answers = asyncio.run(run())
        recorded = events(server, "sdk")
        assert {e["event_id"] for e in recorded} == {a.id for a in sync_answers
                                                    + async_answers}
        assert_recorded([e for e in recorded if e["event_id"] in
                         {a.id for a in async_answers}], async_answers)
        assert all(e["cost_nanos"] == nanos_of(a._hidden_params["response_cost"])
                   for a in sync_answers for e in recorded if e["event_id"] == a.id)

        caplog.set_level(logging.WARNING, logger="llmring.litellm")
        closed = f"http://127.0.0.1:{serverproc.free_port()}"
        with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never answers
            hangs = f"http://127.0.0.1:{silent.getsockname()[1]}"
            for url, key in ((server.url, "not-a-key"), (closed, "k"), (hangs, "k")):
                use_callbacks(litellm, LedgerLogger(url, key, retry_delay=0.01, timeout=1))
                caplog.clear()
                started = time.monotonic()
                answer = litellm.completion(model="gpt-4o-mini", mock_response="still fine",
                                            messages=[{"role": "user", "content": "hi"}])
                assert answer.choices[0].message.content == "still fine"
                # held up, it would wait out 3 attempts of 1 s on the silent server
                assert time.monotonic() - started < 2.5
                wait_for(lambda: any("did not record" in r.getMessage()
                                     for r in caplog.records), "the warning")
        assert len(events(server, "sdk")) == 5
    finally:
        use_callbacks(litellm)


def _payload(litellm_id: str, **changes: Any) -> dict[str, Any]:
    """A LiteLLM payload as the logger sends it (the fields the ledger reads)."""
    return {"id": litellm_id, "status": "success", "custom_llm_provider": "openai",
            "model": "gpt-4o-mini", "model_group": "", "startTime": 1796433041.654804,
            "endTime": 1796433041.894193, "prompt_tokens": 10, "completion_tokens": 20,
            "response_cost": 0.00010169999999999999, "request_tags": [], "end_user": None,
            "metadata": {"usage_object": {"prompt_tokens": 10, "completion_tokens": 20}},
            **changes}


def test_bad_payloads_are_refused_naming_them_and_change_nothing(server: Server) -> None:
    """Wrong types, a missing model, negative tokens, a body that is not JSON, too many
    payloads or too many bytes, an id reused with other content: a 4xx naming the
    payload and the field, and not one event of the request is recorded."""
    before = appended(server)
    good = _payload("call-ok")
    assert post(server, "bad", [good]).json()["accepted"] == 1
    assert appended(server) == before + 1  # the server's metrics count it, once
    recorded = events(server, "bad")
    assert recorded[0]["cost_nanos"] == 101_700  # 0.00010169999999999999 USD, rounded
    missing_model = {k: v for k, v in _payload("call-3").items() if k != "model"}
    cases: list[tuple[bytes | Any, int, str]] = [
        ([_payload("call-2"), _payload("call-3", prompt_tokens=-1)], 422,
         "event 1: prompt_tokens"),
        ([_payload("call-2"), missing_model], 422, "event 1: model: is required"),
        ([_payload("call-2", startTime="yesterday")], 422, "event 0: startTime"),
        ([_payload("call-2", response_cost=-0.5)], 422, "event 0: response_cost"),
        ([_payload("call-2", request_tags="vip")], 422, "event 0: request_tags"),
        ([_payload("call 2")], 422, "event 0: id: ids must not contain whitespace"),
        (b'{"id": "call-2", "model":', 422, "not JSON"),
        (orjson.dumps(_payload("call-2")) + b"\n{oops}\n", 422, "line 2"),
        ([{}] * 10_001, 422, "at most 10,000"),
        ([_payload(f"call-{i}", padding="x" * 1000) for i in range(2, 1100)], 413,
         "too large"),
        ([_payload("call-2"), _payload("call-ok", prompt_tokens=11)], 409,
         "call-ok"),
    ]
    for body, status, named in cases:
        answer = post(server, "bad", body)
        assert answer.status_code == status, (named, answer.text)
        assert named in answer.json()["detail"], answer.text
    assert events(server, "bad") == recorded
    assert appended(server) == before + 1
