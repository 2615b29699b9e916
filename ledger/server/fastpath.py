"""The fast path of the two hot write endpoints (``FastPath(app)`` wraps the app
``llmring serve`` runs), ``POST /api/v1/log`` and
``POST /api/v1/log/batch``: a well-formed, authenticated request is parsed by orjson and
appended (the ledger validates it with the column checks of ``ledger.model.batch``; a
single event together with the others waiting, submitted from the event loop itself
unless its project has budgets; a batch in the thread pool), without FastAPI's
routing, dependency and exception machinery (which cost more CPU per request than the
append itself).

The API key is read by ``ledger.server.auth.credential``, the routes' one rule.
Anything else (no JSON content type, a missing, ambiguous or unknown key, an invalid
body, an append the ledger refuses) falls through to the FastAPI route, which answers it exactly as
documented; a refused append wrote nothing, so running it again there is safe and gives
the same answer.
"""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import AuthenticationError
from ledger.server.allocator import RELEASE_AFTER, release
from ledger.server.auth import credential
from ledger.server.ops import record_project
from ledger.server.schemas import MAX_BATCH

FAST_PATHS = ("/api/v1/log", "/api/v1/log/batch")


def _json_body(scope: Scope) -> bool:
    """Whether the request's content type is JSON."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


class FastPath:
    """Outermost ASGI layer: tries the fast path for requests to ``FAST_PATHS`` with a
    declared ``Content-Length`` within the app's body limit, and hands every other request
    (and every request the fast path declines, with its body replayed) to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app: ASGIApp = app
        self.fastapi = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] not in FAST_PATHS):
            await self.app(scope, receive, send)
            return
        server = getattr(self.fastapi.state, "server", None)
        length = _content_length(scope)
        if server is None or length is None or length > _limit(server, scope["path"]):
            await self.app(scope, receive, send)  # the app answers (413, 400, …)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            received += len(chunk)
            if received > length or not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        try:
            if received == length and await try_answer(server, scope, body, send):
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            if length >= RELEASE_AFTER:  # its parsed events' memory back to the kernel
                del body
                release()


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives ``body`` first (the request's, already read)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _batch_events(body: bytes) -> list[Any] | None:
    """The events of a well-formed batch body (``{"events": [...]}``, 1 to ``MAX_BATCH``
    of them), as parsed JSON for the ledger's batch path to validate; None otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or data.keys() != {"events"}:
        return None
    events = data["events"]
    if type(events) is not list or not 1 <= len(events) <= MAX_BATCH:
        return None
    return events


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limit(server: Any, path: str) -> int:
    config = server.config
    return int(config.max_batch_body if path == "/api/v1/log/batch" else config.max_body)


async def try_answer(server: Any, scope: Scope, body: bytes, send: Send) -> bool:
    """Answer the request if it takes the fast path; False to let the app answer it."""
    if not _json_body(scope):
        return False
    try:
        key = credential(scope["headers"])
    except AuthenticationError:
        return False  # the route refuses it, as every route does
    if key is None:
        return False
    found = server.api_keys.authenticate(key)
    if found is None:
        return False
    project = found.project
    record_project(scope, project)
    event: dict[str, Any] | None = None
    if scope["path"] == "/api/v1/log":
        try:  # parsed here; the ledger validates it (with the requests around it)
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if type(event) is not dict:
            return False

    service = server.service

    def work() -> Any:
        """Append in a worker thread; a batch is validated there too (10,000 events take
        a while: the event loop keeps serving meanwhile). None: declined."""
        if event is not None:
            return service.log_usage(project, event)
        events = _batch_events(body)
        if events is None:
            return None
        return service.log_batch(project, events)

    try:
        if event is not None and not service.budgets.watches(project):
            answer = await service.log_usage_soon(project, event)  # no worker thread
        else:
            answer = await anyio.to_thread.run_sync(work)
    except Exception:  # refused: nothing was written; the route answers with the reason
        return False
    if answer is None:
        return False
    data = orjson.dumps(answer)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
    return True
