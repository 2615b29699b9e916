"""``LLMRing``: a plugged-in provider, one logged event per call, ``.usage`` with the
cost at once, and ``ring.server_client`` for on-demand receipts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.client.llmring import Completion, LLMRing, OfflineProvider
from tests.support.serverproc import Server

HELLO = [{"role": "user", "content": "Hello!"}]


def events_of(server: Server, project: str) -> int:
    r = httpx.get(server.url + "/api/v1/logs", headers=server.headers(project))
    return int(r.json()["total"])


def test_the_offline_provider_is_deterministic() -> None:
    provider = OfflineProvider()
    a = asyncio.run(provider("fast", HELLO))
    b = asyncio.run(provider("fast", HELLO))
    assert a == b and a.cost is not None and a.cost > 0


def test_each_chat_logs_one_conversation_event(server: Server) -> None:
    before = events_of(server, "alpha")

    async def main() -> Any:
        async with LLMRing(server_url=server.url, api_key=server.keys["alpha"],
                           log_conversations=True) as ring:
            return [await ring.chat("balanced", messages=HELLO) for _ in range(3)]

    responses = asyncio.run(main())
    assert events_of(server, "alpha") == before + 3
    assert all(r.receipt is None for r in responses)
    assert len({r.metadata["conversation_id"] for r in responses}) == 3
    assert responses[0].usage["cost"] > 0
    assert responses[0].usage["total_tokens"] == (responses[0].usage["prompt_tokens"]
                                                  + responses[0].usage["completion_tokens"])


def test_usage_logging_without_conversations_logs_one_event(server: Server) -> None:
    before = events_of(server, "beta")

    async def main() -> Any:
        async with LLMRing(server.url, server.keys["beta"]) as ring:
            return await ring.chat("fast", messages=HELLO)

    response = asyncio.run(main())
    assert events_of(server, "beta") == before + 1
    assert "conversation_id" not in response.metadata and response.metadata["log_id"]


def test_a_conversation_receipt_from_the_ring(server: Server) -> None:
    async def main() -> Any:
        async with LLMRing(server_url=server.url, api_key=server.keys["alpha"],
                           log_conversations=True) as ring:
            response = await ring.chat("deep", messages=HELLO)
            assert ring.server_client is not None
            return response, await ring.server_client.generate_receipt(
                conversation_id=response.metadata["conversation_id"])

    response, result = asyncio.run(main())
    assert result["certified_count"] == 1
    assert result["receipt"]["total_cost"] == pytest.approx(response.usage["cost"])


def test_any_async_callable_is_a_provider(tmp_path: Path) -> None:
    async def my_provider(alias: str, messages: list[dict[str, Any]],
                          **options: Any) -> dict[str, Any]:
        return {"content": "ok", "provider": "acme-ai", "model": "acme-1",
                "input_tokens": 3, "output_tokens": 4, "cost": 0.5}

    async def main() -> Any:
        async with LLMRing(data_dir=tmp_path / "data", project="p",
                           provider=my_provider, log_conversations=True) as ring:
            response = await ring.chat("custom", messages=HELLO)
            assert ring.server_client is not None
            uncert = await ring.server_client.get_uncertified_logs()
            return response, uncert

    response, uncert = asyncio.run(main())
    assert response.usage["cost"] == 0.5 and response.model == "acme-1"
    assert uncert["total"] == 1 and uncert["logs"][0]["model"] == "acme-1"


def test_a_ring_without_a_ledger_still_reports_usage() -> None:
    async def main() -> Any:
        async with LLMRing(provider=OfflineProvider()) as ring:
            assert ring.server_client is None
            return await ring.chat("fast", messages=HELLO)

    assert asyncio.run(main()).usage["cost"] > 0


def test_completion_fields_are_those_a_provider_returns() -> None:
    c = Completion("x", "p", "m", 1, 2)
    assert (c.cached_input_tokens, c.cost) == (0, None)


def test_a_ring_takes_a_server_or_a_directory_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        LLMRing("http://127.0.0.1:1", "k", data_dir=tmp_path)


def test_a_message_that_is_not_a_mapping_is_refused_before_the_call() -> None:
    """The guide's ``messages=[...]`` placeholder (a list holding Ellipsis) is a
    TypeError naming the message; the provider is not called."""
    called: list[str] = []

    async def provider(alias: str, messages: list[Any], **options: Any) -> Completion:
        called.append(alias)
        return Completion("x", "p", "m", 1, 1)

    ring = LLMRing(provider=provider)
    with pytest.raises(TypeError, match=r"messages\[0\] must be a mapping .* not Ellipsis"):
        asyncio.run(ring.chat("alias", messages=[...]))
    with pytest.raises(TypeError, match="messages must be a list of messages, not str"):
        asyncio.run(ring.chat("alias", messages="Hello!"))  # type: ignore[arg-type]
    assert called == []
