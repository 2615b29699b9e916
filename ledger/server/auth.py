"""Authentication: the API key of a request (``X-API-Key``, or ``Authorization: Bearer``)
names its project. Every authenticated endpoint takes its tenant from here, never from
the request body.

``credential`` is the one rule reading the key from a request's raw headers, for the
routed endpoints (``tenant``) and the fast path (``ledger.server.fastpath``) alike: a
request carrying more than one ``X-API-Key``, more than one ``Authorization``, or an
``X-API-Key`` and a bearer token that differ names no single project and is refused
(401), never read as either one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ledger.errors import AuthenticationError
from ledger.server.ops import record_project

# Declared for the OpenAPI schema (its security schemes); the key itself is read by
# ``credential`` from the raw headers.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key from `llmring keys create`.")
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="llmring"'}


def credential(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key of a request from its raw ASGI headers: the ``X-API-Key`` value, or
    the token of ``Authorization: Bearer``; None when neither is given (an empty value
    or another ``Authorization`` scheme is no key). Raises ``AuthenticationError`` for
    two ``X-API-Key`` headers, two ``Authorization`` headers, or a key and a bearer
    token that differ."""
    keys: list[str] = []
    authorizations: list[str] = []
    for name, value in headers:
        if name == b"x-api-key":
            keys.append(value.decode("latin-1").strip())
        elif name == b"authorization":
            authorizations.append(value.decode("latin-1"))
    if len(keys) > 1:
        raise AuthenticationError(f"the request has {len(keys)} X-API-Key headers; "
                                  "send exactly one API key")
    if len(authorizations) > 1:
        raise AuthenticationError(f"the request has {len(authorizations)} Authorization "
                                  "headers; send exactly one API key")
    key = keys[0] if keys else ""
    token = ""
    if authorizations:
        scheme, _, rest = authorizations[0].strip().partition(" ")
        if scheme.lower() == "bearer":
            token = rest.strip()
    if key and token and key != token:
        raise AuthenticationError("the X-API-Key header and the bearer token name "
                                  "different keys; send one API key")
    return key or token or None


async def tenant(
    request: Request,
    _key: Annotated[str | None, Depends(api_key_header)],
    _auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The project of the request's API key (``credential``); 401 when it is missing,
    ambiguous, unknown or revoked."""
    try:
        given = credential(request.scope["headers"])
    except AuthenticationError as exc:
        raise HTTPException(401, str(exc), headers=UNAUTHORIZED) from None
    if not given:
        raise HTTPException(401, "missing API key: send it as `X-API-Key: <key>` or "
                                 "`Authorization: Bearer <key>` (create one with "
                                 "`llmring keys create --project NAME`)", headers=UNAUTHORIZED)
    found = request.app.state.server.api_keys.authenticate(given)
    if found is None:
        raise HTTPException(401, "invalid or revoked API key", headers=UNAUTHORIZED)
    record_project(request.scope, found.project)
    return found.project
