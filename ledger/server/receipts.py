"""Receipt endpoints (docs/http-api.md): generate and preview receipts of the caller's
project, list and read them, the logs they certify and the uncertified ones, the proof
bundle of one log in a receipt, and public verification. Each answers with the
``LedgerService`` operation of the same name (``ledger.api.operations``); the tenant
always comes from the API key.

``ReceiptLogsFastPath`` (outside the app in ``llmring serve``) answers a well-formed,
authenticated ``GET /api/v1/receipts/{id}/logs`` without FastAPI's routing, dependency
and validation machinery (which cost more CPU than a 1,000-log page itself): walking a
100,000-log receipt is 100 such requests."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import anyio
from fastapi import APIRouter, Body, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.api import operations as ops
from ledger.api.service import MAX_LIMIT
from ledger.errors import AuthenticationError
from ledger.server.auth import credential
from ledger.server.logs import Limit, Offset, Tenant, json_response, route, service
from ledger.server.ops import record_project
from ledger.server.schemas import ReceiptRequest, UncertifiedPage, VerifyOut

router = APIRouter(tags=["receipts"])


def _selection(body: ReceiptRequest) -> dict[str, Any]:
    return {"conversation_id": body.conversation_id, "start_date": body.start_date,
            "end_date": body.end_date, "log_ids": body.log_ids,
            "since_last_receipt": body.since_last_receipt, "where": body.where}


@route(router, ops.GENERATE_RECEIPT)
def generate(body: ReceiptRequest, tenant: Tenant, request: Request) -> Response:
    """Certify exactly one selection of the project's logs: `{receipt, certified_count}`.
    `where` (`{"customer": "acme"}`) narrows it to the logs whose metadata matches; the
    signed `scope.where` names the filter. 400 (nothing written) for no mode, two modes,
    bad dates, unknown log ids, a bad filter or an empty set."""
    return json_response(service(request).generate_receipt(
        tenant, description=body.description, tags=body.tags, **_selection(body)))


@route(router, ops.PREVIEW_RECEIPT)
def preview(body: ReceiptRequest, tenant: Tenant, request: Request) -> Response:
    """What `generate` would certify (`total_logs`, `total_cost`, `by_model`, …); writes
    nothing."""
    return json_response(service(request).preview_receipt(tenant, **_selection(body)))


@route(router, ops.UNCERTIFIED, response_model=UncertifiedPage)
def uncertified(tenant: Tenant, request: Request, limit: Limit = 100,
                offset: Offset = 0) -> Response:
    """`{logs: [{id, type, alias, provider, model, input_tokens, output_tokens, cost,
    cost_nanos, cost_source, timestamp}], total, limit, offset, total_cost,
    total_cost_nanos, unpriced_logs}`, oldest first; the totals are over every
    uncertified log, not the page."""
    return json_response(service(request).uncertified(tenant, limit=limit, offset=offset))


@route(router, ops.VERIFY_RECEIPT, response_model=VerifyOut)
def verify(request: Request, document: Annotated[dict[str, Any], Body(
        description="A signed receipt, `{\"receipt\": …}`, or a proof bundle.")]) -> Response:
    """Checks the signature against every key of this ledger (current and retired):
    `{receipt_id, valid, algorithm}`. Public: needs no API key, signs nothing and reads
    no project's data."""
    return json_response(service(request).verify_receipt(document))


@route(router, ops.LIST_RECEIPTS)
def list_receipts(tenant: Tenant, request: Request, limit: Limit = 100,
                  offset: Offset = 0) -> Response:
    """Full signed receipts, newest first: `{receipts, total, limit, offset}`."""
    return json_response(service(request).list_receipts(tenant, limit=limit, offset=offset))


@router.get(ops.LIST_RECEIPTS.path.rstrip("/"), include_in_schema=False)
def list_receipts_no_slash(tenant: Tenant, request: Request, limit: Limit = 100,
                           offset: Offset = 0) -> Response:
    """The same listing as `GET /api/v1/receipts/`, without the trailing slash."""
    return list_receipts(tenant, request, limit, offset)


@route(router, ops.GET_RECEIPT)
def get_receipt(receipt_id: str, tenant: Tenant, request: Request) -> Response:
    """The full signed receipt, as issued."""
    return json_response(service(request).get_receipt(tenant, receipt_id))


@route(router, ops.RECEIPT_LOGS)
def receipt_logs(receipt_id: str, tenant: Tenant, request: Request, limit: Limit = 100,
                 offset: Offset = 0) -> Response:
    """`{receipt_id, logs, total, limit, offset}`, in the receipt's leaf order."""
    return Response(service(request).receipt_logs_json(tenant, receipt_id, limit=limit,
                                                       offset=offset),
                    media_type="application/json")


@route(router, ops.PROVE)
def proof(receipt_id: str, log_id: str, tenant: Tenant, request: Request) -> Response:
    """The offline proof bundle (`ledger-proof/v1`): the receipt, the event's canonical
    fields, its leaf index and audit path to the receipt's merkle root, and its inclusion
    in the project's log under the receipt's signed checkpoint. Verify it with
    `llmring receipts verify FILE --public-key PEM`."""
    return json_response(service(request).prove(tenant, receipt_id, log_id))


_LOGS_PREFIX, _LOGS_SUFFIX = "/api/v1/receipts/", "/logs"
_JSON_HEADER = (b"content-type", b"application/json")
MAX_OFFSET = 2**53 - 1  # ``Offset``'s bound


class ReceiptLogsFastPath:
    """Outer ASGI layer: ``GET /api/v1/receipts/{receipt_id}/logs`` with at most one
    ``limit`` (1 to 1000) and one ``offset`` (0 to 2**53 - 1), both plain decimal
    digits, and an API key that authenticates (``ledger.server.auth.credential``, the
    routes' one rule) is answered with ``LedgerService.receipt_logs_json`` of the key's
    project, the bytes the route sends. Anything else (another path or method, another
    query parameter, a missing, ambiguous or unknown key, an unknown receipt, …) passes
    to ``app``, whose route answers it as documented: a read changes nothing, so the
    route answering a declined request gives what it always gave."""

    def __init__(self, app: ASGIApp, fastapi: Any) -> None:
        self.app = app
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and scope["path"].startswith(_LOGS_PREFIX)
                and scope["path"].endswith(_LOGS_SUFFIX)):
            body = await self._answer(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()),
                                        _JSON_HEADER]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> bytes | None:
        """The page's body, or None to let the route answer."""
        receipt_id = scope["path"][len(_LOGS_PREFIX):-len(_LOGS_SUFFIX)]
        paging = _paging(scope.get("query_string", b""))
        server = getattr(self.fastapi.state, "server", None)
        if not receipt_id or "/" in receipt_id or paging is None or server is None:
            return None
        try:
            key = credential(scope["headers"])
        except AuthenticationError:
            return None
        found = server.api_keys.authenticate(key) if key else None
        if found is None:
            return None
        record_project(scope, found.project)
        limit, offset = paging
        try:
            return await anyio.to_thread.run_sync(  # type: ignore[no-any-return]
                lambda: server.service.receipt_logs_json(found.project, receipt_id,
                                                         limit=limit, offset=offset))
        except Exception:  # a refusal or a failure: the route answers it, as documented
            return None


def _paging(query: bytes) -> tuple[int, int] | None:
    """(limit, offset) of a query string of at most one ``limit`` (1 to 1000) and one
    ``offset`` (0 to ``MAX_OFFSET``), each plain decimal digits (defaults 100 and 0);
    None for anything else (the route validates it)."""
    found: dict[str, int] = {}
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True,
                          strict_parsing=bool(query))
    except ValueError:
        return None
    for name, value in pairs:
        if name not in ("limit", "offset") or name in found or not (
                value.isascii() and value.isdigit() and len(value) <= 16):
            return None
        found[name] = int(value)
    limit, offset = found.get("limit", 100), found.get("offset", 0)
    if not 1 <= limit <= MAX_LIMIT or offset > MAX_OFFSET:
        return None
    return limit, offset
