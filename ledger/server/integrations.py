"""Ingestion endpoints for the tools teams already run: ``POST /api/v1/integrations/litellm``
takes what LiteLLM's ``generic_api`` logger sends (``ledger.integrations.litellm`` reads
it), in any of its three formats, and appends it through the service's batch path (all
or nothing, acknowledged once durable)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request, Response

from ledger.api import operations as ops
from ledger.integrations.litellm import MAX_PAYLOADS, LiteLLMPayload
from ledger.server.logs import Tenant, json_response, route, service
from ledger.server.schemas import LiteLLMOut

router = APIRouter(tags=["integrations"])


def _litellm_body() -> dict[str, Any]:
    """The OpenAPI request body: a JSON array of payloads or one payload; the NDJSON
    format (one payload a line) is described in words, as LiteLLM sends it as JSON."""
    payload = LiteLLMPayload.model_json_schema()
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": [
        {"type": "array", "items": payload, "minItems": 1, "maxItems": MAX_PAYLOADS},
        payload]}}},
        "description": "LiteLLM's `StandardLoggingPayload`s as its `generic_api` logger "
                       "sends them: `json_array` (a JSON array), `single` (one object) "
                       "or `ndjson` (one object a line)."}


@route(router, ops.LOG_LITELLM, response_model=LiteLLMOut,
       openapi_extra={"requestBody": _litellm_body()})
async def log_litellm(tenant: Tenant, request: Request) -> Response:
    """One event per successful call, its LiteLLM `id` as the `event_id`: a retried
    batch adds nothing (`repeated`), an id reused with other content is a 409. Failed
    calls are skipped. Any bad payload refuses the whole request, naming the payload
    (`index`) and the LiteLLM field, and nothing is written (docs/http-api.md)."""
    body = await request.body()
    answer = await anyio.to_thread.run_sync(service(request).log_litellm, tenant, body)
    return json_response(answer)
