"""Public endpoints, served without an API key: health, and the signing keys offline
verifiers need. They reveal nothing about any project."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from ledger.server.logs import json_response, state
from ledger.signing import public_keys_json

router = APIRouter(tags=["public"])


@router.get("/health", summary="Readiness")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/v1/receipts/public-keys.json", summary="Every signing key")
def public_keys(request: Request) -> Response:
    """Every Ed25519 key, current and retired (retired keys stay published so that
    everything they signed keeps verifying)."""
    return json_response(public_keys_json(state(request).keyring.keys()))


@router.get("/receipts/public-key.pem", summary="The current signing key (PEM)",
            response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def public_key_pem(request: Request) -> Response:
    """The current key as a SubjectPublicKeyInfo PEM."""
    info = state(request).keyring.current_info()
    if info is None:  # pragma: no cover - the server creates a key at startup
        raise HTTPException(404, "no signing key yet")
    return Response(info.pem(), media_type="application/x-pem-file")
