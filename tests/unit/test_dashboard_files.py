"""The dashboard's routes serve its files from inside the installed package without an API
key, with a Content-Security-Policy that lets no inline or foreign script run; any other
name is the API's usual 404; and no page or script of the dashboard holds an inline
script, an inline event handler or ``innerHTML`` (what the CSP and the key's safety in
sessionStorage rely on)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ledger.server import create_app
from ledger.server.dashboard import ASSETS, STATIC


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path_factory.mktemp("data"))) as client:
        yield client


@pytest.mark.parametrize("path", ["/", *(f"/dashboard/{name}" for name in ASSETS),
                                  "/dashboard/plotly.min.js"])
def test_every_file_is_served_without_a_key_under_a_strict_policy(http: TestClient,
                                                                  path: str) -> None:
    answer = http.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(("text/html", "text/javascript",
                                                      "text/css"))
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_plotly_comes_from_the_installed_package(http: TestClient) -> None:
    installed = resources.files("plotly").joinpath("package_data", "plotly.min.js")
    assert http.get("/dashboard/plotly.min.js").content == installed.read_bytes()
    assert not list(Path(STATIC).glob("plotly*"))  # not copied into the repository


@pytest.mark.parametrize("name", ["nope.js", "..%2F__init__.py", "__init__.py",
                                  "widgetbundle.js"])
def test_any_other_name_is_a_404(http: TestClient, name: str) -> None:
    answer = http.get(f"/dashboard/{name}")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


def test_the_page_asks_for_the_key_in_a_password_field_not_remembered(http: TestClient
                                                                      ) -> None:
    page = http.get("/").text
    field = re.search(r"<input id=\"api-key\"[^>]*>", page, re.S)
    assert field is not None
    assert 'type="password"' in field.group(0) and 'autocomplete="off"' in field.group(0)


@pytest.mark.parametrize("name", ASSETS)
def test_no_inline_script_handler_or_innerhtml(name: str) -> None:
    text = (STATIC / name).read_text()
    if name.endswith(".html"):
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "an inline script"
        assert not re.search(r"\son[a-z]+\s*=", text), "an inline event handler"
    assert "innerHTML" not in text
    assert not re.search(r"localStorage\s*[.\[]|document\.cookie", text)
    assert not re.search(r"console\.[a-z]", text)  # nothing, the key least of all
