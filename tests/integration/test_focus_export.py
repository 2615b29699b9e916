"""FOCUS exports from a real ``llmring serve``: the CSV and Parquet FOCUS files of a project
with priced, unpriced, client-costed and provider-costed calls, some certified by a
receipt, pass the FinOps ``focus-validator`` package's checks for every column they claim
(``tests.support.focus_validator``: validator 1.0.0, FOCUS 1.0 rules, the newest it has),
sum to the ledger's total to the nano-dollar, and each certified row's ``x_ReceiptId`` and
``x_LeafHash`` verify against that receipt's proof bundle."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from ledger import Ledger
from ledger.api import operations as ops
from ledger.api.refusals import LedgerHTTPError
from ledger.api.transport import HttpTransport
from ledger.cli import cli
from ledger.receipts.verification import verify_bundle
from ledger.tlog.signing import parse_public_keys_json
from tests.support import focus_validator, serverproc
from tests.support.serverproc import Server

CALLS = [  # across a month boundary, so two billing periods
    {"event_id": "priced-1", "ts": "2025-10-31T23:59:59.250Z", "provider": "openai",
     "model": "gpt-4o-mini", "alias": "fast", "input_tokens": 1000, "output_tokens": 200,
     "metadata": {"customer": "acme"}},
    {"event_id": "unpriced-1", "ts": "2025-11-01T00:00:00Z", "provider": "acme-ai",
     "model": "mystery-1", "input_tokens": 10, "output_tokens": 2},
    {"event_id": "client-1", "ts": "2025-11-02T10:00:00Z", "provider": "anthropic",
     "model": "claude-sonnet-4", "alias": "smart", "input_tokens": 5, "output_tokens": 5,
     "cost": "0.000101700"},
    {"event_id": "provider-1", "ts": "2025-11-03T10:00:00Z", "provider": "openai",
     "model": "gpt-4o", "input_tokens": 7, "output_tokens": 9, "cost": "1234.567890123",
     "cost_source": "provider"},
    {"event_id": "priced-2", "ts": "2025-11-04T10:00:00Z", "provider": "openai",
     "model": "gpt-4o-mini", "input_tokens": 3, "output_tokens": 1},
]
CERTIFIED = ["priced-1", "client-1"]
# FOCUS 1.2 names of columns that validator 1.0.0's rules know by their pre-1.0 FOCUS
# names; a copy of the export with those names added lets its checks read them too.
RENAMED = {"InvoiceIssuerName": "InvoiceIssuer", "ProviderName": "Provider",
           "PublisherName": "Publisher", "ChargeCategory": "ChargeType"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("focus") / "data", projects=("acme",))
    try:
        api = HttpTransport(srv.url, srv.keys["acme"])
        api.call(ops.LOG_BATCH, events=CALLS)
        api.call(ops.GENERATE_RECEIPT, log_ids=CERTIFIED)
        api.close()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator[HttpTransport]:
    transport = HttpTransport(server.url, server.keys["acme"])
    try:
        yield transport
    finally:
        transport.close()


def _export(api: HttpTransport, fmt: str) -> bytes:
    return bytes(api.call(ops.EXPORT, format=fmt))


def _rows(api: HttpTransport, fmt: str) -> list[dict[str, Any]]:
    data = _export(api, fmt)
    if fmt == "focus-csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _with_validator_names(table: pa.Table) -> pa.Table:
    for name, old in RENAMED.items():
        table = table.append_column(old, table.column(name))
    return table


@pytest.mark.parametrize("fmt", ["focus-csv", "focus-parquet"])
def test_the_validator_passes_every_column_the_export_claims(api: HttpTransport, fmt: str,
                                                             tmp_path: Path) -> None:
    """Every check of focus-validator on a column the export has passes; the only checks
    that fail are "column is required" for columns it does not claim (docs/formats.md:
    commitment discounts, unit prices, regions, resources, sub-accounts). Validator 1.0.0
    knows four columns by their pre-1.0 FOCUS names (``RENAMED``): it runs on the
    export as it is, then on a copy that also has those names, so every check it has for
    a claimed column reads that column."""
    data = _export(api, fmt)
    ext = "csv" if fmt == "focus-csv" else "parquet"
    if ext == "csv":  # as text, so the copy keeps every value as exported
        header = next(csv.reader(io.StringIO(data.decode())))
        table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in header}, strings_can_be_null=True))
    else:
        table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == len(CALLS)
    claimed = set(table.column_names) | set(RENAMED.values())
    plain = tmp_path / f"focus.{ext}"
    plain.write_bytes(data)
    as_exported = _failures(focus_validator.validate(plain))
    copy = tmp_path / f"focus-1.0-names.{ext}"
    if ext == "csv":
        pacsv.write_csv(_with_validator_names(table), copy)
    else:
        pq.write_table(_with_validator_names(table), copy)
    checks = focus_validator.validate(copy)
    assert len(checks) > 100 and checks["BilledCost_IsDecimal"] is None
    failed = _failures(checks)
    assert all(name.endswith("_Required") for name in failed), failed
    unclaimed = {name.removesuffix("_Required") for name in failed}
    assert unclaimed == {
        "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
        "CommitmentDiscountStatus", "CommitmentDiscountType", "ContractedUnitPrice",
        "ListUnitPrice", "RegionId", "RegionName", "ResourceID", "ResourceName",
        "ResourceType", "SubAccountId", "SubAccountName"}
    assert not unclaimed & claimed
    # As exported, only the checks of the old names fail on top (SkuPriceId's reads
    # ChargeType, the pre-1.0 name of ChargeCategory).
    assert as_exported - failed == {f"{old}_Required" for old in RENAMED.values()
                                    if old != "ChargeType"} | {"SkuPriceId_Nullable"}


def _failures(checks: dict[str, str | None]) -> set[str]:
    return {name for name, message in checks.items() if message is not None}


def test_billed_cost_sums_to_the_ledger_total_to_the_nano_dollar(api: HttpTransport) -> None:
    """CSV costs are exact decimals; Parquet's doubles give back the nanos exactly."""
    total = api.call(ops.STATS)["cost_nanos"]
    rows = _rows(api, "focus-csv")
    assert sum(Decimal(r["BilledCost"]) for r in rows) * 10**9 == total
    assert {r["BilledCost"] for r in rows} >= {"1234.567890123", "0.000101700",
                                                "0.000000000"}
    for r in rows:
        assert r["BilledCost"] == r["EffectiveCost"] == r["ListCost"] == r["ContractedCost"]
    parquet = _rows(api, "focus-parquet")
    assert sum(round(r["BilledCost"] * 1e9) for r in parquet) == total


def test_rows_say_what_each_call_was(api: HttpTransport) -> None:
    """One row per call in log order: periods in UTC, tokens, SKU, price and cost source."""
    rows = {r["x_EventId"]: r for r in _rows(api, "focus-csv")}
    assert list(rows) == [c["event_id"] for c in CALLS]
    first = rows["priced-1"]
    assert (first["ChargePeriodStart"], first["ChargePeriodEnd"]) == (
        "2025-10-31T23:59:59Z", "2025-11-01T00:00:00Z")
    assert (first["BillingPeriodStart"], first["BillingPeriodEnd"]) == (
        "2025-10-01T00:00:00Z", "2025-11-01T00:00:00Z")
    assert rows["unpriced-1"]["BillingPeriodStart"] == "2025-11-01T00:00:00Z"
    assert first["ConsumedQuantity"] == first["PricingQuantity"] == "1200.0"
    assert (first["x_InputTokens"], first["x_OutputTokens"], first["x_Alias"]) == (
        "1000", "200", "fast")
    assert first["SkuId"] == "openai/gpt-4o-mini" and first["SkuPriceId"].endswith(
        "openai/gpt-4o-mini") and first["x_CostSource"] == "price_table"
    assert first["Tags"] == '{"customer":"acme"}'
    assert rows["unpriced-1"]["SkuPriceId"] == "unpriced:acme-ai/mystery-1"
    assert rows["client-1"]["SkuPriceId"] == "client:anthropic/claude-sonnet-4"
    assert rows["provider-1"]["ProviderName"] == "openai"
    assert {r["ChargeCategory"] for r in rows.values()} == {"Usage"}
    assert {r["ChargeClass"] for r in rows.values()} == {""}  # null: not a correction


@pytest.mark.parametrize("fmt", ["focus-csv", "focus-parquet"])
def test_receipt_columns_verify_against_the_receipts_proof(api: HttpTransport,
                                                           fmt: str) -> None:
    """A certified row's x_ReceiptId names a receipt whose proof bundle for x_EventId
    verifies offline with the ledger's public keys and hashes to x_LeafHash; an
    uncertified row has no x_ReceiptId."""
    keys = parse_public_keys_json(api.call(ops.PUBLIC_KEYS))
    rows = _rows(api, fmt)
    certified = [r for r in rows if r["x_ReceiptId"]]
    assert sorted(r["x_EventId"] for r in certified) == sorted(CERTIFIED)
    assert len({r["x_ReceiptId"] for r in certified}) == 1
    for row in certified:
        bundle = api.call(ops.PROVE, receipt_id=row["x_ReceiptId"], log_id=row["x_EventId"])
        result = verify_bundle(bundle, keys)
        assert result.valid, result
        assert f"leaf hash {row['x_LeafHash']}" in result.checks
    for row in rows:
        assert len(row["x_LeafHash"]) == 64
        if row["x_EventId"] not in CERTIFIED:
            assert not row["x_ReceiptId"]


def test_an_unknown_format_is_refused_naming_the_choices(api: HttpTransport) -> None:
    with pytest.raises(LedgerHTTPError) as refused:
        api.call(ops.EXPORT, format="focus")
    assert refused.value.status == 422 and "focus-csv" in str(refused.value)


# -- llmring usage export ------------------------------------------------------------------
def _llmring(*args: str) -> Result:
    runner = CliRunner(env={"LLMRING_LEDGER_DIR": None, "LLMRING_PROJECT": None,
                            "LLMRING_API_KEY": None})
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_the_cli_exports_through_the_server_what_the_route_answers(
        api: HttpTransport, server: Server, tmp_path: Path) -> None:
    """`llmring --server URL usage export --format focus-csv -o FILE` writes the route's
    answer."""
    out = tmp_path / "focus.csv"
    result = _llmring("--server", server.url, "--api-key", server.keys["acme"], "usage",
                      "export", "--format", "focus-csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == _export(api, "focus-csv")


def test_the_cli_exports_a_data_directory_in_a_window(tmp_path: Path) -> None:
    """Locally the export streams from the data directory; --start/--end (days of --tz)
    select calls by ts; a bad format or window is a usage error (exit 2) that writes
    nothing."""
    data = tmp_path / "data"
    with Ledger(data) as led:
        led.append_many(CALLS)
    out = tmp_path / "november.csv"
    result = _llmring("--data", str(data), "usage", "export", "--format", "focus-csv",
                      "--tz", "UTC", "--start", "2025-11-01", "--end", "2025-11-02",
                      "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["x_EventId"] for r in rows] == ["unpriced-1", "client-1"]
    assert {r["BillingAccountId"] for r in rows} == {"default"}
    jsonl = _llmring("--data", str(data), "usage", "export")
    assert jsonl.exit_code == 0 and len(jsonl.stdout.splitlines()) == len(CALLS)
    for bad in (["--format", "focus"], ["--start", "2025-11-02", "--end", "2025-11-01"]):
        refused = _llmring("--data", str(data), "usage", "export", *bad,
                           "-o", str(tmp_path / "bad.csv"))
        assert refused.exit_code == 2 and not (tmp_path / "bad.csv").exists()
    assert not list(tmp_path.glob("*.part"))
