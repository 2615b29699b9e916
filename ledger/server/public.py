"""Public endpoints, served without an API key: health, and the signing keys offline
verifiers need. They reveal nothing about any project."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ledger.api import operations as ops
from ledger.server.logs import json_response, route, service

router = APIRouter(tags=["public"])


@router.get("/health", summary="Readiness")
def health() -> dict[str, str]:
    return {"status": "ok"}


@route(router, ops.PUBLIC_KEYS)
def public_keys(request: Request) -> Response:
    """Every Ed25519 key, current and retired (retired keys stay published so that
    everything they signed keeps verifying)."""
    return json_response(service(request).public_keys())


@route(router, ops.PUBLIC_KEY_PEM, response_class=Response,
       responses={200: {"content": {"application/x-pem-file": {}}}})
def public_key_pem(request: Request) -> Response:
    """The current key as a SubjectPublicKeyInfo PEM."""
    return Response(service(request).public_key_pem(), media_type="application/x-pem-file")
