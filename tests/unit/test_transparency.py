"""A saved checkpoint is evidence: the log must extend it, and a truncated, rewritten or
forked log is reported as tampering (library and `llmring log consistency`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import cli
from ledger.storage.config import ledger_origin
from ledger.tlog.checkpoint import Verifier
from ledger.tlog.consistency import TamperEvidence, check_extends, prove_extends
from ledger.tlog.signing import KeyRing
from tests.conftest import usage


def _verifiers(path: Path) -> list[Verifier]:
    infos = KeyRing(path / "keys", ledger_origin(path)).keys()
    return [Verifier.from_info(i) for i in infos]


def _append(path: Path, ids: list[str], tenant: str = "default") -> None:
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=e) for e in ids], tenant=tenant)


def _checkpoint(path: Path, tenant: str = "default"):
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        return led.checkpoint(tenant)


def _consistency(path: Path, saved: Path, *extra: str):
    return CliRunner().invoke(cli, ["--data", str(path), "log", "consistency", "--from",
                                    str(saved), *extra])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "data"
    _append(p, [f"e{i}" for i in range(5)])
    return p


def test_a_grown_log_extends_the_saved_checkpoint(path: Path) -> None:
    old = _checkpoint(path)
    _append(path, [f"f{i}" for i in range(7)])
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        bundle = prove_extends(led, "default", old.checkpoint)
    new = check_extends(old.checkpoint, bundle, _verifiers(path))
    assert (new.size, old.checkpoint.size) == (12, 5)


def test_an_unchanged_log_extends_its_own_checkpoint(path: Path) -> None:
    old = _checkpoint(path)
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        bundle = prove_extends(led, "default", old.checkpoint)
    assert check_extends(old.checkpoint, bundle, _verifiers(path)) == old.checkpoint
    assert bundle["proof"] == []


def test_a_log_rebuilt_with_other_events_is_a_fork(path: Path, tmp_path: Path) -> None:
    kept = _checkpoint(path)  # a client kept this checkpoint of the honest log
    forked = tmp_path / "forked"
    shutil.copytree(path / "keys", forked / "keys")  # the operator keeps the signing key
    shutil.copy(path / "config.json", forked / "config.json")
    _append(forked, [f"x{i}" for i in range(9)])  # same size and more, other history
    with (Ledger(forked, pricer=None, checkpoint_interval=None) as led,
          pytest.raises(TamperEvidence, match="rewritten")):
        prove_extends(led, "default", kept.checkpoint)


def test_a_forged_proof_for_a_forked_log_is_refused_by_the_client(path: Path,
                                                                   tmp_path: Path) -> None:
    kept = _checkpoint(path)
    forked = tmp_path / "forked"
    shutil.copytree(path / "keys", forked / "keys")
    shutil.copy(path / "config.json", forked / "config.json")
    _append(forked, [f"x{i}" for i in range(9)])
    with Ledger(forked, pricer=None, checkpoint_interval=None) as led:
        # A dishonest server answers with the fork's proof from its own size-5 state.
        from ledger.tlog.consistency import FORMAT

        signed = led.checkpoint("default")
        proof = led.tree("default").consistency_proof(5, 9)
    bundle = {"format": FORMAT, "new": signed.note, "proof": [h.hex() for h in proof]}
    with pytest.raises(TamperEvidence, match="does not extend"):
        check_extends(kept.checkpoint, bundle, _verifiers(path))


def test_a_truncated_log_is_reported(path: Path, tmp_path: Path) -> None:
    kept = _checkpoint(path)
    smaller = tmp_path / "smaller"
    shutil.copytree(path / "keys", smaller / "keys")
    shutil.copy(path / "config.json", smaller / "config.json")
    _append(smaller, ["e0", "e1", "e2"])
    with (Ledger(smaller, pricer=None, checkpoint_interval=None) as led,
          pytest.raises(TamperEvidence, match="removed")):
        prove_extends(led, "default", kept.checkpoint)


def test_cli_consistency_ok_and_writes_the_new_checkpoint(path: Path, tmp_path: Path) -> None:
    saved = tmp_path / "cp.txt"
    saved.write_text(_checkpoint(path).note)
    _append(path, ["g1", "g2"])
    out = tmp_path / "proof.json"
    result = _consistency(path, saved, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "extends your checkpoint" in result.output
    bundle = json.loads(out.read_text())
    assert bundle["old"]["size"] == 5 and bundle["new"].splitlines()[1] == "7"


def test_cli_consistency_reports_tampering_and_exits_1(path: Path, tmp_path: Path) -> None:
    saved = tmp_path / "cp.txt"
    saved.write_text(_checkpoint(path).note)
    forked = tmp_path / "forked"
    shutil.copytree(path / "keys", forked / "keys")
    shutil.copy(path / "config.json", forked / "config.json")
    _append(forked, [f"x{i}" for i in range(9)])
    result = _consistency(forked, saved, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["consistent"] is False


def test_cli_consistency_refuses_an_unsigned_or_altered_checkpoint(path: Path,
                                                                   tmp_path: Path) -> None:
    note = _checkpoint(path).note
    lines = note.split("\n")
    lines[1] = "4"  # claim another size under the same signature
    saved = tmp_path / "cp.txt"
    saved.write_text("\n".join(lines))
    result = _consistency(path, saved)
    assert result.exit_code == 1
    assert "does not verify" in result.output


# -- one event's inclusion in the log at a signed checkpoint -----------------------------
def test_an_events_inclusion_at_the_current_checkpoint_verifies(path: Path) -> None:
    from ledger.tlog.consistency import check_inclusion, prove_inclusion

    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        bundle = prove_inclusion(led, "default", "e3")
    cp = check_inclusion(bundle, _verifiers(path))
    assert (bundle["leaf_index"], cp.size) == (3, 5)


def test_inclusion_at_an_earlier_signed_size(path: Path) -> None:
    from ledger.tlog.consistency import check_inclusion, prove_inclusion

    _checkpoint(path)  # signed at size 5
    _append(path, ["later"])
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        bundle = prove_inclusion(led, "default", "e1", size=5)
        with pytest.raises(ValueError, match="after the checkpoint"):
            prove_inclusion(led, "default", "later", size=5)
        with pytest.raises(LookupError, match="size 4"):
            prove_inclusion(led, "default", "e1", size=4)
    assert check_inclusion(bundle, _verifiers(path)).size == 5


def test_an_edited_event_in_an_inclusion_bundle_is_tampering(path: Path) -> None:
    from ledger.tlog.consistency import check_inclusion, prove_inclusion

    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        bundle = prove_inclusion(led, "default", "e2")
    bundle["event"]["cost_nanos"] += 1
    with pytest.raises(TamperEvidence, match="not at index 2"):
        check_inclusion(bundle, _verifiers(path))


def test_cli_inclusion_then_verify_offline(path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "incl.json"
    made = runner.invoke(cli, ["--data", str(path), "log", "inclusion", "e4", "-o", str(out)])
    assert made.exit_code == 0, made.output
    keys = tmp_path / "keys.json"
    runner.invoke(cli, ["--data", str(path), "signing-keys", "export", "--format", "json",
                        "-o", str(keys)])
    ok = runner.invoke(cli, ["--data", str(tmp_path / "none"), "log", "verify-inclusion",
                             str(out), "--public-key", str(keys)])
    assert ok.exit_code == 0, ok.output
    assert "is entry 4" in ok.output
    bundle = json.loads(out.read_text())
    bundle["audit_path"][0] = "00" * 32
    out.write_text(json.dumps(bundle))
    bad = runner.invoke(cli, ["--data", str(path), "log", "verify-inclusion", str(out)])
    assert bad.exit_code == 1 and "INVALID" in bad.output


def test_cli_inclusion_of_an_unknown_event_is_a_usage_error(path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data", str(path), "log", "inclusion", "nope"])
    assert result.exit_code == 2 and "no log 'nope'" in result.output
