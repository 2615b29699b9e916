"""Authentication: the API key of a request (``X-API-Key``, or ``Authorization: Bearer``)
names its project. Every authenticated endpoint takes its tenant from here, never from
the request body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key from `llmring keys create`.")
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="llmring"'}


async def tenant(
    request: Request,
    key: Annotated[str | None, Depends(api_key_header)],
    auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The project of the request's API key; 401 when it is missing, unknown or revoked."""
    given = key or (auth.credentials if auth is not None else None)
    if not given:
        raise HTTPException(401, "missing API key: send it as `X-API-Key: <key>` or "
                                 "`Authorization: Bearer <key>` (create one with "
                                 "`llmring keys create --project NAME`)", headers=UNAUTHORIZED)
    found = request.app.state.server.api_keys.authenticate(given)
    if found is None:
        raise HTTPException(401, "invalid or revoked API key", headers=UNAUTHORIZED)
    return found.project
