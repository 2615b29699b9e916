"""Property-based fuzzing of the server's OpenAPI schema with schemathesis, against a real
``llmring serve`` process: generated requests (valid and invalid, to every endpoint,
with a project's API key) never get a 5xx.

Each operation of the schema is one test; hypothesis drives schemathesis' strategy for it
(the schemathesis pytest plugin is not used: it does not support this pytest)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ledger.server import create_app
from tests.support import serverproc
from tests.support.serverproc import Server

EXAMPLES = 50


def _operations() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:  # the schema only: the app is not started
        paths = create_app(tmp).openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = serverproc.start(tmp_path_factory.mktemp("fuzz") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("method,path", _operations())
def test_no_generated_request_gets_a_server_error(api_schema: Any, fuzz_server: Server,
                                                  method: str, path: str,
                                                  mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    headers = fuzz_server.headers("alpha")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(base_url=fuzz_server.url, headers=headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: "
            f"{response.text[:500]}\n{case.as_curl_command()}")

    try:
        check()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("the operation takes no input, so no request to it is invalid")
