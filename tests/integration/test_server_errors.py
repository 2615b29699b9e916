"""One error body on a real ``llmring serve``: whatever refuses a request (a route's
schema, the ledger, the body limit before any route, Starlette's routing for an unknown
path or method, the fast path declining), the answer is ``{"detail", "code", …}`` as
``ErrorOut`` documents it (docs/http-api.md, Errors)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ledger.server.schemas import ErrorOut
from tests.support import serverproc
from tests.support.serverproc import Server


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = serverproc.start(tmp_path_factory.mktemp("errors") / "data",
                              projects=("alpha",), extra=("--max-body", "2048"))
    try:
        yield server
    finally:
        server.stop()


def _request(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {**server.headers("alpha"), **kw.pop("headers", {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kw)


JSON = {"Content-Type": "application/json"}
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("unknown path", "GET", "/api/v1/nothing-here", {}, 404, "not_found"),
    ("unknown method", "DELETE", "/api/v1/logs", {}, 405, "method_not_allowed"),
    ("body over the limit, declared (fast path)", "POST", "/api/v1/log",
     {"content": b"{" + b" " * 4096 + b"}", "headers": JSON}, 413, "too_large"),
    ("body over the limit, declared (route)", "POST", "/api/v1/conversations/log",
     {"content": b"{" + b" " * 4096 + b"}", "headers": JSON}, 413, "too_large"),
    ("malformed JSON (fast path declines)", "POST", "/api/v1/log",
     {"content": b'{"provider": ', "headers": JSON}, 422, "invalid_request"),
    ("malformed JSON (route)", "POST", "/api/v1/receipts/preview",
     {"content": b"[1,", "headers": JSON}, 422, "invalid_request"),
    ("not UTF-8", "POST", "/api/v1/log/batch",
     {"content": b'{"events": ["\xff"]}', "headers": JSON}, 400, "bad_request"),
    ("schema: wrong type", "GET", "/api/v1/logs?limit=many", {}, 422, "invalid_request"),
    ("schema: invalid event", "POST", "/api/v1/log", {"json": {"provider": "openai"}},
     422, "invalid_event"),
    ("the ledger refuses", "GET", "/api/v1/logs?start=2025-10-02&end=2025-10-01", {},
     400, "bad_request"),
    ("unknown log", "GET", "/api/v1/logs/nope", {}, 404, "not_found"),
    ("no key", "GET", "/api/v1/project", {"headers": {"X-API-Key": ""}}, 401,
     "unauthorized"),
]


@pytest.mark.parametrize("method,path,kw,status,code", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_every_refusal_has_the_one_error_body(small_server: Server, method: str,
                                              path: str, kw: dict[str, Any], status: int,
                                              code: str) -> None:
    r = _request(small_server, method, path, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    ErrorOut.model_validate(body)
    assert set(body) <= set(ErrorOut.model_fields)
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"]
    if status == 405:
        assert "GET" in r.headers["allow"]


@pytest.mark.parametrize("path,allow", [
    ("/api/v1/prices", {"GET", "POST"}),
    ("/api/v1/prices/show", {"GET"}),
    ("/api/v1/prices/some-row", {"DELETE"}),
    ("/api/v1/budgets/status", {"GET"}),
    ("/api/v1/budgets/monthly", {"PUT", "DELETE"}),
    ("/api/v1/usage/dimensions", {"GET", "PUT"}),
    ("/api/v1/receipts/generate", {"POST"}),
    ("/api/v1/receipts/rcpt-1", {"GET"}),
])
def test_a_405_allows_exactly_the_methods_of_the_resource(small_server: Server, path: str,
                                                         allow: set[str]) -> None:
    """``Allow`` names every method the schema documents at the most specific path that
    names the resource (``/budgets/status``, not ``/budgets/{name}``), not only the
    first route's."""
    r = _request(small_server, "OPTIONS", path)
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} == allow


def test_a_budget_cannot_take_the_name_of_the_status_route(small_server: Server) -> None:
    """``PUT /api/v1/budgets/status`` would make a budget ``GET /api/v1/budgets/status``
    could never show: refused, and nothing is created."""
    r = _request(small_server, "PUT", "/api/v1/budgets/status",
                 json={"amount": "10", "period": "day"})
    assert r.status_code in (400, 422) and "status" in r.json()["detail"], r.text
    assert _request(small_server, "GET", "/api/v1/budgets").json()["budgets"] == []
