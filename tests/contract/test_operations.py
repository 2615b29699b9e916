"""The operation table (``ledger.api.operations``) is the one definition of the HTTP API:
the server serves exactly its operations, at their method and path, and each is
answered by the ``LedgerService`` method it names, with its parameters as keywords."""

from __future__ import annotations

import inspect
from datetime import date, datetime
from pathlib import Path

import pytest

from ledger.api import operations as ops
from ledger.api.service import LedgerService
from ledger.server import create_app


def _routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every documented route but the operator's /health and /metrics
    (served by the app itself, not operations of the ledger)."""
    schema = create_app(tmp_path / "data").openapi()
    return {(method.upper(), path) for path, item in schema["paths"].items()
            for method in item if path not in ("/health", "/metrics")}


def test_the_server_serves_exactly_the_operations(tmp_path: Path) -> None:
    assert _routes(tmp_path) == {(op.method, op.path) for op in ops.OPERATIONS}


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_each_operation_names_a_service_method_taking_its_parameters(op: ops.Operation
                                                                     ) -> None:
    method = getattr(LedgerService, op.service)
    names = list(inspect.signature(method).parameters)[1:]  # after self
    if op.tenant:
        assert names[0] == "tenant"
        names = names[1:]
    assert {p.name for p in op.params} <= set(names), op.name
    assert op.summary and op.name == op.name.lower()


def test_a_call_is_encoded_for_http_from_the_table() -> None:
    path, query, body = ops.PROVE.http_request({"receipt_id": "r/1", "log_id": "l 2"})
    assert path == "/api/v1/receipts/r%2F1/proof/l%202" and query == {} and body is None
    path, query, body = ops.ROLLUP.http_request(
        {"by": ["model", "day"], "start": date(2025, 10, 1),
         "end": datetime(2025, 10, 2, 9, 30), "tz": None})
    assert query == {"by": "model,day", "start": "2025-10-01", "end": "2025-10-02T09:30:00"}
    _, _, body = ops.GENERATE_RECEIPT.http_request(
        {"log_ids": ("a", "b"), "since_last_receipt": False, "progress": print})
    assert body == {"log_ids": ["a", "b"], "since_last_receipt": False}
    _, _, body = ops.LOG_USAGE.http_request({"event": {"model": "m"}})
    assert body == {"model": "m"}
    assert ops.CHECKPOINT.http_request({}) == ("/api/v1/log/checkpoint", {}, None)


def test_unknown_parameters_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(TypeError, match="colour"):
        ops.LIST_LOGS.http_request({"colour": "red"})
