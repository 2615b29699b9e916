"""``llmring`` and cost by who: declared dimensions, reports by metadata keys, exports
and per-customer receipts filtered with ``--where``, verified offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import Ledger
from tests.conftest import usage
from tests.support.cli import as_json, llmring

CUSTOMERS = ["acme", "beta", None, "acme", "beta", "acme"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    with Ledger(path, pricer=None) as led:
        led.append_many([usage(ts=f"2025-10-0{i + 1}T12:00:00Z", cost=f"0.00{i + 1}",
                               metadata={"customer": c} if c else {"team": "ml"})
                         for i, c in enumerate(CUSTOMERS)])
    return path


def test_report_by_customer_model_and_day(data: Path) -> None:
    assert "customer" in llmring(data, "usage", "dimensions", "set", "customer").output
    assert as_json(llmring(data, "usage", "dimensions", "show", "--json"))["dimensions"] == \
        ["customer"]
    out = as_json(llmring(data, "usage", "report", "--by", "customer,model,day", "--tz",
                          "UTC", "--json"))
    assert [(r["customer"], r["day"], r["cost_nanos"]) for r in out["rows"]][:2] == [
        ("acme", "2025-10-01", 1_000_000), ("acme", "2025-10-04", 4_000_000)]
    assert out["rows"][-1]["customer"] is None
    assert out["total"]["cost_nanos"] == 21_000_000
    table = llmring(data, "usage", "report", "--by", "meta.customer", "--tz", "UTC")
    assert table.exit_code == 0 and "(none)" in table.output
    csv = llmring(data, "usage", "report", "--by", "customer", "--csv", "--tz", "UTC")
    assert csv.output.splitlines()[1:] == [
        "acme,3,3600,900,4500,0.011000000,0", "beta,2,2400,600,3000,0.007000000,0",
        ",1,1200,300,1500,0.003000000,0"]
    only = as_json(llmring(data, "usage", "report", "--by", "model", "--where",
                           "customer=beta", "--json", "--tz", "UTC"))
    assert only["where"] == {"customer": "beta"} and only["total"]["calls"] == 2


def test_export_where(data: Path) -> None:
    out = llmring(data, "usage", "export", "--where", "customer=acme", "--tz", "UTC")
    assert out.exit_code == 0 and len(out.output.splitlines()) == 3


def test_a_per_customer_invoice_verifies_offline(data: Path, tmp_path: Path) -> None:
    out = as_json(llmring(data, "receipts", "generate", "--start", "2025-10-01", "--end",
                          "2025-10-31", "--tz", "UTC", "--where", "customer=acme", "--json"))
    receipt = out["receipt"]
    assert out["certified_count"] == 3 and receipt["total_cost_nanos"] == 11_000_000
    assert receipt["scope"]["where"] == {"customer": "acme"}
    shown = llmring(data, "receipts", "preview", "--since-last", "--where", "customer=beta")
    assert "customer=beta" in shown.output and "2 calls" in shown.output
    rid = receipt["receipt_id"]
    log_id = as_json(llmring(data, "receipts", "logs", rid, "--json"))["logs"][1]["id"]
    bundle = tmp_path / "proof.json"
    assert llmring(data, "receipts", "prove", rid, "--log", log_id, "-o",
                   str(bundle)).exit_code == 0
    from ledger.tlog.signing import load_public_keys

    pem = tmp_path / "ledger.pem"
    pem.write_text(load_public_keys(data / "keys" / "keys.json")[0].pem())
    ok = llmring(tmp_path / "elsewhere", "receipts", "verify", str(bundle), "--public-key",
                 str(pem), "--json")
    assert ok.exit_code == 0, ok.output
    assert "the event is within the receipt's scope" in json.loads(ok.output)["checks"]


@pytest.mark.parametrize("args", [("--where", "customer"), ("--where", "=acme"),
                                  ("--where", "a\x01=b")])
def test_a_bad_filter_exits_2_and_writes_nothing(data: Path, args: tuple[str, ...]) -> None:
    bad = llmring(data, "receipts", "generate", "--since-last", *args)
    assert bad.exit_code == 2 and "Error:" in bad.output
    report = llmring(data, "usage", "report", "--by", "model", *args)
    assert report.exit_code == 2
    assert as_json(llmring(data, "receipts", "list", "--json"))["total"] == 0
