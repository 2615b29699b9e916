"""The documentation stays true to the code: every ``llmring`` command and group has help
text and is named in docs/cli.md, every HTTP route has a summary or docstring and is listed
in docs/http-api.md, the README stays short and keeps the two newcomer commands, and every
relative link in the README and docs/ points to a file that exists.

The command tree and the routes are walked live, so a new command or route fails here until
it is documented (the last tests check that the checkers do catch one).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import click
import fastapi.routing
import pytest
import rfc8785
from fastapi import FastAPI

from ledger import Ledger
from ledger.cli import cli
from ledger.server import create_app
from tests.support.paths import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
CLI_DOC = DOCS / "cli.md"
HTTP_DOC = DOCS / "http-api.md"
README_LIMIT = 12 * 1024

NEWCOMER_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/llmring demo",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
    ".venv/bin/python -m pytest",
)


# -- the command tree ----------------------------------------------------------------------
def walk_commands(command: click.Command, name: str = "llmring",
                  ) -> Iterator[tuple[str, click.Command]]:
    """Every command and group under ``command``, by its full name (``llmring log
    checkpoint``), the root included."""
    yield name, command
    if isinstance(command, click.Group):
        for sub_name, sub in sorted(command.commands.items()):
            yield from walk_commands(sub, f"{name} {sub_name}")


def help_text(command: click.Command) -> str:
    return (command.help or command.short_help or "").strip()


def undocumented_commands(root: click.Command, doc: str) -> list[str]:
    """Commands without help text or not named (as `` `llmring …` ``) in ``doc``."""
    missing = []
    for name, command in walk_commands(root):
        if not help_text(command):
            missing.append(f"{name}: no help text")
        if f"`{name}`" not in doc:
            missing.append(f"{name}: not in {CLI_DOC.name}")
    return missing


COMMANDS = dict(walk_commands(cli))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help(name: str) -> None:
    assert help_text(COMMANDS[name]), f"`{name}` has no help text"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_is_documented(name: str) -> None:
    assert f"`{name}`" in CLI_DOC.read_text(encoding="utf-8"), (
        f"`{name}` is not named in docs/cli.md")


# -- the HTTP routes -----------------------------------------------------------------------
def fastapi_own_paths(app: FastAPI) -> set[str]:
    return {p for p in (app.openapi_url, app.docs_url, app.redoc_url,
                        app.swagger_ui_oauth2_redirect_url) if p}


def walk_routes(app: FastAPI) -> Iterator[tuple[str, str, str]]:
    """``(method, path, summary or docstring)`` of every route of ``app`` but FastAPI's own
    documentation pages. HEAD is left out where the route also answers GET."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten is not None else list(app.routes)
    own = fastapi_own_paths(app)
    for route in routes:
        path = getattr(route, "path", None)
        methods = set(getattr(route, "methods", None) or ())
        if path is None or path in own:
            continue
        endpoint = getattr(route, "endpoint", None)
        text = (getattr(route, "summary", None) or getattr(endpoint, "__doc__", None)
                or "").strip()
        if "GET" in methods:
            methods.discard("HEAD")
        for method in sorted(methods):
            yield method, path, text


def undocumented_routes(app: FastAPI, doc: str) -> list[str]:
    """Routes without a summary or docstring, or not listed (as `` `METHOD /path` ``) in
    ``doc``."""
    missing = []
    for method, path, text in walk_routes(app):
        if not text:
            missing.append(f"{method} {path}: no summary or docstring")
        if f"`{method} {path}`" not in doc:
            missing.append(f"{method} {path}: not in {HTTP_DOC.name}")
    return missing


def _routes() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as data_dir:
        return list(walk_routes(create_app(Path(data_dir))))


ROUTES = _routes()


def test_the_server_has_routes() -> None:
    assert len(ROUTES) >= 20


@pytest.mark.parametrize(("method", "path", "text"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_route_has_summary(method: str, path: str, text: str) -> None:
    assert text, f"{method} {path} has neither a summary nor a docstring"


@pytest.mark.parametrize(("method", "path", "text"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_route_is_documented(method: str, path: str, text: str) -> None:
    assert f"`{method} {path}`" in HTTP_DOC.read_text(encoding="utf-8"), (
        f"`{method} {path}` is not listed in docs/http-api.md")


# -- the README ----------------------------------------------------------------------------
def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes (at most {README_LIMIT:,})"


@pytest.mark.parametrize("command", NEWCOMER_COMMANDS)
def test_readme_has_the_newcomer_commands(command: str) -> None:
    assert command in README.read_text(encoding="utf-8")


# -- links ---------------------------------------------------------------------------------
DOC_FILES = [README, *sorted(DOCS.glob("*.md")), REPO / "bench" / "README.md",
             REPO / "data" / "README.md"]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def relative_links(markdown: str) -> list[str]:
    """The link targets of ``markdown`` that are paths (no URL scheme, no bare anchor),
    outside code."""
    text = INLINE_CODE.sub("", FENCE.sub("", markdown))
    return [t for t in LINK.findall(text) if not EXTERNAL.match(t) and not t.startswith("#")]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown``: lower case, punctuation
    dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def broken_links(path: Path) -> list[str]:
    """Relative links of ``path`` to a missing file, or to a missing heading of a page."""
    broken = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file, _, anchor = target.partition("#")
        linked = path.parent / file
        missing_heading = (linked.is_file() and linked.suffix == ".md" and bool(anchor)
                           and anchor not in anchors(linked.read_text(encoding="utf-8")))
        if not linked.exists() or missing_heading:
            broken.append(target)
    return broken


def test_docs_exist() -> None:
    for name in ("architecture.md", "formats.md", "cli.md", "http-api.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(REPO)) for p in DOC_FILES])
def test_relative_links_resolve(path: Path) -> None:
    assert path.is_file()
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(REPO)) for p in DOC_FILES])
def test_no_citations_of_the_design_document(path: Path) -> None:
    """The design document is not in the repository: the docs link to docs/ instead."""
    assert "DESIGN §" not in path.read_text(encoding="utf-8")


def test_no_citations_of_the_design_document_in_code() -> None:
    sources = [p for top in ("ledger", "projections", "bench", "examples")
               for p in sorted((REPO / top).rglob("*.py"))]
    citing = [str(p.relative_to(REPO)) for p in sources
              if "DESIGN §" in p.read_text(encoding="utf-8")]
    assert citing == [], "cite docs/ instead of the design document"


# -- the worked example of docs/formats.md -------------------------------------------------
def test_the_leaf_hash_example_of_formats_md_holds(tmp_path: Path) -> None:
    """The example's bytes are canonical, hash to the leaf hash the page gives, and are
    what the ledger records for that call (so the example can check another
    implementation)."""
    text = (DOCS / "formats.md").read_text(encoding="utf-8")
    found = re.search(r"For example, the call\s+```json\n(?P<json>.+?)\n```\s+has the leaf "
                      r"hash `(?P<hash>[0-9a-f]{64})`", text, re.S)
    assert found, "docs/formats.md lost its worked example"
    canonical = found["json"].encode("utf-8")
    assert rfc8785.dumps(json.loads(canonical)) == canonical
    assert hashlib.sha256(b"\x00" + canonical).hexdigest() == found["hash"]
    fields = json.loads(canonical)
    call = {k: v for k, v in fields.items()
            if v is not None and k not in ("tenant", "v", "cost_source")}
    with Ledger(tmp_path / "data") as led:
        led.append(call, tenant=fields["tenant"])
        [event] = led.events(fields["tenant"], limit=1)
    assert event.cost_source == fields["cost_source"]
    assert event.leaf_hash == found["hash"]


# -- the checkers catch what is missing ----------------------------------------------------
def test_an_undocumented_command_is_caught() -> None:
    @click.group(help="A root.")
    def root() -> None: ...

    @root.command(help="Documented.")
    def known() -> None: ...

    @root.command()
    def secret() -> None: ...

    doc = "`llmring` and `llmring known`"
    assert undocumented_commands(root, doc) == [
        "llmring secret: no help text", "llmring secret: not in cli.md"]
    assert undocumented_commands(cli, CLI_DOC.read_text(encoding="utf-8")) == []


def test_an_undocumented_route_is_caught() -> None:
    app = FastAPI()

    @app.get("/known", summary="Documented")
    def known() -> None: ...

    @app.post("/secret")
    def secret() -> None: ...

    assert undocumented_routes(app, "`GET /known`") == [
        "POST /secret: no summary or docstring", "POST /secret: not in http-api.md"]
    with tempfile.TemporaryDirectory() as data_dir:
        assert undocumented_routes(create_app(Path(data_dir)),
                                   HTTP_DOC.read_text(encoding="utf-8")) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# The project's `log`\n## A, b\n## A, b\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#the-projects-log) [again](there.md#a-b-1) "
                    "[web](https://example.com) [anchor](#top) `[code](nowhere.md)` "
                    "[gone](missing.md) [no heading](there.md#nowhere)\n"
                    "```\n[fenced](nowhere.md)\n```\n")
    assert broken_links(page) == ["missing.md", "there.md#nowhere"]


@pytest.mark.skipif(shutil.which("date") is None, reason="no date command")
def test_the_monthly_crontab_line_names_last_month() -> None:
    """The crontab of docs/cli.md, run as cron would (``\\%`` is ``%``), gives the first
    and the last day of last month."""
    block = re.search(r"```crontab\n(.*?)```", (REPO / "docs/cli.md").read_text(), re.S)
    assert block, "docs/cli.md has no crontab block"
    monthly = next(line for line in block.group(1).splitlines() if "--start" in line)
    dates = re.findall(r'(\$\(date -d ".*?" \+\\%F\))', monthly)
    assert len(dates) == 2, monthly
    got = [subprocess.run(["bash", "-c", f"echo {d.replace(chr(92) + '%', '%')}"],
                          capture_output=True, text=True, check=True).stdout.strip()
           for d in dates]
    first_of_month = date.today().replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    assert got == [last_month_end.replace(day=1).isoformat(), last_month_end.isoformat()]
