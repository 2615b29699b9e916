"""Receipt endpoints (DESIGN §6, §9): generate and preview receipts of the caller's
project, list and read them, the logs they certify and the uncertified ones, the proof
bundle of one log in a receipt, and public verification. The work is
``ledger.receipts.issuance.Receipts``'; the tenant always comes from the API key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from ledger.receipts.issuance import Receipts
from ledger.server.logs import Limit, Offset, Tenant, json_response, service
from ledger.server.schemas import ReceiptRequest, VerifyOut

router = APIRouter(tags=["receipts"])


def receipts(request: Request) -> Receipts:
    return service(request).receipts  # type: ignore[no-any-return]


def _selection(body: ReceiptRequest) -> dict[str, Any]:
    return {"conversation_id": body.conversation_id, "start_date": body.start_date,
            "end_date": body.end_date, "log_ids": body.log_ids,
            "since_last_receipt": body.since_last_receipt}


@router.post("/api/v1/receipts/generate", summary="Generate a signed receipt")
def generate(body: ReceiptRequest, tenant: Tenant, request: Request) -> Response:
    """Certify exactly one selection of the project's logs: `{receipt, certified_count}`.
    400 (nothing written) for no mode, two modes, bad dates, unknown log ids or an empty
    set."""
    return json_response(receipts(request).generate(
        tenant, description=body.description, tags=body.tags, **_selection(body)))


@router.post("/api/v1/receipts/preview", summary="Preview a receipt")
def preview(body: ReceiptRequest, tenant: Tenant, request: Request) -> Response:
    """What `generate` would certify (`total_logs`, `total_cost`, `by_model`, …); writes
    nothing."""
    return json_response(receipts(request).preview(tenant, **_selection(body)))


@router.get("/api/v1/receipts/uncertified", summary="Logs no receipt certifies")
def uncertified(tenant: Tenant, request: Request, limit: Limit = 100,
                offset: Offset = 0) -> Response:
    """`{logs: [{id, type, alias, provider, model, input_tokens, output_tokens, cost,
    timestamp}], total, limit, offset}`, oldest first."""
    return json_response(receipts(request).uncertified(tenant, limit, offset))


@router.post("/api/v1/receipts/verify", response_model=VerifyOut,
             summary="Verify a receipt (public)")
def verify(request: Request, document: Annotated[dict[str, Any], Body(
        description="A signed receipt, `{\"receipt\": …}`, or a proof bundle.")]) -> Response:
    """Checks the signature against every key of this ledger (current and retired):
    `{receipt_id, valid, algorithm}`. Public: needs no API key, signs nothing and reads
    no project's data."""
    return json_response(service(request).verify_receipt(document))


@router.get("/api/v1/receipts/", summary="The project's receipts")
def list_receipts(tenant: Tenant, request: Request, limit: Limit = 100,
                  offset: Offset = 0) -> Response:
    """Full signed receipts, newest first: `{receipts, total, limit, offset}`."""
    return json_response(receipts(request).list(tenant, limit, offset))


@router.get("/api/v1/receipts", include_in_schema=False)
def list_receipts_no_slash(tenant: Tenant, request: Request, limit: Limit = 100,
                           offset: Offset = 0) -> Response:
    """The same listing as `GET /api/v1/receipts/`, without the trailing slash."""
    return list_receipts(tenant, request, limit, offset)


@router.get("/api/v1/receipts/{receipt_id}", summary="One signed receipt")
def get_receipt(receipt_id: str, tenant: Tenant, request: Request) -> Response:
    return json_response(receipts(request).get(tenant, receipt_id))


@router.get("/api/v1/receipts/{receipt_id}/logs", summary="The logs a receipt certifies")
def receipt_logs(receipt_id: str, tenant: Tenant, request: Request, limit: Limit = 100,
                 offset: Offset = 0) -> Response:
    """`{receipt_id, logs, total, limit, offset}`, in the receipt's leaf order."""
    return json_response(receipts(request).logs(tenant, receipt_id, limit, offset))


@router.get("/api/v1/receipts/{receipt_id}/proof/{log_id}",
            summary="Proof bundle of one log in a receipt")
def proof(receipt_id: str, log_id: str, tenant: Tenant, request: Request) -> Response:
    """The offline proof bundle (`ledger-proof/v1`): the receipt, the event's canonical
    fields, its leaf index and audit path to the receipt's merkle root, and its inclusion
    in the project's log under the receipt's signed checkpoint. Verify it with
    `llmring receipts verify FILE --public-key PEM`."""
    return json_response(receipts(request).prove(tenant, receipt_id, log_id))
