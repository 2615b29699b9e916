"""API keys: created once, stored as hashes, one project each, revocable, re-read when
the file changes (so keys made while the server runs take effect)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from ledger.api.apikeys import ApiKeyError, ApiKeyStore
from ledger.cli.main import cli
from ledger.model.tenant import TenantError


def test_a_new_key_is_high_entropy_and_stored_only_as_its_hash(tmp_path: Path) -> None:
    key, record = ApiKeyStore(tmp_path).create("acme")
    assert key.startswith("llr_") and len(key) == 4 + 43
    text = (tmp_path / "api-keys.json").read_text()
    assert key not in text
    assert record.sha256 == hashlib.sha256(key.encode()).hexdigest() and record.sha256 in text


def test_the_key_file_is_private(tmp_path: Path) -> None:
    ApiKeyStore(tmp_path).create("acme")
    assert (tmp_path / "api-keys.json").stat().st_mode & 0o077 == 0


def test_a_key_authenticates_as_its_project(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    key_a, _ = store.create("acme")
    key_b, _ = store.create("globex")
    assert store.authenticate(key_a).project == "acme"
    assert store.authenticate(key_b).project == "globex"


@pytest.mark.parametrize("given", [None, "", "llr_nope", "x" * 5000, "ключ"])
def test_unknown_or_malformed_keys_do_not_authenticate(tmp_path: Path, given: str | None
                                                       ) -> None:
    ApiKeyStore(tmp_path).create("acme")
    assert ApiKeyStore(tmp_path).authenticate(given) is None


def test_a_revoked_key_stops_authenticating_in_a_store_already_reading(tmp_path: Path
                                                                       ) -> None:
    serving = ApiKeyStore(tmp_path)
    key, record = ApiKeyStore(tmp_path).create("acme")
    assert serving.authenticate(key) is not None
    ApiKeyStore(tmp_path).revoke(record.key_id)
    assert serving.authenticate(key) is None


def test_a_key_created_later_is_seen_by_a_store_already_reading(tmp_path: Path) -> None:
    serving = ApiKeyStore(tmp_path)
    assert serving.authenticate("llr_x") is None
    key, _ = ApiKeyStore(tmp_path).create("acme")
    assert serving.authenticate(key) is not None


def test_a_key_can_be_revoked_by_the_key_itself(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    key, _ = store.create("acme")
    assert store.revoke(key).revoked_at is not None


def test_revoking_an_unknown_key_says_how_to_find_ids(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError, match="keys list"):
        ApiKeyStore(tmp_path).revoke("key_nothere")


def test_a_key_needs_a_valid_project_name(tmp_path: Path) -> None:
    with pytest.raises(TenantError):
        ApiKeyStore(tmp_path).create("../etc")


def test_a_damaged_key_file_is_reported_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "api-keys.json").write_text("{oops")
    with pytest.raises(ApiKeyError, match="restore it"):
        ApiKeyStore(tmp_path).keys()


def test_cli_create_prints_the_key_once_and_list_never_shows_it(tmp_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["--data", str(tmp_path), "keys", "create", "--project",
                                  "acme", "--name", "ci"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("llr_")
    listed = runner.invoke(cli, ["--data", str(tmp_path), "keys", "list", "--json"])
    keys = orjson.loads(listed.stdout)["keys"]
    assert keys[0]["project"] == "acme" and keys[0]["status"] == "active"
    assert key not in listed.stdout


def test_cli_revoke_marks_the_key_revoked(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["--data", str(tmp_path), "keys", "create", "--project", "acme"])
    key_id = ApiKeyStore(tmp_path).keys()[0].key_id
    result = runner.invoke(cli, ["--data", str(tmp_path), "keys", "revoke", key_id])
    assert result.exit_code == 0
    assert ApiKeyStore(tmp_path).keys()[0].revoked_at is not None


def test_cli_revoke_of_an_unknown_key_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data", str(tmp_path), "keys", "revoke", "key_x"])
    assert result.exit_code == 2
    assert "keys list" in result.output


@pytest.mark.parametrize("name", ["acme\n", "acme\r\n", "\nacme", "ac\x7fme", "acme\u200b"])
def test_a_project_name_is_matched_whole(tmp_path: Path, name: str) -> None:
    """A trailing newline (or any character outside the name's alphabet) is refused, not
    let through by a pattern anchored with ``$``."""
    with pytest.raises(TenantError):
        ApiKeyStore(tmp_path).create(name)
