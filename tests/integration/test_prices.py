"""Price overrides against a real ``llmring serve`` process, managed with the CLI through
``--server``: a project's negotiated rates with two effective dates and a discount price
its calls (logged over HTTP) to the nano-dollar, the receipt of those calls carries the
override price_ids and verifies offline, ``llmring prices show`` explains a price and a
stored event, a bad file is refused with nothing changed, and another project keeps the
packaged prices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ledger.model.pricing import GENAI_PRICES_VERSION
from tests.support import serverproc
from tests.support.serverproc import Server

ROWS = [
    {"provider": "openai", "model": "gpt-4o", "since": "2026-01-01", "input": "2.00",
     "output": "8.00"},
    {"provider": "openai", "model": "gpt-4o", "since": "2026-06-01", "input": "1.5",
     "cached_input": "0.75", "output": "6", "request": "0.0001"},
    {"provider": "openai", "model": "gpt-4o-mini*", "discount": "15"},
]
CALL = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_003,
        "cached_input_tokens": 200_001, "output_tokens": 77_777}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("prices") / "data",
                           projects=("acme", "other"))
    try:
        yield srv
    finally:
        srv.stop()


def llmring(server: Server, project: str, *args: str, check: bool = True) -> Any:
    return serverproc.cli(server.data, "--server", server.url, "--api-key",
                          server.keys[project], *args, check=check)


def as_json(server: Server, project: str, *args: str) -> Any:
    return orjson.loads(llmring(server, project, *args, "--json").stdout)


def test_overrides_price_calls_and_the_receipt_verifies(server: Server,
                                                        tmp_path: Path) -> None:
    rows_file = tmp_path / "prices.json"
    rows_file.write_bytes(orjson.dumps({"rows": ROWS}))
    imported = as_json(server, "acme", "prices", "import", str(rows_file))
    ids = {(r["model"], r["since"]): r["id"] for r in imported["set"]}
    listed = as_json(server, "acme", "prices", "list")
    assert {r["id"] for r in listed["rows"]} == set(ids.values())

    with httpx.Client(base_url=server.url, headers=server.headers("acme"), timeout=30) as api:
        answer = api.post("/api/v1/log/batch", json={"events": [
            {**CALL, "event_id": "jan", "ts": "2026-05-31T23:59:59Z"},
            {**CALL, "event_id": "jun", "ts": "2026-06-01T00:00:00Z"},
            {**CALL, "event_id": "mini", "model": "gpt-4o-mini-2024-07-18",
             "ts": "2026-06-01T00:00:00Z"}]})
        assert answer.status_code == 200, answer.text
        costs = [log["cost_nanos"] for log in answer.json()["logs"]]
        stored = {e: api.get(f"/api/v1/logs/{e}").json() for e in ("jan", "jun", "mini")}
    # (1,000,003 × 2 + 77,777 × 8) / 10⁶ USD, then (800,002 × 1.5 + 200,001 × 0.75 +
    # 77,777 × 6) / 10⁶ + 0.0001 USD, then the packaged price × 0.85
    assert costs[:2] == [2_622_222_000, 1_816_765_750]
    packaged = as_json(server, "other", "prices", "show", "gpt-4o-mini-2024-07-18",
                       "--provider", "openai", "--at", "2026-06-01", "--input", "1000003",
                       "--cached-input", "200001", "--output", "77777")
    assert packaged["source"] == "packaged" and packaged["price_id"].startswith(
        f"genai-prices/{GENAI_PRICES_VERSION}/openai/")
    assert costs[2] == round(packaged["cost_nanos"] * 85 / 100)  # no tie here
    assert stored["jan"]["price_id"] == (
        f"override/acme/{ids[('gpt-4o', '2026-01-01')]}/openai/gpt-4o;since=2026-01-01")
    assert stored["jun"]["price_id"] == (
        f"override/acme/{ids[('gpt-4o', '2026-06-01')]}/openai/gpt-4o;since=2026-06-01")
    assert stored["mini"]["price_id"] == (
        f"{packaged['price_id']};discount=15%;override=acme/{ids[('gpt-4o-mini*', None)]}")

    made = as_json(server, "acme", "receipts", "generate", "--since-last")
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_bytes(orjson.dumps(made["receipt"]))
    assert made["receipt"]["total_cost_nanos"] == sum(costs)
    # offline: the data directory's public keys, no server
    assert serverproc.cli(server.data, "receipts", "verify", str(receipt_file)).returncode == 0
    for event_id, event in stored.items():  # each call's proof carries its price_id
        bundle = tmp_path / f"{event_id}.proof.json"
        llmring(server, "acme", "receipts", "prove", made["receipt"]["receipt_id"], "--log",
                event_id, "-o", str(bundle))
        assert orjson.loads(bundle.read_bytes())["event"]["price_id"] == event["price_id"]
        assert serverproc.cli(server.data, "receipts", "verify", str(bundle)).returncode == 0

    shown = llmring(server, "acme", "prices", "show", "gpt-4o", "--provider", "openai",
                    "--at", "2026-06-01", "--input", "1000003", "--cached-input", "200001",
                    "--output", "77777").stdout
    assert "in force from 2026-06-01" in shown and "request fee: 0.0001 USD" in shown
    assert "1816765750 nano-USD" in shown and stored["jun"]["price_id"] in shown
    explained = llmring(server, "acme", "prices", "show", "--log-id", "mini").stdout
    assert "matches: recomputed" in explained and "discount 15%" in explained


def test_a_bad_file_changes_nothing_and_other_projects_keep_packaged_prices(
        server: Server, tmp_path: Path) -> None:
    before = as_json(server, "acme", "prices", "list")
    bad = tmp_path / "bad.json"
    for rows in ([ROWS[0], {**ROWS[0], "input": "3"}], [{**ROWS[0], "input": 2.1}]):
        bad.write_bytes(orjson.dumps(rows))
        result = llmring(server, "acme", "prices", "import", str(bad), check=False)
        assert result.returncode == 2, rows
        assert result.stderr.startswith("Error: the server refused (422): rows["), rows
        assert "Traceback" not in result.stderr
    assert as_json(server, "acme", "prices", "list") == before
    other = as_json(server, "other", "prices", "show", "gpt-4o", "--provider", "openai",
                    "--input", "1000", "--output", "100")
    assert other["source"] == "packaged" and other["override"] is None
    assert other["price_id"] == f"genai-prices/{GENAI_PRICES_VERSION}/openai/gpt-4o"
