"""One header rule for the API key on every route of a real ``llmring serve``: the fast
write path (``POST /api/v1/log``, ``/api/v1/log/batch``) and the routed endpoints read
the key with the same function, so a request naming two keys (two ``X-API-Key``
headers, two ``Authorization`` headers, or a key and a bearer token that differ) is
refused 401 everywhere and writes nothing, instead of going to one project on one path
and to another on the other (docs/http-api.md, Auth)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.serverproc import Server

EVENT = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "cost": 0.001}
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/v1/log", EVENT),  # the fast path
    ("POST", "/api/v1/log/batch", {"events": [EVENT, EVENT]}),  # the fast path
    ("POST", "/api/v1/conversations/log",
     {"messages": [{"role": "user", "content": "hi"}], "metadata": EVENT}),
    ("GET", "/api/v1/logs", None),
    ("GET", "/api/v1/project", None),
    ("GET", "/api/v1/stats", None),
    ("POST", "/api/v1/receipts/preview", {"since_last_receipt": True}),
]


def _ambiguous(server: Server) -> dict[str, list[tuple[str, str]]]:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    return {
        "two X-API-Key": [("X-API-Key", alpha), ("X-API-Key", beta)],
        "two X-API-Key, the same": [("X-API-Key", alpha), ("X-API-Key", alpha)],
        "two Authorization": [("Authorization", f"Bearer {alpha}"),
                              ("Authorization", f"Bearer {beta}")],
        "key and bearer differ": [("X-API-Key", alpha), ("Authorization", f"Bearer {beta}")],
    }


def _counts(server: Server) -> dict[str, int]:
    return {p: httpx.get(server.url + "/api/v1/logs", params={"limit": 1},
                         headers=server.headers(p)).json()["total"]
            for p in ("alpha", "beta")}


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_request_naming_two_keys_is_refused_on_every_route(server: Server, method: str,
                                                             path: str, body: Any) -> None:
    """Every ambiguous variant gets 401 with the documented error body, on the fast path
    and the routed path alike, and no project gains an event."""
    before = _counts(server)
    for variant, headers in _ambiguous(server).items():
        r = httpx.request(method, server.url + path, json=body, headers=headers)
        assert r.status_code == 401, (variant, r.text)
        answer = r.json()
        assert answer["code"] == "unauthorized", variant
        assert "key" in answer["detail"], variant
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert _counts(server) == before


@pytest.mark.parametrize("path,body", [r[1:] for r in ROUTES if r[0] == "POST"][:2],
                         ids=["fast single", "fast batch"])
def test_a_key_and_the_same_bearer_token_is_one_key(server: Server, path: str,
                                                    body: Any) -> None:
    """``X-API-Key`` and ``Authorization: Bearer`` naming the same key are one
    credential: the write goes to that project, and reads back there."""
    key = server.keys["beta"]
    before = _counts(server)
    r = httpx.post(server.url + path, json=body,
                   headers=[("X-API-Key", key), ("Authorization", f"Bearer {key}")])
    assert r.status_code == 200, r.text
    added = 1 if path.endswith("/log") else 2
    assert _counts(server) == {"alpha": before["alpha"], "beta": before["beta"] + added}


def test_another_authorization_scheme_is_no_key(server: Server) -> None:
    """``Authorization: Basic …`` beside an ``X-API-Key`` is not a second key (it names
    none); alone it is a missing key."""
    r = httpx.get(server.url + "/api/v1/project",
                  headers=[("X-API-Key", server.keys["alpha"]),
                           ("Authorization", "Basic dXNlcjpwYXNz")])
    assert r.status_code == 200 and r.json()["project"] == "alpha"
    r = httpx.post(server.url + "/api/v1/log", json=EVENT,
                   headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
