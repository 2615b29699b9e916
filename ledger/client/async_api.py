"""Python clients: ``ServerClient`` talks to ``llmring serve`` over HTTP (httpx, async);
``EmbeddedClient`` has the same async methods and answers on a local data directory.
Both return the JSON dicts of DESIGN §9 (the users' guide indexes them:
``result["receipt"]["total_cost"]``, ``uncert["logs"]`` …), and raise the same
``ledger.errors`` classes for the same refusal (``NotFoundError``, ``IdConflictError`` …,
all ``LedgerError``, alias ``LedgerHTTPError``, with ``status`` and ``detail``);
``ServerClient`` raises ``ServerUnavailableError`` when no server answers.

Dates (``start_date``, ``end_date``, ``start``, ``end``) accept ``datetime`` (naive =
UTC), ``date`` (a whole day; as an end, that day is included) or ISO 8601 text
(``ledger.model.dates.parse_bound`` reads them).

``ServerClient.checkpoint()`` keeps the last checkpoint it saw of the project's log (in
memory, and in ``state_dir`` when given, so across runs) and checks every new one: it
must be signed by the ledger's keys and extend the kept one by an RFC 9162 consistency
proof; otherwise ``ledger.tlog.consistency.TamperEvidence`` is raised (keep both notes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx

from ledger.errors import (
    LedgerError,
    ServerUnavailableError,
    as_ledger_error,
    error_from_response,
)

JSON = dict[str, Any]


LedgerHTTPError = LedgerError
"""A refused request, kept by its old name: the root of ``ledger.errors``. ``status`` is
the HTTP status (400 bad request, 401 bad key, 404 not found, 409 conflict, 413 too large,
422 invalid body, 503 unavailable) and ``detail`` the server's explanation."""


def date_text(value: Any) -> str | None:
    """A date bound as the API takes it: ``YYYY-MM-DD`` for dates, ISO 8601 for
    datetimes (naive = UTC), text unchanged."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"a date must be a datetime, a date or ISO 8601 text, not "
                    f"{type(value).__name__}")


def selection(conversation_id: str | None, start_date: Any, end_date: Any,
              log_ids: Sequence[str] | None, since_last_receipt: bool) -> JSON:
    body: JSON = {}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    if start_date is not None:
        body["start_date"] = date_text(start_date)
    if end_date is not None:
        body["end_date"] = date_text(end_date)
    if log_ids is not None:
        body["log_ids"] = list(log_ids)
    if since_last_receipt:
        body["since_last_receipt"] = True
    return body


class ServerClient:
    """An async client of ``llmring serve``; the API key names the project.

    ``ServerClient("http://localhost:8000", "llr_…")`` or
    ``ServerClient(server_url=…, api_key=…)``. Use ``async with`` or ``await
    client.aclose()`` to release connections (a client left open is harmless in a
    short script)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 server_url: str | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 state_dir: str | Path | None = None,
                 trusted_keys: Sequence[Any] | None = None) -> None:
        """``state_dir``: where the last checkpoint seen per log is kept between runs;
        ``trusted_keys``: the ledger's public keys (``PublicKeyInfo``) to check
        checkpoints with, instead of the keys the server publishes on first use."""
        url = base_url or server_url
        if not url:
            raise ValueError("give the server's URL (base_url or server_url)")
        if not api_key:
            raise ValueError("give an API key (create one with `llmring keys create "
                             "--project NAME`)")
        self.base_url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._trusted = list(trusted_keys) if trusted_keys is not None else None
        self._seen: dict[str, str] = {}  # log origin → the last checkpoint note seen

    # -- plumbing ------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            # An httpx client belongs to one event loop; scripts that call asyncio.run
            # more than once get a fresh one.
            self._http = httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout, transport=self._transport,
                headers={"X-API-Key": self.api_key, "User-Agent": "llmring-ledger-client"})
            self._loop = loop
        return self._http

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: Mapping[str, Any] | None = None, raw: bool = False) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._client().request(method, path, json=json, params=clean)
        except httpx.TransportError as exc:  # refused, timed out, cut: no server answered
            raise ServerUnavailableError(f"cannot reach the server at {self.base_url}: "
                                         f"{exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise error_from_response(response.status_code, body,
                                      request=f"{method} {path}")
        if raw:
            return response.content
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- logging -------------------------------------------------------------------------
    async def log_usage(self, event: Mapping[str, Any] | None = None, /,
                        **fields: Any) -> JSON:
        """Log one call (``provider``, ``model``, tokens, ``cost`` in USD, …):
        ``{log_id, cost, timestamp, …}``."""
        return await self._request("POST", "/api/v1/log", json={**(event or {}), **fields})

    async def log_conversation(self, messages: Sequence[Any], response: Any = None,
                               metadata: Mapping[str, Any] | None = None,
                               conversation_id: str | None = None) -> JSON:
        """Log one call with its messages: ``{conversation_id, message_id, receipt:
        None}``; ``metadata`` carries provider, model, alias, tokens and cost."""
        body: JSON = {"messages": list(messages), "response": response,
                      "metadata": dict(metadata or {})}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        return await self._request("POST", "/api/v1/conversations/log", json=body)

    async def log_batch(self, events: Sequence[Mapping[str, Any]]) -> JSON:
        """Log many events atomically: ``{logs, count, created}``."""
        return await self._request("POST", "/api/v1/log/batch",
                                   json={"events": [dict(e) for e in events]})

    async def get_log(self, log_id: str) -> JSON:
        return await self._request("GET", f"/api/v1/logs/{_seg(log_id)}")

    async def list_logs(self, limit: int = 100, offset: int = 0, *, start: Any = None,
                        end: Any = None) -> JSON:
        return await self._request("GET", "/api/v1/logs", params={
            "limit": limit, "offset": offset, "start": date_text(start),
            "end": date_text(end)})

    # -- receipts ------------------------------------------------------------------------
    async def generate_receipt(self, conversation_id: str | None = None,
                               start_date: Any = None, end_date: Any = None,
                               log_ids: Sequence[str] | None = None,
                               since_last_receipt: bool = False,
                               description: str | None = None,
                               tags: Sequence[str] | None = None) -> JSON:
        """Certify one selection (exactly one of the four modes) with a signed receipt:
        ``{receipt, certified_count}``."""
        body = selection(conversation_id, start_date, end_date, log_ids, since_last_receipt)
        if description is not None:
            body["description"] = description
        if tags is not None:
            body["tags"] = list(tags)
        return await self._request("POST", "/api/v1/receipts/generate", json=body)

    async def preview_receipt(self, conversation_id: str | None = None,
                              start_date: Any = None, end_date: Any = None,
                              log_ids: Sequence[str] | None = None,
                              since_last_receipt: bool = False) -> JSON:
        """What ``generate_receipt`` would certify (``total_logs``, ``total_cost``,
        ``by_model`` …); writes nothing."""
        body = selection(conversation_id, start_date, end_date, log_ids, since_last_receipt)
        return await self._request("POST", "/api/v1/receipts/preview", json=body)

    async def get_uncertified_logs(self, limit: int = 100, offset: int = 0) -> JSON:
        return await self._request("GET", "/api/v1/receipts/uncertified",
                                   params={"limit": limit, "offset": offset})

    async def list_receipts(self, limit: int = 100, offset: int = 0) -> JSON:
        return await self._request("GET", "/api/v1/receipts/",
                                   params={"limit": limit, "offset": offset})

    async def get_receipt(self, receipt_id: str) -> JSON:
        return await self._request("GET", f"/api/v1/receipts/{_seg(receipt_id)}")

    async def get_receipt_logs(self, receipt_id: str, limit: int = 100,
                               offset: int = 0) -> JSON:
        return await self._request("GET", f"/api/v1/receipts/{_seg(receipt_id)}/logs",
                                   params={"limit": limit, "offset": offset})

    async def prove(self, receipt_id: str, log_id: str) -> JSON:
        """The offline proof bundle that ``log_id`` is certified by the receipt."""
        return await self._request(
            "GET", f"/api/v1/receipts/{_seg(receipt_id)}/proof/{_seg(log_id)}")

    async def verify_receipt(self, receipt: Mapping[str, Any]) -> JSON:
        """Ask the server to check a receipt's signature: ``{receipt_id, valid,
        algorithm}`` (offline: ``ledger.receipts.verification``)."""
        return await self._request("POST", "/api/v1/receipts/verify", json=dict(receipt))

    async def get_public_keys(self) -> JSON:
        return await self._request("GET", "/api/v1/receipts/public-keys.json")

    async def get_public_key_pem(self) -> str:
        return str(await self._request("GET", "/receipts/public-key.pem"))

    # -- reports and the log tree --------------------------------------------------------
    async def usage_rollup(self, by: Sequence[str] = ("model",), tz: str = "UTC", *,
                           start: Any = None, end: Any = None) -> JSON:
        return await self._request("GET", "/api/v1/usage/rollup", params={
            "by": ",".join(by), "tz": tz, "start": date_text(start), "end": date_text(end)})

    async def export_events(self, format: str = "jsonl", *,
                            start: Any = None, end: Any = None) -> bytes:
        return bytes(await self._request("GET", "/api/v1/exports/events", raw=True, params={
            "format": format, "start": date_text(start), "end": date_text(end)}))

    async def checkpoint(self) -> JSON:
        """The project's log signed now, checked against the last checkpoint this client
        saw (see the module docstring); raises ``TamperEvidence`` if it does not extend
        it, ``NoteError`` if it is not signed by the ledger's keys."""
        signed = await self._request("GET", "/api/v1/log/checkpoint")
        await self._check_checkpoint(str(signed["note"]))
        return signed

    async def _check_checkpoint(self, note: str) -> None:
        from ledger.tlog.checkpoint import Verifier, verify_checkpoint
        from ledger.tlog.consistency import FORMAT, check_extends, checkpoint_of_note
        from ledger.tlog.signing import parse_public_keys_json

        if self._trusted is None:  # trust on first use: the keys the server publishes
            self._trusted = parse_public_keys_json(await self.get_public_keys())
        verifiers = [Verifier.from_info(k) for k in self._trusted]
        new = verify_checkpoint(note, verifiers)
        kept = self._seen.get(new.origin) or self._load_seen(new.origin)
        if kept is not None:
            old = checkpoint_of_note(kept)
            proof: list[str] = []
            if 0 < old.size < new.size:
                answer = await self.consistency(old.size, new.size)
                proof = list(answer["proof"])
            check_extends(old, {"format": FORMAT, "new": note, "proof": proof}, verifiers)
        self._seen[new.origin] = note
        if self.state_dir is not None:
            from ledger.storage.durable import write_atomic

            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self._seen_path(new.origin), note.encode())

    def _seen_path(self, origin: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"{_seg(origin)}.note"

    def _load_seen(self, origin: str) -> str | None:
        if self.state_dir is None:
            return None
        try:
            return self._seen_path(origin).read_text()
        except FileNotFoundError:
            return None

    async def consistency(self, first: int, second: int | None = None) -> JSON:
        return await self._request("GET", "/api/v1/log/consistency",
                                   params={"first": first, "second": second})


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


class EmbeddedClient:
    """``ServerClient``'s methods on a local data directory, for one project. It opens
    the directory's ledger (taking its lock) on first use; ``await client.aclose()`` (or
    ``async with``) closes it. Errors are the ``ledger.errors`` classes the server's
    answers map back to (a library's ``ValueError`` is a ``RequestError``)."""

    def __init__(self, data_dir: str | Path = "./data", project: str = "default") -> None:
        from ledger.model.tenant import check_tenant

        self.data_dir = Path(data_dir)
        self.project = check_tenant(project)
        self._service: Any = None

    def _svc(self) -> Any:
        if self._service is None:
            from ledger.api.service import LedgerService

            self._service = LedgerService(self.data_dir)
        return self._service

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            svc = self._svc()
            target = svc.receipts if name.startswith("receipts.") else svc
            method = getattr(target, name.removeprefix("receipts."))
            return method(*args, **kwargs)

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:
            error = as_ledger_error(exc)
            if error is None or error is exc:
                raise
            raise error from exc

    async def aclose(self) -> None:
        if self._service is not None:
            service, self._service = self._service, None
            await asyncio.to_thread(service.close)

    async def __aenter__(self) -> EmbeddedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- logging -------------------------------------------------------------------------
    async def log_usage(self, event: Mapping[str, Any] | None = None, /,
                        **fields: Any) -> JSON:
        return await self._call("log_usage", self.project, {**(event or {}), **fields})

    async def log_conversation(self, messages: Sequence[Any], response: Any = None,
                               metadata: Mapping[str, Any] | None = None,
                               conversation_id: str | None = None) -> JSON:
        return await self._call("log_conversation", self.project,
                                messages=list(messages), response=response,
                                metadata=dict(metadata or {}),
                                conversation_id=conversation_id)

    async def log_batch(self, events: Sequence[Mapping[str, Any]]) -> JSON:
        return await self._call("log_batch", self.project, list(events))

    async def get_log(self, log_id: str) -> JSON:
        return await self._call("get_log", self.project, log_id)

    async def list_logs(self, limit: int = 100, offset: int = 0, *, start: Any = None,
                        end: Any = None) -> JSON:
        return await self._call("list_logs", self.project, limit=limit,
                                offset=offset, start=start, end=end)

    # -- receipts ------------------------------------------------------------------------
    async def generate_receipt(self, conversation_id: str | None = None,
                               start_date: Any = None, end_date: Any = None,
                               log_ids: Sequence[str] | None = None,
                               since_last_receipt: bool = False,
                               description: str | None = None,
                               tags: Sequence[str] | None = None) -> JSON:
        return await self._call(
            "receipts.generate", self.project, conversation_id=conversation_id,
            start_date=start_date, end_date=end_date,
            log_ids=log_ids, since_last_receipt=since_last_receipt,
            description=description, tags=tags)

    async def preview_receipt(self, conversation_id: str | None = None,
                              start_date: Any = None, end_date: Any = None,
                              log_ids: Sequence[str] | None = None,
                              since_last_receipt: bool = False) -> JSON:
        return await self._call(
            "receipts.preview", self.project, conversation_id=conversation_id,
            start_date=start_date, end_date=end_date,
            log_ids=log_ids, since_last_receipt=since_last_receipt)

    async def get_uncertified_logs(self, limit: int = 100, offset: int = 0) -> JSON:
        return await self._call("receipts.uncertified", self.project, limit, offset)

    async def list_receipts(self, limit: int = 100, offset: int = 0) -> JSON:
        return await self._call("receipts.list", self.project, limit, offset)

    async def get_receipt(self, receipt_id: str) -> JSON:
        return await self._call("receipts.get", self.project, receipt_id)

    async def get_receipt_logs(self, receipt_id: str, limit: int = 100,
                               offset: int = 0) -> JSON:
        return await self._call("receipts.logs", self.project, receipt_id, limit, offset)

    async def prove(self, receipt_id: str, log_id: str) -> JSON:
        return await self._call("receipts.prove", self.project, receipt_id, log_id)

    async def verify_receipt(self, receipt: Mapping[str, Any]) -> JSON:
        return await self._call("verify_receipt", dict(receipt))

    async def get_public_keys(self) -> JSON:
        return await self._call("public_keys")

    async def get_public_key_pem(self) -> str:
        return await self._call("public_key_pem")

    # -- reports and the log tree --------------------------------------------------------
    async def usage_rollup(self, by: Sequence[str] = ("model",), tz: str = "UTC", *,
                           start: Any = None, end: Any = None) -> JSON:
        return await self._call("rollup", self.project, by=list(by), tz=tz,
                                start=start, end=end)

    async def export_events(self, format: str = "jsonl", *,
                            start: Any = None, end: Any = None) -> bytes:
        return await self._call("export", self.project, format=format, start=start,
                                end=end)

    async def checkpoint(self) -> JSON:
        return await self._call("checkpoint", self.project)

    async def consistency(self, first: int, second: int | None = None) -> JSON:
        return await self._call("consistency", self.project, first, second)


__all__ = ["EmbeddedClient", "LedgerHTTPError", "ServerClient", "date_text"]
