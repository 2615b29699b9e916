"""The examples (the users' guide's patterns as scripts) run against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import serverproc
from tests.support.paths import EXAMPLES
from tests.support.serverproc import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serverproc.start(tmp_path_factory.mktemp("examples") / "data",
                           projects=("demo", "demo-b"))
    try:
        yield srv
    finally:
        srv.stop()


def run_example(server: Server, name: str, cwd: Path, *args: str) -> str:
    env = {**os.environ, "LLMRING_SERVER_URL": server.url,
           "LLMRING_API_KEY": server.keys["demo"], "LLMRING_API_KEY_B": server.keys["demo-b"]}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("name,expected", [
    ("conversation_receipt.py", "Certified 1 call"),
    ("daily_batch.py", "By model:"),
    ("monthly_billing.py", "Total calls:"),
    ("cost_tracking.py", "Uncertified cost:"),
    ("multi_project.py", "Project B: demo-b"),
])
def test_an_example_runs_against_the_server(server: Server, tmp_path: Path, name: str,
                                            expected: str) -> None:
    assert expected in run_example(server, name, tmp_path)


def test_the_accounting_export_writes_a_csv_invoice(server: Server, tmp_path: Path) -> None:
    out = run_example(server, "export_for_accounting.py", tmp_path, str(tmp_path))
    assert "Receipt ID: rcpt_" in out
    (invoice,) = tmp_path.glob("llmring_invoice_*.csv")
    assert "TOTAL" in invoice.read_text()


def test_the_audit_example_proves_a_call_offline(server: Server, tmp_path: Path) -> None:
    out = run_example(server, "audit_proof.py", tmp_path, str(tmp_path))
    assert ": valid" in out
    verified = serverproc.cli(tmp_path / "none", "receipts", "verify",
                              str(tmp_path / "proof.json"), "--public-key",
                              str(tmp_path / "ledger.pem"), check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
