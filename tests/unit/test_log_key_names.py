"""Per-log key names (C2SP tlog-checkpoint: the key name SHOULD be the log's origin): a
directory created with ``LLMRING_LOG_KEY_NAMES=1`` signs each log's checkpoints with its
key under the log's origin; a directory created without keeps signing under the ledger
origin, whatever the environment says later; the ledger-named key still verifies both
(its holder alone can sign either), and no other name is taken for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.cli import cli as cli_main
from ledger.core.audit import verify_directory
from ledger.core.facade import Ledger
from ledger.tlog.checkpoint import (
    NoteSignature,
    Verifier,
    parse_note,
    verify_checkpoint,
)
from ledger.tlog.signing import PublicKeyInfo, SigningKey, key_id, parse_vkey

ORIGIN = "llmring-ledger.local"


def event(i: int) -> dict[str, object]:
    return {"model": "m", "provider": "p", "input_tokens": i, "output_tokens": 1,
            "cost_nanos": 5}


def checkpoint_after(data: Path, n: int) -> tuple[str, PublicKeyInfo]:
    with Ledger(data) as led:
        led.append_many([event(i) for i in range(n)], tenant="alpha")
        signed = led.checkpoint("alpha")
        info = led.notary.keyring.current_info()
    assert info is not None
    return signed.note, info


def test_a_new_directory_can_sign_each_log_under_its_origin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMRING_LOG_KEY_NAMES", "1")
    note, info = checkpoint_after(tmp_path / "data", 3)
    (sig,) = parse_note(note).signatures
    assert sig.name == f"{ORIGIN}/alpha"
    assert sig.key_hash == key_id(f"{ORIGIN}/alpha", info.public_key)
    assert info.name == ORIGIN  # the key ring (and receipts) keep the ledger's name
    per_log = PublicKeyInfo.of(f"{ORIGIN}/alpha", info.public_key)
    verify_checkpoint(note, [Verifier.from_vkey(per_log.vkey())])  # exact, as x/mod's note
    verify_checkpoint(note, [Verifier.from_info(info)])  # the ledger's published key
    assert verify_directory(tmp_path / "data").ok


def test_export_vkey_names_the_projects_log_in_such_a_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMRING_LOG_KEY_NAMES", "1")
    note, info = checkpoint_after(tmp_path / "data", 1)
    result = CliRunner().invoke(cli_main, ["--data", str(tmp_path / "data"), "--project",
                                           "alpha", "signing-keys", "export", "--format",
                                           "vkey"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    key = parse_vkey(line)
    assert key.name == f"{ORIGIN}/alpha" and key.public_key == info.public_key
    verify_checkpoint(note, [Verifier.from_vkey(line)])


def test_an_existing_directory_keeps_its_key_names(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint_after(tmp_path / "data", 2)
    monkeypatch.setenv("LLMRING_LOG_KEY_NAMES", "1")  # too late: config.json decides
    note, _ = checkpoint_after(tmp_path / "data", 2)
    assert [s.name for s in parse_note(note).signatures] == [ORIGIN]
    assert "log_key_names" not in (tmp_path / "data" / "config.json").read_text()


@pytest.mark.parametrize("name", [f"{ORIGIN}x/alpha", "other.example/alpha", "alpha",
                                  f"{ORIGIN}"])
def test_a_ledger_key_vouches_only_for_names_below_its_own(name: str) -> None:
    key = SigningKey.generate(ORIGIN)
    other = SigningKey.generate(ORIGIN)  # same name, another key
    line = NoteSignature(name, key_id(name, key.info.public_key), b"\0" * 64)
    assert Verifier.from_info(key.info).matches(line) == (name == ORIGIN)
    assert not Verifier.from_info(other.info).matches(line)
