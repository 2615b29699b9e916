"""``llmring ledger migrate`` on a directory written before projects had their own units
(``tests/fixtures/dir-before-projects``, by ``tests/fixtures/make_dir_before_projects.py``
with commit 3111edd): the new code refuses to open it and names the command; the
migration keeps every log's size and root, so every receipt, proof bundle, inclusion
bundle and checkpoint saved before still verifies, the log only grew since each old
checkpoint, and new writes work. A directory that does not verify is not migrated, and
an interrupted migration is finished by running it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.core.migrate import migrate
from ledger.errors import IdConflictError, MigrationError, OldLayoutError
from ledger.storage.layout import DataDir
from tests.conftest import usage
from tests.support.cli import as_json, llmring
from tests.support.paths import FIXTURES

WRITTEN_BEFORE = FIXTURES / "dir-before-projects"
SAVED = orjson.loads((FIXTURES / "dir-before-projects.json").read_bytes())
PROJECTS = ("007", "7", "alpha")


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(WRITTEN_BEFORE, data)
    for path in [data, *data.rglob("*")]:  # git keeps no modes: as the writer left them
        path.chmod(0o700 if path.is_dir() else 0o600)
    return data


def _files(data: Path) -> dict[str, bytes]:
    """Every file's bytes (but the lock's, which holds the last opener's pid)."""
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file() and p.name != "LOCK"}


def _saved(tmp_path: Path, kind: str, project: str) -> Path:
    path = tmp_path / f"{kind}-{project}.json"
    path.write_bytes(orjson.dumps(SAVED[kind][project]))
    return path


def test_the_old_layout_is_refused_naming_the_migration_and_left_unchanged(
        old_dir: Path) -> None:
    before = _files(old_dir)
    with pytest.raises(OldLayoutError, match=r"llmring --data .* ledger migrate"):
        Ledger(old_dir, pricer=None)
    result = llmring(old_dir, "ledger", "stats")
    assert result.exit_code == 2 and "ledger migrate" in result.stderr
    assert _files(old_dir) == before  # no second layout beside the first


def test_migrate_keeps_every_receipt_proof_and_checkpoint_verifiable(
        old_dir: Path, tmp_path: Path) -> None:
    done = llmring(old_dir, "ledger", "migrate")
    assert done.exit_code == 0, done.output
    assert "before-projects/" in done.output
    layout = DataDir(old_dir)
    assert layout.project_names() == sorted(PROJECTS) and not layout.holds_legacy()
    assert (layout.before_projects / "manifest.jsonl").exists()  # kept aside
    report = verify_directory(old_dir)
    assert report.ok, report.problems
    assert {t: [v["size"], v["root"]] for t, v in report.tenants.items()} == SAVED["roots"]
    for project in PROJECTS:
        for kind in ("receipts", "proofs"):  # the receipt, and a call's proof bundle
            checked = as_json(llmring(old_dir, "receipts", "verify",
                                      str(_saved(tmp_path, kind, project)), "--json"))
            assert checked["valid"] is True, (project, kind, checked)
        checked = as_json(llmring(old_dir, "log", "verify-inclusion",
                                  str(_saved(tmp_path, "inclusions", project)), "--json"))
        assert checked["valid"] is True, checked
        grown = as_json(llmring(old_dir, "--project", project, "log", "consistency",
                                "--from", str(_saved(tmp_path, "checkpoints", project)),
                                "--json"))
        assert grown["consistent"] is True and grown["old_size"] == 9
    # Checkpoints and the witness's cosignature are the shared files, untouched.
    for folder in ("checkpoints", "cosignatures", "keys"):
        assert _files(old_dir / folder) == _files(WRITTEN_BEFORE / folder)


def test_a_migrated_directory_takes_new_writes_and_keeps_every_id(old_dir: Path) -> None:
    migrate(old_dir)
    with Ledger(old_dir, pricer=None, checkpoint_interval=None) as led:
        assert led.get("7", "7-tail") is not None  # unsealed before: sealed by migrate
        with pytest.raises(IdConflictError):  # an id taken before stays taken
            led.append(usage(event_id="007-1-1"), tenant="007")
        ack = led.append(usage(event_id="after"), tenant="7")
        assert ack.created and ack.seq == 9
        led.append(usage(event_id="new-project"), tenant="beta")
        assert led.tenants() == ["007", "7", "alpha", "beta"]
        assert led.size("007") == 9 and led.size("7") == 10
    assert verify_directory(old_dir).ok
    again = as_json(llmring(old_dir, "ledger", "migrate", "--json"))
    assert again["already"] is True


def test_a_directory_that_does_not_verify_is_not_migrated(old_dir: Path) -> None:
    segment = next((old_dir / "events" / "tenant=7").rglob("*.parquet"))
    segment.write_bytes(segment.read_bytes()[:-20] + bytes(20))
    before = _files(old_dir)
    with pytest.raises(MigrationError, match="does not verify"):
        migrate(old_dir)
    assert _files(old_dir) == before
    result = llmring(old_dir, "ledger", "migrate")
    assert result.exit_code == 1 and "not migrated" in result.stderr
    assert "Traceback" not in result.output


def test_an_interrupted_migration_is_finished_by_running_it_again(old_dir: Path) -> None:
    """Half-built units (a crash before the switch) are rebuilt; old files left at the
    top (a crash after it) are moved aside."""
    (old_dir / "projects" / "alpha").mkdir(parents=True)
    (old_dir / "projects" / "alpha" / "manifest.jsonl").write_bytes(b"half")
    migrate(old_dir)
    aside = DataDir(old_dir).before_projects
    (aside / "tree").rename(old_dir / "tree")  # as if the crash came right after the switch
    done = migrate(old_dir)
    assert done.already and not (old_dir / "tree").exists() and (aside / "tree").is_dir()
    assert verify_directory(old_dir).ok
    assert json.loads((old_dir / "projects" / "alpha" / "manifest.jsonl").read_text()
                      )["op"] == "migrate"
