"""A data directory written before the restructuring (commit 0aecc9c, by
``tests/fixtures/make_dir_0aecc9c.py``) verifies as it is and, converted by ``llmring
ledger migrate`` (it predates per-project units too), opens with the same roots, the same events,
its receipt and checkpoints verify, its journal tail is replayed, its API key still works,
and it accepts appends that verify too. The stored format and every hash are unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import IdConflictError, Ledger
from ledger.api.apikeys import ApiKeyStore
from ledger.cli import cli
from ledger.core.audit import verify_directory
from ledger.core.migrate import migrate
from tests.conftest import usage
from tests.support.paths import FIXTURES

WRITTEN_BY_0AECC9C = FIXTURES / "dir-0aecc9c"
ROOTS = {  # the roots 0aecc9c's `llmring ledger verify` printed for this directory
    "acme": (28, "63e6a667943522e67056c2de6be0f08fdb3c6d5903110930a96e6f3b4406577b"),
    "beta": (1, "3d0680bed683f42cabbc6f0db7478e53115718c72f1793c50353847a11314bf4"),
}


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(WRITTEN_BY_0AECC9C, data)
    for path in [data, *data.rglob("*")]:  # git keeps no modes: as the writer left them
        path.chmod(0o700 if path.is_dir() else 0o600)
    return data


@pytest.fixture
def migrated(old_dir: Path) -> Path:
    migrate(old_dir)
    return old_dir


def _cli(data: Path, *args: str) -> tuple[int, str]:
    runner = CliRunner(env={"LLMRING_LEDGER_DIR": None, "LLMRING_PROJECT": None})
    result = runner.invoke(cli, ["--data", str(data), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_the_old_directory_verifies_before_it_is_opened(old_dir: Path) -> None:
    report = verify_directory(old_dir)
    assert report.ok, report.failures


def test_the_old_directory_opens_with_the_same_logs_and_roots(migrated: Path) -> None:
    with Ledger(migrated, pricer=None, checkpoint_interval=None) as led:
        for tenant, (size, root) in ROOTS.items():
            assert led.size(tenant) == size
            assert led.root(tenant).hex() == root
        tail = led.get("acme", "tail-2")  # acknowledged, never sealed: replayed
        assert tail is not None and tail.output_tokens == 12
        assert led.get("acme", "client-4").cost_nanos == 12_300_000


def test_the_old_directory_accepts_appends_and_still_verifies(migrated: Path) -> None:
    old_dir = migrated
    with Ledger(old_dir, pricer=None, checkpoint_interval=None) as led:
        ack = led.append(usage(event_id="after-the-change"), tenant="acme")
        assert ack.created and ack.seq == 28
        with pytest.raises(IdConflictError):  # an id taken before the change stays taken
            led.append(usage(event_id="tail-0", model="x"), tenant="acme")
        led.flush()
        assert led.size("acme") == 29
    code, out = _cli(old_dir, "ledger", "verify")
    assert code == 0, out
    assert "OK" in out


def test_the_old_receipt_and_api_key_still_work(migrated: Path) -> None:
    old_dir = migrated
    code, out = _cli(old_dir, "--project", "acme", "receipts", "list", "--json")
    assert code == 0, out
    assert "November, first days" in out
    secret = (old_dir / "API_KEY.txt").read_text().strip()
    key = ApiKeyStore(old_dir).authenticate(secret)
    assert key is not None and key.project == "acme"
