"""Witness policies: k of n witnesses must have cosigned a checkpoint, for checkpoints and
for receipts (their proof bundles' log checkpoint, or a plain receipt's log_checkpoint
with its cosigned note); the judged scenario: a receipt passes a 1-of-1 policy once the
witness cosigned, and the receipt of a forked log, which the witness refused, fails."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import cli
from ledger.receipts.issuance import Receipts
from ledger.receipts.verification import verify_bundle
from ledger.storage.config import ledger_origin
from ledger.storage.layout import DataDir
from ledger.tlog.checkpoint import NoteError, parse_note
from ledger.tlog.cosignature import cosign, cosigner_of
from ledger.tlog.notary import Notary
from ledger.tlog.policy import (
    Policy,
    PolicyError,
    QuorumError,
    check_quorum,
    check_receipt_checkpoint,
    load_policy,
    parse_policy,
)
from ledger.tlog.signing import KeyRing, SigningKey
from ledger.tlog.witness import Witness, WitnessRefusal
from tests.conftest import usage

BODY = "log.example/p\n3\n" + "A" * 43 + "=\n"
LOG_KEY = SigningKey.from_seed(bytes(32), "log.example")
ALICE = SigningKey.from_seed(bytes([1]) * 32, "alice.example/w")
BOB = SigningKey.from_seed(bytes([2]) * 32, "bob.example/w")


def _note(*cosigners: SigningKey) -> str:
    from ledger.tlog.checkpoint import sign_note
    from ledger.tlog.cosignature import add_signatures

    note = sign_note(BODY, [LOG_KEY])
    return add_signatures(note, [cosign(BODY, k, 1700000000) for k in cosigners]) \
        if cosigners else note


def _policy(k: int, *keys: SigningKey) -> Policy:
    return Policy(tuple(cosigner_of(key) for key in keys), k)


# -- the policy file -------------------------------------------------------------------
def test_a_policy_file_lists_witness_vkeys_and_a_quorum(tmp_path: Path) -> None:
    path = tmp_path / "policy.txt"
    path.write_text(f"# witnesses\nwitness {cosigner_of(ALICE).vkey()}\n"
                    f"witness {cosigner_of(BOB).vkey()}  # bob\n\nquorum 2\n")
    assert load_policy(path) == _policy(2, ALICE, BOB)


def test_a_witness_may_be_a_name_and_a_base64_key() -> None:
    b64 = base64.b64encode(ALICE.info.public_key).decode()
    assert parse_policy(f"witness alice.example/w {b64}\nquorum 1\n") == _policy(1, ALICE)


def test_a_policy_without_a_quorum_line_is_refused() -> None:
    with pytest.raises(PolicyError, match="quorum K"):
        parse_policy(f"witness {cosigner_of(ALICE).vkey()}\n")


def test_a_quorum_larger_than_the_witnesses_is_refused() -> None:
    with pytest.raises(PolicyError, match="between 1 and"):
        parse_policy(f"witness {cosigner_of(ALICE).vkey()}\nquorum 2\n")


def test_an_unknown_directive_names_its_line() -> None:
    with pytest.raises(PolicyError, match="line 2"):
        parse_policy(f"witness {cosigner_of(ALICE).vkey()}\nwitnesses 3\nquorum 1\n")


def test_a_log_key_is_not_a_witness_key() -> None:
    with pytest.raises(PolicyError, match="log's signing key"):
        parse_policy(f"witness {LOG_KEY.info.vkey()}\nquorum 1\n")


# -- quorum ----------------------------------------------------------------------------
def test_one_of_one_passes_with_the_witness_cosignature() -> None:
    assert check_quorum(_note(ALICE), _policy(1, ALICE)) == ["alice.example/w"]


def test_one_of_one_fails_without_a_cosignature() -> None:
    with pytest.raises(QuorumError, match="0 valid witness cosignature"):
        check_quorum(_note(), _policy(1, ALICE))


def test_two_of_two_fails_with_one_cosignature() -> None:
    with pytest.raises(QuorumError, match=r"1 valid .* of the 2"):
        check_quorum(_note(ALICE), _policy(2, ALICE, BOB))


def test_two_of_two_passes_with_both() -> None:
    assert check_quorum(_note(ALICE, BOB), _policy(2, ALICE, BOB)) == [
        "alice.example/w", "bob.example/w"]


def test_cosignatures_of_unknown_witnesses_are_ignored() -> None:
    stranger = SigningKey.from_seed(bytes([9]) * 32, "stranger.example")
    assert check_quorum(_note(stranger, ALICE), _policy(1, ALICE)) == ["alice.example/w"]
    with pytest.raises(QuorumError):
        check_quorum(_note(stranger), _policy(1, ALICE))


def test_a_tampered_cosignature_does_not_count() -> None:
    note = _note(ALICE)
    head, sig = note.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1  # one bit of the Ed25519 signature
    tampered = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(QuorumError, match="does not verify"):
        check_quorum(tampered, _policy(1, ALICE))


def test_the_same_witness_twice_counts_once() -> None:
    note = _note(ALICE) + cosign(BODY, ALICE, 1700000001).line()
    with pytest.raises(QuorumError):
        check_quorum(note, Policy((cosigner_of(ALICE), cosigner_of(BOB)), 2))


def test_a_cosignature_of_another_checkpoint_does_not_count() -> None:
    other = "log.example/p\n4\n" + "A" * 43 + "=\n"
    note = _note() + cosign(other, ALICE, 1).line()
    with pytest.raises(QuorumError):
        check_quorum(note, _policy(1, ALICE))


# -- receipts: the judged scenario -----------------------------------------------------
def _ledger(path: Path) -> Ledger:
    return Ledger(path, pricer=None, checkpoint_interval=None)


def _receipt_and_bundle(path: Path, ids: list[str]) -> tuple[dict[str, Any], dict]:
    with _ledger(path) as led:
        led.append_many([usage(event_id=e) for e in ids])
        receipts = Receipts(led)
        receipt = receipts.generate(since_last_receipt=True)["receipt"]
        return receipt, receipts.prove("default", receipt["receipt_id"], ids[0])


def _prove(path: Path, receipt: dict[str, Any], event_id: str) -> dict:
    with _ledger(path) as led:
        return Receipts(led).prove("default", receipt["receipt_id"], event_id)


def _keys(path: Path):
    return KeyRing(path / "keys", ledger_origin(path)).keys()


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """An honest ledger with a receipt, a witness watching it, a 1-of-1 policy."""
    path = tmp_path / "data"
    receipt, _ = _receipt_and_bundle(path, [f"e{i}" for i in range(5)])
    witness = Witness(tmp_path / "witness", "witness.example/w1")
    origin = receipt["log_checkpoint"]["origin"]
    witness.add_log(origin, _keys(path))
    policy = Policy((witness.public_key(),), 1)
    return {"path": path, "receipt": receipt, "witness": witness, "policy": policy,
            "origin": origin, "tmp": tmp_path}


def _witness_receipt(world: dict[str, Any]) -> str:
    cp = world["receipt"]["log_checkpoint"]
    note = Notary(DataDir(world["path"])).cosigned_note_at(cp["origin"], cp["size"])
    cosigned = world["witness"].cosign(note, [])
    Notary(DataDir(world["path"])).attach_cosignatures(cosigned, [world["witness"].public_key()])
    return cosigned


def test_a_bundle_made_after_the_witness_cosigned_passes_a_one_of_one_policy(world) -> None:
    _witness_receipt(world)
    bundle = _prove(world["path"], world["receipt"], "e0")
    result = verify_bundle(bundle, _keys(world["path"]), policy=world["policy"])
    assert result.valid, result.message
    assert "cosigned by 1 of 1" in result.checks[-1]


def test_a_bundle_without_cosignatures_fails_the_policy(world) -> None:
    bundle = _prove(world["path"], world["receipt"], "e0")
    result = verify_bundle(bundle, _keys(world["path"]), policy=world["policy"])
    assert (result.valid, result.failed) == (False, "witness")
    assert verify_bundle(bundle, _keys(world["path"])).valid  # valid without a policy


def test_the_receipt_of_a_forked_log_fails_the_policy(world) -> None:
    _witness_receipt(world)
    forked = world["tmp"] / "forked"  # same keys and origin, other history
    shutil.copytree(world["path"] / "keys", forked / "keys")
    shutil.copy(world["path"] / "config.json", forked / "config.json")
    receipt, _ = _receipt_and_bundle(forked, [f"x{i}" for i in range(8)])
    cp = receipt["log_checkpoint"]
    note = Notary(DataDir(forked)).cosigned_note_at(cp["origin"], cp["size"])
    with _ledger(forked) as led:
        proof = led.tree("default").consistency_proof(5, cp["size"])
    with pytest.raises(WitnessRefusal):
        world["witness"].cosign(note, proof)
    bundle = _prove(forked, receipt, "x0")
    assert verify_bundle(bundle, _keys(forked)).valid  # the operator's signature is fine
    result = verify_bundle(bundle, _keys(forked), policy=world["policy"])
    assert (result.valid, result.failed) == (False, "witness")


def test_a_bundle_without_a_log_proof_fails_the_policy(world) -> None:
    _witness_receipt(world)
    bundle = _prove(world["path"], world["receipt"], "e0")
    del bundle["log_proof"]
    result = verify_bundle(bundle, _keys(world["path"]), policy=world["policy"])
    assert result.failed == "witness" and "no log_proof" in result.message


def test_a_plain_receipt_passes_with_its_cosigned_checkpoint(world) -> None:
    cosigned = _witness_receipt(world)
    assert check_receipt_checkpoint(world["receipt"], cosigned, _keys(world["path"]),
                                    world["policy"]) == ["witness.example/w1"]


def test_a_plain_receipt_with_another_checkpoint_fails(world) -> None:
    cosigned = _witness_receipt(world)
    receipt = {**world["receipt"], "log_checkpoint": {**world["receipt"]["log_checkpoint"],
                                                      "size": 4}}
    with pytest.raises(NoteError, match="not the receipt's log_checkpoint"):
        check_receipt_checkpoint(receipt, cosigned, _keys(world["path"]), world["policy"])


# -- the CLI ---------------------------------------------------------------------------
def _write_policy(world: dict[str, Any]) -> Path:
    path = world["tmp"] / "policy.txt"
    path.write_text(f"witness {world['witness'].public_key().vkey()}\nquorum 1\n")
    return path


def _cli(world: dict[str, Any], *args: str):
    return CliRunner().invoke(cli, ["--data", str(world["path"]), *args])


def test_receipts_verify_applies_the_policy_to_a_bundle(world) -> None:
    policy = _write_policy(world)
    bundle = world["tmp"] / "bundle.json"
    bundle.write_text(json.dumps(_prove(world["path"], world["receipt"], "e0")))
    res = _cli(world, "receipts", "verify", str(bundle), "--policy", str(policy))
    assert res.exit_code == 1 and "INVALID (witness)" in res.output
    _witness_receipt(world)
    bundle.write_text(json.dumps(_prove(world["path"], world["receipt"], "e0")))
    res = _cli(world, "receipts", "verify", str(bundle), "--policy", str(policy))
    assert res.exit_code == 0, res.output


def test_receipts_verify_of_a_plain_receipt_needs_its_cosigned_checkpoint(world) -> None:
    policy = _write_policy(world)
    receipt = world["tmp"] / "receipt.json"
    receipt.write_text(json.dumps(world["receipt"]))
    res = _cli(world, "receipts", "verify", str(receipt), "--policy", str(policy))
    assert res.exit_code == 2 and "--checkpoint" in res.output
    note = world["tmp"] / "cp.note"
    note.write_text(_witness_receipt(world))
    res = _cli(world, "receipts", "verify", str(receipt), "--policy", str(policy),
               "--checkpoint", str(note))
    assert res.exit_code == 0, res.output


def test_log_verify_checkpoint_applies_the_policy(world) -> None:
    policy = _write_policy(world)
    cp = world["receipt"]["log_checkpoint"]
    note = world["tmp"] / "cp.note"
    note.write_text(Notary(DataDir(world["path"])).cosigned_note_at(cp["origin"], cp["size"]))
    res = _cli(world, "log", "verify-checkpoint", str(note), "--policy", str(policy))
    assert res.exit_code == 1 and "0 valid witness" in res.output
    note.write_text(_witness_receipt(world))
    res = _cli(world, "log", "verify-checkpoint", str(note), "--policy", str(policy),
               "--json")
    assert res.exit_code == 0 and json.loads(res.output)["cosigned_by"] == [
        "witness.example/w1"]


def test_a_malformed_policy_file_is_a_usage_error(world) -> None:
    bad = world["tmp"] / "bad.txt"
    bad.write_text("quorum 1\n")
    note = world["tmp"] / "cp.note"
    note.write_text(_witness_receipt(world))
    res = _cli(world, "log", "verify-checkpoint", str(note), "--policy", str(bad))
    assert res.exit_code == 2 and "lists no witness" in res.output


def test_stored_cosignatures_are_served_with_the_checkpoint(world) -> None:
    cosigned = _witness_receipt(world)
    cp = world["receipt"]["log_checkpoint"]
    served = Notary(DataDir(world["path"])).cosigned_note_at(cp["origin"], cp["size"])
    assert parse_note(served).signatures == parse_note(cosigned).signatures


def _witness_latest(world: dict[str, Any]) -> str:
    """The witness cosigns the log's latest checkpoint (after the receipt's own entry)."""
    with _ledger(world["path"]) as led:
        led.append_many([usage(event_id="later")])
        note = led.checkpoint("default").note
    cosigned = world["witness"].cosign(note, [])
    Notary(DataDir(world["path"])).attach_cosignatures(cosigned, [world["witness"].public_key()])
    return cosigned


def test_a_later_cosigned_checkpoint_that_extends_the_receipts_passes_the_policy(
        world) -> None:
    _witness_latest(world)
    bundle = _prove(world["path"], world["receipt"], "e0")
    assert "witnessed" in bundle["log_proof"]
    result = verify_bundle(bundle, _keys(world["path"]), policy=world["policy"])
    assert result.valid, result.message
    assert "a later log checkpoint" in result.checks[-1]


def test_a_later_cosigned_checkpoint_with_a_broken_link_fails_the_policy(world) -> None:
    _witness_latest(world)
    bundle = _prove(world["path"], world["receipt"], "e0")
    bundle["log_proof"]["witnessed"]["consistency"] = ["00" * 32]
    result = verify_bundle(bundle, _keys(world["path"]), policy=world["policy"])
    assert (result.valid, result.failed) == (False, "witness")


def test_the_honest_witnessed_checkpoint_does_not_vouch_for_a_forked_receipt(world) -> None:
    honest = _witness_latest(world)
    forked = world["tmp"] / "forked"
    shutil.copytree(world["path"] / "keys", forked / "keys")
    shutil.copy(world["path"] / "config.json", forked / "config.json")
    receipt, _ = _receipt_and_bundle(forked, [f"x{i}" for i in range(5)])
    bundle = _prove(forked, receipt, "x0")
    with _ledger(world["path"]) as led:  # the honest log's link, transplanted
        link = led.tree("default").consistency_proof(5, 7)
    bundle["log_proof"]["witnessed"] = {"checkpoint": honest,
                                        "consistency": [h.hex() for h in link]}
    result = verify_bundle(bundle, _keys(forked), policy=world["policy"])
    assert (result.valid, result.failed) == (False, "witness")


# -- the Tessera / Sigsum syntax -------------------------------------------------------
CAROL = SigningKey.from_seed(bytes([3]) * 32, "carol.example/w")


def _named(quorum: str, *extra: str) -> Policy:
    return parse_policy("\n".join([
        f"witness A {cosigner_of(ALICE).vkey()} https://alice.example/w",
        f"witness B {cosigner_of(BOB).vkey()} https://bob.example/w",
        f"witness C {cosigner_of(CAROL).vkey()}", *extra, f"quorum {quorum}", ""]))


def test_a_named_policy_keeps_names_urls_and_a_group_quorum() -> None:
    policy = _named("G", "group G 2 A B C")
    assert policy.names == ("A", "B", "C")
    assert policy.urls == ("https://alice.example/w", "https://bob.example/w", None)
    assert [n for n, _, _ in policy.submission_targets()] == ["A", "B"]
    assert policy.describe() == "2 of (alice.example/w, bob.example/w, carol.example/w)"


def test_two_of_three_passes_with_two_and_fails_with_one() -> None:
    policy = _named("G", "group G 2 A B C")
    assert check_quorum(_note(ALICE, CAROL), policy) == ["alice.example/w",
                                                         "carol.example/w"]
    with pytest.raises(QuorumError, match=r"1 valid .* of the 2 of \("):
        check_quorum(_note(BOB), policy)


def test_groups_nest_and_all_any_are_thresholds() -> None:
    policy = _named("both", "group ab any A B", "group both all ab C")
    assert check_quorum(_note(BOB, CAROL), policy)
    with pytest.raises(QuorumError):
        check_quorum(_note(ALICE, BOB), policy)  # C is required


def test_a_quorum_of_one_witness_and_of_none() -> None:
    assert check_quorum(_note(BOB), _named("B")) == ["bob.example/w"]
    with pytest.raises(QuorumError):
        check_quorum(_note(ALICE), _named("B"))
    assert check_quorum(_note(), _named("none")) == []


def test_a_sigsum_hex_key_is_named_by_its_witness_line() -> None:
    policy = parse_policy(f"log {'00' * 32} https://log.example\n"
                          f"witness alice.example/w {ALICE.info.public_key.hex()}\n"
                          "quorum alice.example/w\n")
    assert check_quorum(_note(ALICE), policy) == ["alice.example/w"]


def test_names_must_be_defined_before_use_and_only_once() -> None:
    with pytest.raises(PolicyError, match="line 4: group G: 'D' is not"):
        _named("G", "group G 2 A D")
    with pytest.raises(PolicyError, match="line 4: quorum 'H' is not"):
        _named("H")
    with pytest.raises(PolicyError, match="defined twice"):
        _named("A", "group A any B C")
    with pytest.raises(PolicyError, match="threshold '4'"):
        _named("G", "group G 4 A B C")
    with pytest.raises(PolicyError, match="not an http"):
        parse_policy(f"witness A {cosigner_of(ALICE).vkey()} ftp://x\nquorum A\n")
