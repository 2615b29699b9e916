"""``LedgerLogger``: LiteLLM's SDK logging each successful call to a ledger server, in process.

    import litellm
    from ledger.integrations.litellm import LedgerLogger

    litellm.callbacks = [LedgerLogger("http://127.0.0.1:8000", api_key)]

Each successful call's ``StandardLoggingPayload`` is POSTed, as LiteLLM's ``generic_api``
logger would in its ``single`` format, to ``POST /api/v1/integrations/litellm``: the sync
hook for ``completion``, the async one for ``acompletion``. LiteLLM runs these hooks after
answering (a worker thread, a task), so the user's call is never held up, and a ledger
error never reaches it: a refusal or an unreachable server is logged as a warning. A 5xx
or a transport error is retried (the payload's ``id`` makes a retry a repeat, never a
second event). Failed calls are not sent (the server would skip them).

This module needs the ``litellm`` package; ``ledger.integrations.litellm`` imports it only
when ``LedgerLogger`` is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.safe_json_dumps import safe_dumps

log = logging.getLogger("llmring.litellm")
ROUTE = "/api/v1/integrations/litellm"


class LedgerLogger(CustomLogger):
    """A LiteLLM ``CustomLogger`` recording each successful call in the ledger of
    ``server_url`` for the project of ``api_key``."""

    def __init__(self, server_url: str, api_key: str, *, timeout: float = 5.0,
                 max_retries: int = 2, retry_delay: float = 0.5, **kwargs: Any) -> None:
        """``timeout`` (seconds) bounds each attempt; with the default retries, a call's
        logging ends within LiteLLM's 20 s limit for an async logging hook."""
        super().__init__(**kwargs)
        if not server_url or not api_key:
            raise ValueError("LedgerLogger needs the ledger server's URL and an API key")
        self.endpoint = server_url.rstrip("/") + ROUTE
        self.headers = {"X-API-Key": api_key, "Content-Type": "application/json",
                        "User-Agent": "llmring-ledger-litellm"}
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.retry_delay = max(0.0, retry_delay)

    def _body(self, kwargs: dict[str, Any]) -> str | None:
        payload = kwargs.get("standard_logging_object")
        return None if payload is None else safe_dumps(payload)

    def _retry(self, response: httpx.Response | None, attempt: int) -> bool:
        return attempt < self.max_retries and (response is None
                                               or response.status_code >= 500)

    def _done(self, response: httpx.Response | None, error: Exception | None) -> None:
        if response is not None and response.status_code < 300:
            return
        why = (f"{response.status_code} {response.text[:500]}" if response is not None
               else f"{type(error).__name__}: {error}")
        log.warning("the ledger did not record a LiteLLM call (%s): %s", self.endpoint, why)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        try:
            body = self._body(kwargs)
            if body is None:
                return
            response, error = None, None
            with httpx.Client(timeout=self.timeout) as http:
                for attempt in range(self.max_retries + 1):
                    try:
                        response, error = http.post(self.endpoint, content=body,
                                                    headers=self.headers), None
                    except httpx.HTTPError as exc:
                        response, error = None, exc
                    if not self._retry(response, attempt):
                        break
                    time.sleep(self.retry_delay * 2**attempt)
            self._done(response, error)
        except Exception as exc:  # never break the user's call
            log.warning("the ledger did not record a LiteLLM call: %s", exc)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        try:
            body = self._body(kwargs)
            if body is None:
                return
            response, error = None, None
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                for attempt in range(self.max_retries + 1):
                    try:
                        response, error = await http.post(self.endpoint, content=body,
                                                          headers=self.headers), None
                    except httpx.HTTPError as exc:
                        response, error = None, exc
                    if not self._retry(response, attempt):
                        break
                    await asyncio.sleep(self.retry_delay * 2**attempt)
            self._done(response, error)
        except Exception as exc:  # never break the user's call
            log.warning("the ledger did not record a LiteLLM call: %s", exc)


__all__ = ["LedgerLogger"]
