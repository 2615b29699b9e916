"""The web dashboard (docs/dashboard.md): ``GET /`` serves its page and ``GET
/dashboard/{name}`` its static files, every one from inside the installed package and
without an API key; the charting library, plotly.js, is served from the ``plotly``
package's own copy, never from a CDN. The page itself reads only the documented
``/api/v1`` routes, with the key the user signs in with; nothing here sees a key.

Every answer carries a strict Content-Security-Policy (scripts and connections to this
origin only, no inline script), ``nosniff``, ``no-referrer`` and ``frame-ancestors
'none'``."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Response

from ledger.errors import NotFoundError

router = APIRouter(tags=["dashboard"], include_in_schema=False)

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
# The page's own files; plotly.min.js comes from the plotly package (docs/decisions.md).
ASSETS = ("index.html", "app.js", "style.css", "verify.js", "checker.html", "checker.js")
PLOTLY = "plotly.min.js"
# plotly.js styles its SVG inline ('unsafe-inline' for styles only); scripts, data and
# connections stay on this origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cross-Origin-Opener-Policy": "same-origin"}


@cache
def _asset(name: str) -> tuple[bytes, str]:
    if name == PLOTLY:
        data = resources.files("plotly").joinpath("package_data", PLOTLY).read_bytes()
    else:
        data = (STATIC / name).read_bytes()
    return data, MEDIA_TYPES[Path(name).suffix]


def _answer(name: str, cache_control: str) -> Response:
    data, media_type = _asset(name)
    return Response(data, media_type=media_type,
                    headers={**SECURITY_HEADERS, "Cache-Control": cache_control})


@router.get("/", summary="The web dashboard")
def index() -> Response:
    """The dashboard's page: it asks for a project API key and reads the API with it."""
    return _answer("index.html", "no-store")


@router.get("/dashboard/{name}", summary="The dashboard's static files")
def asset(name: str) -> Response:
    """One of the dashboard's files (its scripts, style, the receipt checker page, and
    plotly.min.js from the installed plotly package); no API key."""
    if name not in ASSETS and name != PLOTLY:
        raise NotFoundError(f"no dashboard file {name!r}")
    # plotly.min.js changes only with the installed package: let the browser keep it
    return _answer(name, "max-age=3600" if name == PLOTLY else "no-cache")


__all__ = ["CSP", "router"]
