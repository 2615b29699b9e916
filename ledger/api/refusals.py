"""Refusals, as the transports raise them: ``refusal(exc)`` is the project error
(``ledger.errors``) a domain error raised on a local data directory stands for;
``refusal_from_response`` is the one an HTTP error response stands for, and
``unreachable`` the one raised when no server answers. The same refusal thus raises the
same class, with the same status, on either transport."""

from __future__ import annotations

from typing import Any

from ledger.errors import (
    LedgerError,
    ServerUnavailableError,
    as_ledger_error,
    error_from_response,
)

LedgerHTTPError = LedgerError
"""The root of the project's errors, by the name the clients have always raised."""


def refusal(exc: BaseException) -> LedgerError | None:
    """The project error ``exc`` stands for (itself, or a library's ``ValueError`` as a
    ``RequestError``); None: not a refusal, re-raise it."""
    return as_ledger_error(exc)


def refusal_from_response(status: int, body: Any, text: str, *, method: str = "",
                          url: str = "") -> LedgerError:
    """The project error an HTTP error response stands for (its ``code``, else its
    status)."""
    return error_from_response(status, body if body is not None else text,
                               request=f"{method} {url}".strip())


def unreachable(exc: Exception, base_url: str) -> LedgerError:
    """No server answered at ``base_url`` (refused, timed out, cut)."""
    return ServerUnavailableError(f"cannot reach the server at {base_url}: "
                                  f"{exc or type(exc).__name__}")


__all__ = ["LedgerHTTPError", "refusal", "refusal_from_response", "unreachable"]
