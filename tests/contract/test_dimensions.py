"""Cost by who on both transports (local ``LedgerService`` and a real ``llmring serve``):
rollups by metadata keys, declared dimensions, exports and receipts filtered by metadata,
and bad keys or filters refused alike with nothing changed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ledger.api import operations as ops
from tests.contract import test_api as contract
from tests.contract.test_api import CALL, plain, refused

# The contract's fixtures: a real server and a local service, one project per case.
server, service, side = contract.server, contract.service, contract.side
_counter = iter(range(10**6))


@pytest.fixture
def project(side: contract.Side) -> Any:
    """The API of a project no other case writes to, on either transport."""
    return side.api_for(f"dims{next(_counter)}-{side.kind}")

CUSTOMERS = ["acme", "beta", "acme", None, "beta", "acme"]


def _log(project: Any) -> list[str]:
    events = [{**CALL, "cost": (i + 1) / 1000,
               "metadata": {"customer": c} if c is not None else {"team": "x"}}
              for i, c in enumerate(CUSTOMERS)]
    return [a["log_id"] for a in project.call(ops.LOG_BATCH, events=events)["logs"]]


def test_rollup_by_a_metadata_key_with_a_filter(project: Any) -> None:
    _log(project)
    answer = plain(project.call(ops.ROLLUP, by=["meta.customer", "model"]))
    rows = {r["meta.customer"]: (r["calls"], r["cost_nanos"]) for r in answer["rows"]}
    assert rows == {"acme": (3, 10_000_000), "beta": (2, 7_000_000), None: (1, 4_000_000)}
    bare = plain(project.call(ops.ROLLUP, by=["customer"], where={"customer": "beta"}))
    assert bare["where"] == {"customer": "beta"}
    assert [(r["customer"], r["calls"]) for r in bare["rows"]] == [("beta", 2)]


def test_declared_dimensions_are_set_and_read(project: Any) -> None:
    assert project.call(ops.DIMENSIONS)["dimensions"] == []
    set_ = project.call(ops.SET_DIMENSIONS, keys=["customer", "team", "customer"])
    assert set_["dimensions"] == ["customer", "team"]
    _log(project)
    rows = project.call(ops.ROLLUP, by=["customer"])["rows"]
    assert sum(r["calls"] for r in rows) == len(CUSTOMERS)
    assert refused(lambda: project.call(ops.SET_DIMENSIONS, keys=[""])).status == 400
    assert project.call(ops.DIMENSIONS)["dimensions"] == ["customer", "team"]


def test_export_filtered_by_metadata(project: Any) -> None:
    _log(project)
    lines = project.call(ops.EXPORT, format="jsonl", where={"customer": "acme"}).splitlines()
    assert [orjson.loads(orjson.loads(x)["metadata"]) for x in lines] == \
        [{"customer": "acme"}] * 3


def test_a_per_customer_receipt_over_either_transport(project: Any) -> None:
    ids = _log(project)
    acme = {i for i, c in zip(ids, CUSTOMERS, strict=True) if c == "acme"}
    preview = project.call(ops.PREVIEW_RECEIPT, since_last_receipt=True,
                       where={"customer": "acme"})
    assert preview["total_logs"] == 3 and preview["total_cost_nanos"] == 10_000_000
    made = project.call(ops.GENERATE_RECEIPT, since_last_receipt=True, where={"customer": "acme"})
    receipt = made["receipt"]
    assert receipt["scope"] == {"mode": "since_last", "where": {"customer": "acme"}}
    logs = project.call(ops.RECEIPT_LOGS, receipt_id=receipt["receipt_id"])["logs"]
    assert {log["id"] for log in logs} == acme
    bundle = project.call(ops.PROVE, receipt_id=receipt["receipt_id"], log_id=sorted(acme)[0])
    assert project.call(ops.VERIFY_RECEIPT, document=bundle)["valid"] is True
    assert project.call(ops.UNCERTIFIED)["total"] == len(CUSTOMERS) - 3


def test_a_bad_filter_is_refused_and_writes_nothing(project: Any) -> None:
    _log(project)
    for where in ({"customer": 3}, {"": "x"}, {"k\x07": "x"}, "acme"):
        err = refused(lambda w=where: project.call(ops.GENERATE_RECEIPT, since_last_receipt=True,
                                               where=w))
        assert err.status == 400 and err.code == "invalid_receipt_request", err.detail
    assert project.call(ops.LIST_RECEIPTS)["total"] == 0
    assert project.call(ops.UNCERTIFIED)["total"] == len(CUSTOMERS)
