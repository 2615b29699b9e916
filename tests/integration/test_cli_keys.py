"""`llmring signing-keys list/rotate/export` and `llmring log checkpoint/verify-checkpoint`,
run with click's CliRunner on temporary data directories."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger import Ledger
from ledger.cli import cli
from ledger.tlog.checkpoint import parse_note
from tests.conftest import usage


def llmring(data: Path, *args: str, project: str | None = None) -> Result:
    """Run `llmring --data DATA [--project P] ARGS…` isolated from the environment."""
    runner = CliRunner(env={"LLMRING_LEDGER_DIR": None, "LLMRING_PROJECT": None,
                            "LLMRING_LEDGER_ORIGIN": None})
    head = ["--data", str(data)] + (["--project", project] if project else [])
    return runner.invoke(cli, [*head, *args], catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory whose `default` project has three events (and, with no
    checkpoint cadence, no signing key yet)."""
    path = tmp_path / "data"
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=f"e{n}") for n in range(3)], tenant="default")
    return path


def add_event(data: Path, event_id: str) -> None:
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        led.append(usage(event_id=event_id), tenant="default")


def checkpoint(data: Path, tmp_path: Path, name: str = "cp.txt") -> Path:
    path = tmp_path / name
    path.write_text(ok(llmring(data, "log", "checkpoint")).stdout)
    return path


# -- signing-keys ------------------------------------------------------------------------
def test_list_before_any_key_says_how_one_is_created(data: Path) -> None:
    result = ok(llmring(data, "signing-keys", "list"))
    assert "no signing keys" in result.stdout and "rotate" in result.stdout
    assert as_json(llmring(data, "signing-keys", "list", "--json")) == {"keys": []}


def test_rotate_creates_the_first_key_then_retires_it(data: Path) -> None:
    first = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    second = as_json(llmring(data, "signing-keys", "rotate", "--json"))
    assert second["retired"] == first["key_id"]
    keys = as_json(llmring(data, "signing-keys", "list", "--json"))["keys"]
    assert [(k["key_id"], k["status"]) for k in keys] == [
        (first["key_id"], "retired"), (second["current"]["key_id"], "current")]


def test_list_shows_a_table_of_the_keys(data: Path) -> None:
    ok(llmring(data, "signing-keys", "rotate"))
    ok(llmring(data, "signing-keys", "rotate"))
    out = ok(llmring(data, "signing-keys", "list")).stdout
    for header in ("key id", "name", "status", "created", "retired"):
        assert header in out
    assert "current" in out and "retired" in out and "llmring-ledger.local" in out


def test_keys_are_named_after_the_ledger_origin(data: Path) -> None:
    (data / "config.json").write_text(json.dumps({"origin": "ledger.example"}))
    key = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    assert key["name"] == "ledger.example"


def test_the_private_key_file_is_mode_0600(data: Path) -> None:
    key = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    mode = stat.S_IMODE((data / "keys" / f"{key['key_id']}.key").stat().st_mode)
    assert mode == 0o600


def test_export_prints_the_current_key_as_pem(data: Path) -> None:
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    pem = ok(llmring(data, "signing-keys", "export")).stdout
    loaded = serialization.load_pem_public_key(pem.encode())
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == _raw_hex(key["public_key"])


def _raw_hex(b64url: str) -> str:
    import base64

    return base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4)).hex()


def test_export_json_lists_every_key_to_a_file(data: Path, tmp_path: Path) -> None:
    ok(llmring(data, "signing-keys", "rotate"))
    ok(llmring(data, "signing-keys", "rotate"))
    out = tmp_path / "keys.json"
    ok(llmring(data, "signing-keys", "export", "--format", "json", "-o", str(out)))
    assert len(json.loads(out.read_text())["keys"]) == 2


def test_export_vkey_prints_the_c2sp_verifier_key(data: Path) -> None:
    key = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    vkey = ok(llmring(data, "signing-keys", "export", "--format", "vkey")).stdout.strip()
    assert vkey.startswith(f"llmring-ledger.local+{key['key_id']}+")


def test_export_vkey_lists_every_key_current_first(data: Path) -> None:
    """A verifier who missed a rotation still gets the keys that signed older
    checkpoints: one verifier key a line, the current one first, then the retired ones,
    newest first."""
    from ledger.tlog.signing import parse_vkey

    first = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    second = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    third = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    lines = ok(llmring(data, "signing-keys", "export", "--format", "vkey")).stdout
    assert lines.endswith("\n")
    keys = [parse_vkey(line) for line in lines.splitlines()]
    assert [k.key_id for k in keys] == [third["key_id"], second["key_id"], first["key_id"]]
    assert all(k.name == "llmring-ledger.local" for k in keys)


def test_export_without_a_key_is_a_usage_error(data: Path) -> None:
    result = llmring(data, "signing-keys", "export")
    assert result.exit_code == 2 and "no signing keys" in result.stderr


# -- log checkpoint ----------------------------------------------------------------------
def test_checkpoint_prints_a_signed_note_of_the_projects_log(data: Path) -> None:
    note = ok(llmring(data, "log", "checkpoint")).stdout
    with Ledger(data, pricer=None) as led:
        size, root = led.size("default"), led.root("default")
    parsed = parse_note(note)
    lines = parsed.text.splitlines()
    assert lines[0] == "llmring-ledger.local/default"
    assert int(lines[1]) == size == 3
    assert parsed.signatures[0].name == "llmring-ledger.local"
    assert as_json(llmring(data, "log", "checkpoint", "--json"))["root"] == root.hex()


def test_checkpoint_of_an_unchanged_log_is_the_same_checkpoint(data: Path) -> None:
    first = as_json(llmring(data, "log", "checkpoint", "--json"))
    assert as_json(llmring(data, "log", "checkpoint", "--json")) == first
    add_event(data, "e-new")
    grown = as_json(llmring(data, "log", "checkpoint", "--json"))
    assert grown["size"] == 4 and grown["note"] != first["note"]


def test_checkpoint_is_per_project(data: Path) -> None:
    out = as_json(llmring(data, "log", "checkpoint", "--json", project="other"))
    assert (out["origin"], out["size"]) == ("llmring-ledger.local/other", 0)


def test_checkpoint_without_a_ledger_is_a_usage_error(tmp_path: Path) -> None:
    result = llmring(tmp_path / "none", "log", "checkpoint")
    assert result.exit_code == 2 and "no ledger" in result.stderr


def test_checkpoint_with_a_missing_private_key_says_what_to_do(data: Path) -> None:
    key = as_json(llmring(data, "signing-keys", "rotate", "--json"))["current"]
    (data / "keys" / f"{key['key_id']}.key").unlink()
    result = llmring(data, "log", "checkpoint")
    assert result.exit_code == 2
    assert "missing" in result.stderr and "signing-keys rotate" in result.stderr


# -- log verify-checkpoint ---------------------------------------------------------------
def test_verify_checkpoint_with_the_data_directory_keys(data: Path, tmp_path: Path) -> None:
    cp = checkpoint(data, tmp_path)
    result = ok(llmring(data, "log", "verify-checkpoint", str(cp)))
    assert "OK" in result.stdout and "llmring-ledger.local/default" in result.stdout
    out = as_json(llmring(data, "log", "verify-checkpoint", str(cp), "--json"))
    assert out["valid"] is True and out["size"] == 3


@pytest.mark.parametrize("fmt", ["pem", "json", "vkey"])
def test_verify_checkpoint_offline_with_an_exported_key(data: Path, tmp_path: Path,
                                                        fmt: str) -> None:
    cp = checkpoint(data, tmp_path)
    key = tmp_path / f"key.{fmt}"
    ok(llmring(data, "signing-keys", "export", "--format", fmt, "-o", str(key)))
    elsewhere = tmp_path / "empty-data"
    ok(llmring(elsewhere, "log", "verify-checkpoint", str(cp), "--public-key", str(key)))


def test_verify_checkpoint_reads_the_json_output_too(data: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    cp.write_text(ok(llmring(data, "log", "checkpoint", "--json")).stdout)
    ok(llmring(data, "log", "verify-checkpoint", str(cp)))


def test_a_checkpoint_of_a_retired_key_still_verifies(data: Path, tmp_path: Path) -> None:
    cp = checkpoint(data, tmp_path)
    ok(llmring(data, "signing-keys", "rotate"))
    add_event(data, "e-new")
    ok(llmring(data, "log", "checkpoint"))
    ok(llmring(data, "log", "verify-checkpoint", str(cp)))


def test_a_tampered_checkpoint_fails_with_exit_1(data: Path, tmp_path: Path) -> None:
    cp = checkpoint(data, tmp_path)
    cp.write_text(cp.read_text().replace("\n3\n", "\n4\n", 1))
    result = llmring(data, "log", "verify-checkpoint", str(cp))
    assert result.exit_code == 1
    assert "does not verify" in result.stderr and str(cp) in result.stderr
    out = json.loads(llmring(data, "log", "verify-checkpoint", str(cp), "--json").stdout)
    assert out["valid"] is False and "does not verify" in out["error"]


def test_a_checkpoint_signed_by_another_key_fails_with_exit_1(data: Path,
                                                              tmp_path: Path) -> None:
    cp = checkpoint(data, tmp_path)
    other = tmp_path / "other-data"
    ok(llmring(other, "signing-keys", "rotate"))
    result = llmring(other, "log", "verify-checkpoint", str(cp))
    assert result.exit_code == 1 and "signed by none of the given keys" in result.stderr


def test_a_malformed_checkpoint_fails_with_exit_1(data: Path, tmp_path: Path) -> None:
    ok(llmring(data, "signing-keys", "rotate"))
    cp = tmp_path / "cp.txt"
    cp.write_text("not a note\n")
    result = llmring(data, "log", "verify-checkpoint", str(cp))
    assert result.exit_code == 1 and "no blank line" in result.stderr


def test_verify_checkpoint_can_require_an_origin(data: Path, tmp_path: Path) -> None:
    cp = checkpoint(data, tmp_path)
    ok(llmring(data, "log", "verify-checkpoint", str(cp), "--origin",
               "llmring-ledger.local/default"))
    result = llmring(data, "log", "verify-checkpoint", str(cp), "--origin", "x/y")
    assert result.exit_code == 1 and "not 'x/y'" in result.stderr


def test_verify_checkpoint_with_an_unreadable_key_file_is_a_usage_error(
        data: Path, tmp_path: Path) -> None:
    cp = checkpoint(data, tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_text("hello\n")
    result = llmring(data, "log", "verify-checkpoint", str(cp), "--public-key", str(bad))
    assert result.exit_code == 2 and "not a public key file" in result.stderr


def test_verify_checkpoint_without_any_key_asks_for_one(tmp_path: Path) -> None:
    cp = tmp_path / "cp.txt"
    cp.write_text("o\n1\nAA==\n\n— k AAAAAAAA\n")
    result = llmring(tmp_path / "none", "log", "verify-checkpoint", str(cp))
    assert result.exit_code == 2 and "--public-key" in result.stderr
