"""Receipt endpoints (docs/http-api.md): generate and preview receipts of the caller's
project, list and read them, the logs they certify and the uncertified ones, the proof
bundle of one log in a receipt, and public verification. Each answers with the
``LedgerService`` operation of the same name (``ledger.api.operations``); the tenant
always comes from the API key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from ledger.api import operations as ops
from ledger.server.logs import Limit, Offset, Tenant, json_response, route, service
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
    return json_response(service(request).receipt_logs(tenant, receipt_id, limit=limit,
                                                       offset=offset))


@route(router, ops.PROVE)
def proof(receipt_id: str, log_id: str, tenant: Tenant, request: Request) -> Response:
    """The offline proof bundle (`ledger-proof/v1`): the receipt, the event's canonical
    fields, its leaf index and audit path to the receipt's merkle root, and its inclusion
    in the project's log under the receipt's signed checkpoint. Verify it with
    `llmring receipts verify FILE --public-key PEM`."""
    return json_response(service(request).prove(tenant, receipt_id, log_id))
