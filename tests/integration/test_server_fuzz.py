"""Property-based fuzzing of the server's OpenAPI schema with schemathesis and every check it
has, against a real ``llmring serve`` process: generated requests (valid and invalid, to
every endpoint, with a project's API key) never get a 5xx, every answer has a documented
status, content type, headers and body (errors: the one error shape), invalid requests
are refused, valid ones accepted, and stateful sequences (links between operations)
keep their promises. The mismatches that are deliberate are listed, each with its
reason, in ``tests.support.schema_fuzz.DELIBERATE`` (docs/decisions.md) and excused
only for exactly that check, operation, status and error code.

The cases are derandomized (the same ones on every run of the same schema), so a red run
repeats and a green one is not luck; the long run (``python -m tests.support.schema_fuzz``)
explores fresh cases. Each operation of the schema is one test per generation mode;
hypothesis drives schemathesis' strategy for it (the schemathesis pytest plugin is not
used: it does not support this pytest)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import FailureGroup

from ledger.server import create_app
from tests.support import serverproc
from tests.support.schema_fuzz import deliberate
from tests.support.serverproc import Server

EXAMPLES = 40
load_all_checks()
ALL_CHECKS = CHECKS.get_all()


def _operations() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:  # the schema only: the app is not started
        paths = create_app(tmp).openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Budget webhooks only to this machine: a generated URL is never requested elsewhere.
    server = serverproc.start(tmp_path_factory.mktemp("fuzz") / "data",
                              extra=("--webhook-host", "127.0.0.1"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def validate(case: Any, response: Any, server: Server, headers: dict[str, str]) -> None:
    """Run every schemathesis check on the answer; raise the failures that are not
    deliberate."""
    try:
        case.validate_response(response, checks=ALL_CHECKS, headers=headers,
                               transport_kwargs={"base_url": server.url,
                                                 "headers": headers})
    except FailureGroup as group:
        body = _json(response)
        left = [f for f in group.exceptions
                if not any(deliberate(check, case.method.upper(), case.operation.path,
                                      response.status_code, body, case.body)
                           for check in f.checks)]
        if left:
            raise FailureGroup(left, str(group)) from None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("method,path", _operations())
def test_every_generated_request_gets_a_documented_answer(api_schema: Any,
                                                          fuzz_server: Server, method: str,
                                                          path: str,
                                                          mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    headers = fuzz_server.headers("alpha")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(base_url=fuzz_server.url, headers=headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: "
            f"{response.text[:500]}\n{case.as_curl_command()}")
        validate(case, response, fuzz_server, headers)

    try:
        check()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("the operation takes no input, so no request to it is invalid")


def test_stateful_sequences_keep_every_check(api_schema: Any, fuzz_server: Server) -> None:
    """Sequences following the links schemathesis finds between operations (an event
    logged, then read back, listed, certified …) pass every check, the stateful ones
    (use after free, resource availability) included."""
    headers = fuzz_server.headers("alpha")
    machine = api_schema.as_state_machine()

    class Sequences(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": fuzz_server.url, "headers": headers}

        def validate_response(self, response: Any, case: Any, *args: Any,
                              **kwargs: Any) -> None:
            assert response.status_code < 500, (response.status_code, response.text[:500])
            validate(case, response, fuzz_server, headers)

    Sequences.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None,
                                    derandomize=True,
                                    database=None, suppress_health_check=list(HealthCheck)))
