"""``llmring receipts …`` against a real server (``--server URL --api-key KEY`` or
``LLMRING_SERVER_URL`` / ``LLMRING_API_KEY``): same commands, the project from the key,
no data directory needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result

from ledger.cli.main import cli
from tests.support import serverproc
from tests.support.serverproc import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("cli") / "data")
    httpx.post(srv.url + "/api/v1/log/batch", headers=srv.headers("alpha"), json={"events": [
        {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "cost": 0.01}
        for _ in range(4)]})
    try:
        yield srv
    finally:
        srv.stop()


def llmring(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    # --data points nowhere: with --server, no data directory is opened
    return CliRunner().invoke(cli, ["--data", str(tmp_path / "none"), *args], env=env)


def remote(server: Server, project: str = "alpha") -> list[str]:
    return ["--server", server.url, "--api-key", server.keys[project]]


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_generate_and_read_receipts_through_the_server(server: Server, tmp_path: Path
                                                       ) -> None:
    preview = as_json(llmring(tmp_path, *remote(server), "receipts", "preview",
                              "--since-last", "--json"))
    assert preview["total_logs"] == 4
    result = as_json(llmring(tmp_path, *remote(server), "receipts", "generate",
                             "--since-last", "--description", "Daily", "--json"))
    rid = result["receipt"]["receipt_id"]
    assert result["certified_count"] == 4
    assert as_json(llmring(tmp_path, *remote(server), "receipts", "get", rid, "--json")
                   )["receipt_id"] == rid
    assert as_json(llmring(tmp_path, *remote(server), "receipts", "logs", rid, "--json")
                   )["total"] == 4
    listed = llmring(tmp_path, *remote(server), "receipts", "list")
    assert rid in listed.stdout
    assert not (tmp_path / "none").exists()


def test_the_environment_names_the_server_and_key(server: Server, tmp_path: Path) -> None:
    env = {"LLMRING_SERVER_URL": server.url, "LLMRING_API_KEY": server.keys["beta"]}
    page = as_json(llmring(tmp_path, "receipts", "uncertified", "--json", env=env))
    assert page["total"] == 0  # beta has logged nothing: the key chose the project


def test_group_options_work_after_receipts(server: Server, tmp_path: Path) -> None:
    page = as_json(llmring(tmp_path, "receipts", *remote(server), "uncertified", "--json"))
    assert set(page) >= {"logs", "total", "limit", "offset"}


def test_a_proof_from_the_server_verifies_offline_with_its_pem(server: Server,
                                                               tmp_path: Path) -> None:
    httpx.post(server.url + "/api/v1/log", headers=server.headers("alpha"),
               json={"provider": "openai", "model": "gpt-4o", "cost": 0.2})
    result = as_json(llmring(tmp_path, *remote(server), "receipts", "generate",
                             "--since-last", "--json"))
    rid = result["receipt"]["receipt_id"]
    log_id = as_json(llmring(tmp_path, *remote(server), "receipts", "logs", rid, "--json")
                     )["logs"][0]["id"]
    proof = tmp_path / "proof.json"
    prove = llmring(tmp_path, *remote(server), "receipts", "prove", rid, "--log", log_id,
                    "-o", str(proof))
    assert prove.exit_code == 0, prove.output
    pem = tmp_path / "ledger.pem"
    pem.write_text(httpx.get(server.url + "/receipts/public-key.pem").text)
    ok = llmring(tmp_path, "receipts", "verify", str(proof), "--public-key", str(pem))
    assert ok.exit_code == 0 and ok.stdout.startswith("OK")
    with_server_keys = llmring(tmp_path, "--server", server.url, "receipts", "verify",
                               str(proof))
    assert with_server_keys.exit_code == 0, with_server_keys.output


def test_a_wrong_key_is_a_usage_error_saying_so(server: Server, tmp_path: Path) -> None:
    result = llmring(tmp_path, "--server", server.url, "--api-key", "llr_wrong",
                     "receipts", "list")
    assert result.exit_code == 2
    assert "401" in result.output and "--api-key" in result.output


def test_a_server_without_a_key_is_a_usage_error(server: Server, tmp_path: Path) -> None:
    result = llmring(tmp_path, "--server", server.url, "receipts", "list",
                     env={"LLMRING_API_KEY": ""})
    assert result.exit_code == 2
    assert "--api-key" in result.output


def test_a_quiet_day_through_the_server_exits_0_and_strict_exits_2(server: Server,
                                                                   tmp_path: Path) -> None:
    """Through ``llmring serve``: `generate --since-last` of a project with no logs says
    the project has no logs and exits 0 (the server's ``nothing_to_certify`` code);
    with --strict it is the server's refusal, exit 2; preview answers zeros."""
    key = serverproc.create_key(server.data, "quietday")
    args = ["receipts", "--server", server.url, "--api-key", key]
    quiet = llmring(tmp_path, *args, "generate", "--since-last")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.strip() == ("nothing new to certify: project 'quietday' has no "
                                    "logs (is the project name right?)")
    strict = llmring(tmp_path, *args, "generate", "--since-last", "--strict")
    assert strict.exit_code == 2 and "server refused (400)" in strict.output
    assert "has no logs" in strict.output
    preview = as_json(llmring(tmp_path, *args, "preview", "--since-last", "--json"))
    assert (preview["total_logs"], preview["total_cost_nanos"]) == (0, 0)


def test_a_server_error_detail_reaches_the_user(server: Server, tmp_path: Path) -> None:
    result = llmring(tmp_path, *remote(server), "receipts", "generate", "--start",
                     "2025-10-31", "--end", "2025-10-01")
    assert result.exit_code == 2
    assert "before" in result.output


def test_no_server_at_the_url_is_reported(tmp_path: Path) -> None:
    result = llmring(tmp_path, "--server", f"http://127.0.0.1:{serverproc.free_port()}",
                     "--api-key", "llr_x", "receipts", "list")
    assert result.exit_code == 2
    assert "cannot reach the server" in result.output


# -- every command that makes sense, through the server ------------------------------------
def _calls(path: Path, n: int, prefix: str) -> Path:
    path.write_text("".join(orjson.dumps(
        {"event_id": f"{prefix}-{i}", "provider": "openai", "model": "gpt-4o-mini",
         "input_tokens": 100, "output_tokens": 10, "cost": 0.5}).decode() + "\n"
        for i in range(n)))
    return path


def test_ingest_report_checkpoint_and_uncertified_name_the_keys_project(
        server: Server, tmp_path: Path) -> None:
    key = serverproc.create_key(server.data, "gamma")
    through = ["--server", server.url, "--api-key", key]
    calls = _calls(tmp_path / "calls.jsonl", 3, "g")
    ingested = llmring(tmp_path, *through, "ingest", str(calls))
    assert ingested.exit_code == 0, ingested.output
    assert "gamma" in ingested.stdout and "default" not in ingested.stdout
    again = as_json(llmring(tmp_path, *through, "ingest", str(calls), "--json"))
    assert again == {**again, "project": "gamma", "read": 3, "created": 0, "repeats": 3}
    report = llmring(tmp_path, *through, "usage", "report")
    assert report.exit_code == 0, report.output
    assert "Usage of gamma by model" in report.stdout and "$1.5000" in report.stdout
    rows = as_json(llmring(tmp_path, *through, "usage", "report", "--json"))
    assert rows["project"] == "gamma" and rows["total"]["calls"] == 3
    note = llmring(tmp_path, *through, "log", "checkpoint")
    assert note.exit_code == 0, note.output
    assert note.stdout.splitlines()[0].endswith("/gamma") and note.stdout.splitlines()[1] == "3"
    uncertified = llmring(tmp_path, *through, "receipts", "uncertified")
    assert uncertified.exit_code == 0, uncertified.output
    assert "Uncertified calls of gamma" in uncertified.stdout
    assert not (tmp_path / "none").exists()


def test_record_stats_consistency_and_inclusion_through_the_server(server: Server,
                                                                   tmp_path: Path) -> None:
    key = serverproc.create_key(server.data, "delta")
    through = ["--server", server.url, "--api-key", key]
    saved = tmp_path / "cp.json"
    recorded = as_json(llmring(tmp_path, *through, "record", "--provider", "openai",
                               "--model", "gpt-4o", "--cost", "0.25", "--event-id", "d-1",
                               "--json"))
    assert recorded["project"] == "delta" and recorded["event_id"] == "d-1"
    assert recorded["cost_nanos"] == 250_000_000 and recorded["created"] is True
    saved.write_bytes(llmring(tmp_path, *through, "log", "checkpoint", "--json").stdout_bytes)
    llmring(tmp_path, *through, "record", "--provider", "openai", "--model", "gpt-4o",
            "--cost", "0.25")
    proof = as_json(llmring(tmp_path, *through, "log", "consistency", "--from", str(saved),
                            "--json"))
    assert proof["consistent"] is True and proof["old_size"] == 1 and proof["new_size"] == 2
    assert proof["origin"].endswith("/delta")
    bundle = tmp_path / "inclusion.json"
    made = llmring(tmp_path, *through, "log", "inclusion", "d-1", "-o", str(bundle))
    assert made.exit_code == 0, made.output
    checked = as_json(llmring(tmp_path, *through, "log", "verify-inclusion", str(bundle),
                              "--json"))
    assert checked["valid"] is True and checked["event_id"] == "d-1"
    stats = as_json(llmring(tmp_path, *through, "ledger", "stats", "--json"))
    assert list(stats["projects"]) == ["delta"] and stats["projects"]["delta"]["events"] == 2
    table = llmring(tmp_path, *through, "ledger", "stats")
    assert table.exit_code == 0 and "delta" in table.stdout


@pytest.mark.parametrize("command", [
    ["ledger", "verify"], ["ledger", "compact"], ["ledger", "flush"], ["keys", "list"],
    ["signing-keys", "rotate"], ["demo"], ["serve"]])
def test_data_directory_commands_refuse_the_server_clearly(server: Server, tmp_path: Path,
                                                           command: list[str]) -> None:
    result = llmring(tmp_path, *remote(server), *command)
    assert result.exit_code == 2
    assert "data directory only" in result.output and "--server" in result.output


def test_signing_keys_list_and_export_show_the_servers_keys(server: Server,
                                                            tmp_path: Path) -> None:
    published = httpx.get(server.url + "/api/v1/receipts/public-keys.json").json()
    listed = as_json(llmring(tmp_path, *remote(server), "signing-keys", "list", "--json"))
    assert [k["key_id"] for k in listed["keys"]] == [k["key_id"] for k in published["keys"]]
    pem = llmring(tmp_path, *remote(server), "signing-keys", "export")
    assert pem.exit_code == 0 and pem.stdout == httpx.get(
        server.url + "/receipts/public-key.pem").text


def test_witness_cosignatures_are_stored_through_the_server(server: Server,
                                                            tmp_path: Path) -> None:
    through = ["--server", server.url, "--api-key", serverproc.create_key(server.data, "eps")]
    llmring(tmp_path, *through, "record", "--provider", "openai", "--model", "gpt-4o",
            "--cost", "0.1")
    first = tmp_path / "first.note"
    first.write_text(llmring(tmp_path, *through, "log", "checkpoint").stdout)
    wit = ["witness", "--dir", str(tmp_path / "witness")]
    assert llmring(tmp_path, *wit, "init", "--name", "witness.example/w1").exit_code == 0
    keys = tmp_path / "keys.json"
    llmring(tmp_path, *through, "signing-keys", "export", "--format", "json", "-o", str(keys))
    origin = first.read_text().splitlines()[0]
    assert llmring(tmp_path, *wit, "add-log", origin, "--public-key", str(keys)
                   ).exit_code == 0
    held = tmp_path / "held.note"
    cosigned = llmring(tmp_path, *wit, "cosign", "--checkpoint", str(first), "-o", str(held))
    assert cosigned.exit_code == 0, cosigned.output
    vkey = llmring(tmp_path, *wit, "key").stdout.strip()
    added = as_json(llmring(tmp_path, *through, "log", "add-cosignature", str(held),
                            "--witness-key", vkey, "--json"))
    assert added == {"added": ["witness.example/w1"]}
    served = as_json(llmring(tmp_path, *through, "log", "checkpoint", "--json"))
    assert "witness.example/w1" in served["note"]
    refused = llmring(tmp_path, *through, "log", "add-cosignature", str(first))
    assert refused.exit_code == 2 and "the server refused (400)" in refused.output
