"""The OpenAPI schema documents every error status of every operation, derived from the
operation table (``Operation.errors()``, docs/http-api.md): each route lists exactly
the statuses of the error classes its operation can answer with, each with the one
error body (``ErrorOut``) and its codes, and FastAPI's own validation body is gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.api.operations import OPERATIONS, Operation
from ledger.errors import (
    AuthenticationError,
    IdConflictError,
    InternalError,
    InvalidRequestError,
    ReceiptRequestError,
    RequestTooLargeError,
)
from ledger.server import create_app

REF = "#/components/schemas/ErrorOut"


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return create_app(Path(tmp_path_factory.mktemp("schema"))).openapi()


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_each_operation_documents_the_statuses_of_its_errors(schema: dict[str, Any],
                                                             op: Operation) -> None:
    responses = schema["paths"][op.path][op.method.lower()]["responses"]
    statuses = {cls.status for cls in op.errors()}
    assert {int(s) for s in responses} - {200} == statuses
    for cls in op.errors():
        documented = responses[str(cls.status)]
        assert documented["content"]["application/json"]["schema"] == {"$ref": REF}
        assert f"`{cls.code}`" in documented["description"]


def test_errors_follow_from_the_operation() -> None:
    by_name = {op.name: op for op in OPERATIONS}
    assert IdConflictError in by_name["log_usage"].errors()
    assert ReceiptRequestError in by_name["generate_receipt"].errors()
    assert RequestTooLargeError in by_name["log_batch"].errors()
    assert RequestTooLargeError not in by_name["list_logs"].errors()
    assert AuthenticationError not in by_name["verify_receipt"].errors()
    assert InvalidRequestError not in by_name["stats"].errors()
    assert all(InternalError in op.errors() for op in OPERATIONS)


def test_fastapis_validation_body_is_not_in_the_schema(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text
    assert set(schema["components"]["schemas"]["ErrorOut"]["required"]) == {"detail", "code"}


def test_the_uncertified_listing_documents_its_totals(schema: dict[str, Any]) -> None:
    ok = schema["paths"]["/api/v1/receipts/uncertified"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert {"logs", "total", "limit", "offset", "total_cost", "total_cost_nanos",
            "unpriced_logs"} <= set(fields)
    assert fields["total_cost"]["type"] == "string"
