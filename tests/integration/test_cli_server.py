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
