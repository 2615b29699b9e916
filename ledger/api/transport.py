"""The two transports of the API (``ledger.api.operations``), each sync and async: local
(``LedgerService`` on an open data directory, for one project) and HTTP (httpx, to
``llmring serve``; the API key names the project). ``call(OPERATION, **params)`` answers
the same dict (or bytes) on either, and refuses with the same ``ledger.errors`` class;
no server answering is ``ServerUnavailableError``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ledger.api.operations import Operation
from ledger.api.refusals import refusal, refusal_from_response, unreachable
from ledger.errors import OWNER_HEADER, MisdirectedError

if TYPE_CHECKING:
    from ledger.api.service import LedgerService

USER_AGENT = "llmring-ledger-client"


class Transport(Protocol):
    """A synchronous transport (the CLI's)."""

    def call(self, op: Operation, /, **params: Any) -> Any: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """An asynchronous transport (the clients' and ``LLMRing``'s)."""

    async def call(self, op: Operation, /, **params: Any) -> Any: ...

    async def aclose(self) -> None: ...


# -- local --------------------------------------------------------------------------------
class LocalTransport:
    """Operations answered by a ``LedgerService`` for one project. Given a data
    directory, the service (and with it the directory's lock) is opened on first use
    and closed by ``close``; a given service is the caller's to close."""

    def __init__(self, source: str | Path | LedgerService, project: str) -> None:
        from ledger.api.service import LedgerService
        from ledger.model.tenant import check_tenant

        self.project = check_tenant(project)
        if isinstance(source, LedgerService):
            self._service: LedgerService | None = source
            self.data_dir = source.data
            self._owned = False
        else:
            self._service = None
            self.data_dir = Path(source)
            self._owned = True

    @property
    def service(self) -> LedgerService:
        if self._service is None:
            from ledger.api.service import LedgerService

            self._service = LedgerService(self.data_dir)
        return self._service

    def call(self, op: Operation, /, **params: Any) -> Any:
        op.check(params)
        service = self.service
        method = getattr(service, op.service)
        try:
            return method(self.project, **params) if op.tenant else method(**params)
        except Exception as exc:
            refused = refusal(exc)
            if refused is None or refused is exc:
                raise
            raise refused from exc

    def close(self) -> None:
        if self._service is not None and self._owned:
            service, self._service = self._service, None
            service.close()


class AsyncLocalTransport:
    """``LocalTransport`` for async callers: each call runs in a worker thread."""

    def __init__(self, source: str | Path | LedgerService, project: str) -> None:
        self.local = LocalTransport(source, project)

    @property
    def project(self) -> str:
        return self.local.project

    async def call(self, op: Operation, /, **params: Any) -> Any:
        return await asyncio.to_thread(self.local.call, op, **params)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.local.close)


# -- HTTP ---------------------------------------------------------------------------------
def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["X-API-Key"] = api_key
    return headers


def _answer(op: Operation, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise refusal_from_response(response.status_code, body, response.text,
                                    method=op.method, url=response.request.url.path)
    if op.answer == "bytes":
        return response.content
    if op.answer == "text" or not response.headers.get("content-type", "").startswith(
            "application/json"):
        return response.text
    return response.json()


def _owner(response: httpx.Response, base_url: str) -> str | None:
    """The URL a 421 (``misdirected``) sends the request to, when it is another server's."""
    if response.status_code != MisdirectedError.status:
        return None
    owner = response.headers.get(OWNER_HEADER)
    if not owner:
        try:
            body = response.json()
        except ValueError:
            return None
        owner = body.get("owner") if isinstance(body, dict) else None
    if not isinstance(owner, str) or not owner.startswith(("http://", "https://")):
        return None
    owner = owner.rstrip("/")
    return None if owner == base_url else owner


def check_http_args(base_url: str | None, api_key: str | None) -> str:
    if not base_url:
        raise ValueError("give the server's URL (base_url or server_url)")
    if not api_key:
        raise ValueError("give an API key (create one with `llmring keys create "
                         "--project NAME`)")
    return base_url.rstrip("/")


class HttpTransport:
    """Operations sent to ``llmring serve`` with httpx (synchronous). Without an API key
    only the public operations are answered."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not base_url:
            raise ValueError("give the server's URL")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._transport = transport
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  transport=transport, headers=_headers(api_key))

    def call(self, op: Operation, /, **params: Any) -> Any:
        """Send ``op``; a 421 naming the project's owner is resent there once, and later
        calls go there too (the server that owns the project, ``llmring serve --owns``)."""
        path, query, body = op.http_request(params)
        try:
            response = self._http.request(op.method, path, params=query, json=body)
            owner = _owner(response, self.base_url)
            if owner is not None:
                self._follow(owner)
                response = self._http.request(op.method, path, params=query, json=body)
        except httpx.TransportError as exc:
            raise unreachable(exc, self.base_url) from exc
        return _answer(op, response)

    def _follow(self, owner: str) -> None:
        old, self.base_url = self._http, owner
        self._http = httpx.Client(base_url=owner, timeout=old.timeout,
                                  transport=self._transport, headers=_headers(self.api_key))
        old.close()

    def close(self) -> None:
        self._http.close()


class AsyncHttpTransport:
    """Operations sent to ``llmring serve`` with httpx (asynchronous). An httpx client
    belongs to one event loop: a script that calls ``asyncio.run`` more than once gets a
    fresh one for each."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = check_http_args(base_url, api_key)
        self.api_key = api_key
        self.timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout,
                                           transport=self._transport,
                                           headers=_headers(self.api_key))
            self._loop = loop
        return self._http

    async def call(self, op: Operation, /, **params: Any) -> Any:
        """Send ``op``; a 421 naming the project's owner is resent there once, and later
        calls go there too."""
        path, query, body = op.http_request(params)
        try:
            response = await self._client().request(op.method, path, params=query,
                                                    json=body)
            owner = _owner(response, self.base_url)
            if owner is not None:
                old, self.base_url, self._http = self._http, owner, None
                if old is not None:
                    await old.aclose()
                response = await self._client().request(op.method, path, params=query,
                                                        json=body)
        except httpx.TransportError as exc:
            raise unreachable(exc, self.base_url) from exc
        return _answer(op, response)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


__all__ = ["AsyncHttpTransport", "AsyncLocalTransport", "AsyncTransport", "HttpTransport",
           "LocalTransport", "Transport"]
