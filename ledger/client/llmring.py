"""``LLMRing``: call an LLM through a provider you plug in, and log every call to the
ledger (a server, or a local data directory), as the llmring client does.

The provider is any async callable ``provider(alias, messages, **options)`` returning a
``Completion`` (or a dict of its fields). ``OfflineProvider`` is a deterministic one for
tests and examples: it needs no network and no API key.

Each ``chat`` logs exactly one event: with ``log_conversations=True`` the conversation
(messages and response, stored apart from the event) with the call's tokens and cost; else
a usage log. The response carries ``.usage`` (tokens and ``cost`` in USD, at once) and
``.metadata["conversation_id"]`` / ``["log_id"]``; ``.receipt`` is always None, as
receipts are generated on demand through ``ring.server_client``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from ledger.client.async_api import AsyncLedgerClient, EmbeddedClient, ServerClient


@dataclass(frozen=True)
class Completion:
    """What a provider returns for one call."""

    content: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cost: float | None = None  # USD; None: the ledger prices it from its price table


Provider = Callable[..., Awaitable[Completion | Mapping[str, Any]]]


@dataclass
class LLMResponse:
    content: str
    model: str
    provider: str
    usage: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    receipt: None = None  # receipts are generated on demand


class OfflineProvider:
    """A deterministic provider: the reply and token counts depend only on the alias and
    the messages; costs come from a fixed per-million-token price list."""

    MODELS: ClassVar[dict[str, tuple[str, str]]] = {
        "fast": ("openai", "gpt-4o-mini"),
        "balanced": ("anthropic", "claude-3-5-haiku"),
        "deep": ("anthropic", "claude-3-7-sonnet"),
    }
    # USD per million input / output tokens
    PRICES: ClassVar[dict[str, tuple[Decimal, Decimal]]] = {
        "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
        "claude-3-5-haiku": (Decimal("0.80"), Decimal("4")),
        "claude-3-7-sonnet": (Decimal("3"), Decimal("15")),
    }

    async def __call__(self, alias: str, messages: Sequence[Mapping[str, Any]],
                       **options: Any) -> Completion:
        provider, model = self.MODELS.get(alias, ("openai", "gpt-4o-mini"))
        text = " ".join(str(m.get("content", "")) for m in messages)
        digest = hashlib.sha256(f"{alias}\n{text}".encode()).hexdigest()
        input_tokens = 8 + len(text.split()) * 4 // 3
        output_tokens = 16 + int(digest[:2], 16) % 64
        price_in, price_out = self.PRICES[model]
        cost = (price_in * input_tokens + price_out * output_tokens) / Decimal(1_000_000)
        return Completion(content=f"[{model}] reply {digest[:12]}", provider=provider,
                          model=model, input_tokens=input_tokens,
                          output_tokens=output_tokens, cost=float(cost))


class LLMRing:
    """``async with LLMRing(server_url=…, api_key=…, log_conversations=True) as ring``,
    or ``LLMRing(data_dir="./data", project="acme")`` for a local ledger, or
    ``LLMRing(client=…)`` with any ``AsyncLedgerClient`` (either transport), or none of
    them (no logging). ``ring.server_client`` is the ledger client (None without a
    ledger)."""

    def __init__(self, server_url: str | None = None, api_key: str | None = None, *,
                 data_dir: str | Path | None = None, project: str = "default",
                 log_conversations: bool = False, provider: Provider | None = None,
                 origin: str = "llmring", client: AsyncLedgerClient | None = None) -> None:
        if sum(x is not None and x != "" for x in (server_url, data_dir, client)) > 1:
            raise ValueError("give server_url (and api_key), data_dir or client, not both")
        self.server_client: AsyncLedgerClient | None
        if client is not None:
            self.server_client = client
        elif server_url:
            self.server_client = ServerClient(server_url, api_key)
        elif data_dir is not None:
            self.server_client = EmbeddedClient(data_dir, project)
        else:
            self.server_client = None
        self.log_conversations = log_conversations
        self.provider: Provider = provider or OfflineProvider()
        self.origin = origin

    async def __aenter__(self) -> LLMRing:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.server_client is not None:
            await self.server_client.aclose()

    async def chat(self, alias: str, messages: Sequence[Mapping[str, Any]],
                   **options: Any) -> LLMResponse:
        """Call the provider, log the call (one event), return the response. Each message
        is a mapping such as ``{"role": "user", "content": "Hello!"}``; anything else
        (the guide's ``messages=[...]`` placeholder is a list holding ``Ellipsis``) is a
        ``TypeError`` naming it, before anything is called or logged."""
        messages = _checked_messages(messages)
        started = time.perf_counter()
        raw = await self.provider(alias, list(messages), **options)
        latency_ms = round((time.perf_counter() - started) * 1000)
        done = raw if isinstance(raw, Completion) else Completion(**dict(raw))
        fields: dict[str, Any] = {
            "provider": done.provider, "model": done.model, "alias": alias,
            "input_tokens": done.input_tokens, "output_tokens": done.output_tokens,
            "cached_input_tokens": done.cached_input_tokens, "latency_ms": latency_ms,
            "origin": self.origin}
        if done.cost is not None:
            fields["cost"] = done.cost
        metadata: dict[str, Any] = {}
        cost = done.cost
        if self.server_client is not None:
            if self.log_conversations:
                logged = await self.server_client.log_conversation(
                    list(messages), response={"content": done.content, "model": done.model},
                    metadata=fields)
                metadata["conversation_id"] = logged["conversation_id"]
                metadata["log_id"] = logged["message_id"]
            else:
                logged = await self.server_client.log_usage(fields)
                metadata["log_id"] = logged["log_id"]
            cost = logged["cost"]
        usage = {"prompt_tokens": done.input_tokens, "completion_tokens": done.output_tokens,
                 "total_tokens": done.input_tokens + done.output_tokens,
                 "input_tokens": done.input_tokens, "output_tokens": done.output_tokens,
                 "cached_input_tokens": done.cached_input_tokens,
                 "cost": cost if cost is not None else 0.0}
        return LLMResponse(content=done.content, model=done.model, provider=done.provider,
                           usage=usage, metadata=metadata)


def _checked_messages(messages: Any) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of messages, not "
                        f"{type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{i}] must be a mapping such as {{'role': 'user', "
                            f"'content': 'Hello!'}}, not {message!r}")
    return list(messages)


__all__ = ["Completion", "LLMResponse", "LLMRing", "OfflineProvider", "Provider"]
