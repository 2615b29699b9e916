"""Every project's log as c2sp.org/tlog-tiles resources under ``/tlog/<project>/``: the
latest signed checkpoint with its cosignatures and the hash tiles it covers (public:
they reveal hashes and sizes only), and the entry bundles (the project's API key: they
reveal its usage). Answered from the stored checkpoint and tree files
(``ledger.tlog.published``), without recomputing a hash and without taking the
ledger's write lock; hash tiles and the checkpoint are served on the event loop
(one small ``pread``), entry bundles in the thread pool (they read segments).

``TileFastPath`` (outside the app in ``llmring serve``) answers a hash tile request
that will succeed without FastAPI's routing and middleware, which cost more than the
read itself; any other request, and any tile it cannot serve, goes to the routes, which
answer it (404 …) exactly as documented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.api import operations as ops
from ledger.errors import LedgerError
from ledger.server import auth
from ledger.server.logs import route, service
from ledger.server.schemas import error_responses

router = APIRouter(tags=["tlog-tiles"])
Tenant = Annotated[str, Depends(auth.tenant)]
F = TypeVar("F", bound=Callable[..., Any])

CHECKPOINT_CACHE = "public, max-age=5"  # mutable: a few seconds at most (the spec)
TILE_CACHE = "public, max-age=31536000, immutable"  # a tile's bytes never change
BUNDLE_CACHE = "private, max-age=31536000, immutable"  # immutable, but for the key holder
OCTETS = "application/octet-stream"


def tile_route(op: ops.Operation) -> Callable[[F], F]:
    """``route`` for a tile operation: its ``{index}`` spans slashes
    (``x001/x234/067.p/5``), so the route takes it as a path."""
    return router.api_route(op.path.replace("{index}", "{index:path}"), methods=[op.method],
                            summary=op.summary, response_class=Response,
                            responses={**error_responses(op),
                                       200: {"content": {OCTETS: {}}}})


@route(router, ops.TLOG_CHECKPOINT, response_class=Response,
       responses={200: {"content": {"text/plain": {}}}})
async def tlog_checkpoint(project: str, request: Request) -> Response:
    """The latest checkpoint signed for the project's log (C2SP tlog-checkpoint), with
    every witness cosignature stored for it. Public. 404 for an unknown project and for
    a log without a signed checkpoint alike."""
    note = service(request).tlog_checkpoint(project)
    return Response(note, media_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": CHECKPOINT_CACHE})


# Registered before the hash tiles: ``entries`` would otherwise be read as a level.
@tile_route(ops.TLOG_ENTRIES)
def tlog_entries(project: str, index: str, tenant: Tenant, request: Request) -> Response:
    """Entry bundle `<N>[.p/<W>]`: the canonical bytes of each entry, each prefixed by
    its length as a big-endian uint16. Needs the project's own API key (another
    project's bundles are not found)."""
    body = service(request).tlog_entries(tenant, project, index)
    return Response(body, media_type=OCTETS, headers={"Cache-Control": BUNDLE_CACHE})


@tile_route(ops.TLOG_TILE)
async def tlog_tile(project: str, level: str, index: str, request: Request) -> Response:
    """Hash tile `<L>/<N>[.p/<W>]`: W concatenated 32-byte hashes, sliced from the stored
    tree. Public; only tiles the latest signed checkpoint covers exist (404 otherwise)."""
    body = service(request).tlog_tile(project, level, index)
    return Response(body, media_type=OCTETS, headers={"Cache-Control": TILE_CACHE})


_TILE_HEADERS = [(b"content-type", OCTETS.encode()), (b"cache-control", TILE_CACHE.encode())]


class TileFastPath:
    """Outer ASGI layer: ``GET /tlog/<project>/tile/<L>/<N>[.p/<W>]`` answered straight
    from ``LedgerService.tlog_tile`` when it succeeds; everything else passes to
    ``app``."""

    def __init__(self, app: ASGIApp, fastapi: Any) -> None:
        self.app = app
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and scope["path"].startswith("/tlog/")):
            body = self._tile(scope["path"])
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [*_TILE_HEADERS,
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _tile(self, path: str) -> bytes | None:
        parts = path.split("/", 5)  # "", "tlog", project, "tile", level, index
        if len(parts) != 6 or parts[3] != "tile" or parts[4] == "entries":
            return None
        server = getattr(self.fastapi.state, "server", None)
        if server is None:
            return None
        try:
            return server.service.tlog_tile(parts[2], parts[4], parts[5])  # type: ignore[no-any-return]
        except (LedgerError, OSError):
            return None  # the route answers it, with the documented error
