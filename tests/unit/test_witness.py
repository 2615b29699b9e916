"""Witnesses: C2SP tlog-cosignature v1 lines, a witness that cosigns a growing log and
refuses forks and truncations, the ledger storing cosignatures next to its checkpoints,
and the `llmring witness` commands."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import cli
from ledger.storage.config import ledger_origin
from ledger.storage.layout import DataDir
from ledger.tlog.checkpoint import Checkpoint, parse_note
from ledger.tlog.consistency import checkpoint_of_note, prove_extends
from ledger.tlog.cosignature import (
    CosignatureError,
    CosignerKey,
    cosign,
    cosigned_message,
    cosigner_of,
    parse_cosignature,
    parse_cosigner_vkey,
    verify_cosignature,
)
from ledger.tlog.notary import Notary
from ledger.tlog.signing import KeyRing, SigningKey
from ledger.tlog.witness import Witness, WitnessError, WitnessRefusal
from tests.conftest import usage
from tests.support.paths import VECTORS

VECTOR = VECTORS / "sigstore-rekor-v2" / "rekor2-checkpoint-cosigned.json"
SEED = bytes(range(32))


def _append(path: Path, ids: list[str]) -> None:
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=e) for e in ids])


def _note(path: Path) -> str:
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        return led.checkpoint("default").note


def _bundle(path: Path, witness: Witness) -> dict:
    """The consistency bundle from the checkpoint the witness holds to the log's latest."""
    origin = f"{ledger_origin(path)}/default"
    held = witness.latest(origin)
    old = (checkpoint_of_note(held["note"]) if held else
           Checkpoint(origin, 0, bytes(32)))
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        if held is None:
            return {"format": "ledger-consistency/v1", "old": {"size": 0},
                    "new": led.checkpoint("default").note, "proof": []}
        return prove_extends(led, "default", old)


def _log_keys(path: Path):
    return KeyRing(path / "keys", ledger_origin(path)).keys()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "data"
    _append(p, [f"e{i}" for i in range(5)])
    _note(p)  # the first checkpoint creates the log's signing key
    return p


@pytest.fixture
def witness(tmp_path: Path, path: Path) -> Witness:
    w = Witness(tmp_path / "witness", "witness.example/w1")
    w.add_log(f"{ledger_origin(path)}/default", _log_keys(path))
    return w


def _fork(path: Path, tmp_path: Path, n: int) -> Path:
    """A second data directory with the same keys and origin but other events."""
    forked = tmp_path / "forked"
    shutil.copytree(path / "keys", forked / "keys")
    shutil.copy(path / "config.json", forked / "config.json")
    _append(forked, [f"x{i}" for i in range(n)])
    return forked


# -- the cosignature format ------------------------------------------------------------
def test_the_rekor_witness_line_has_the_cosignature_layout() -> None:
    vector = json.loads(VECTOR.read_text())
    line = parse_note(vector["checkpoint_note"]).signatures[1]
    cosig = parse_cosignature(line)
    assert (cosig.name, cosig.key_id.hex(), cosig.timestamp) == (
        "witness.example", "3bc3c7e4", 1755639614)
    assert len(cosig.signature) == 64


def test_the_spec_example_line_has_the_cosignature_layout() -> None:
    note = ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
            "\n\n— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWX"
            "EhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")
    assert parse_cosignature(parse_note(note).signatures[0]).timestamp == 1679315147


def test_the_signed_message_is_header_time_line_and_checkpoint_body() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosigned_message(body, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + body.encode())


def test_a_cosignature_is_key_id_timestamp_and_an_ed25519_signature_of_the_message() -> None:
    key = SigningKey.from_seed(SEED, "w.example")
    body = "log.example\n3\n" + "A" * 43 + "=\n"
    sig = cosign(body, key, 1700000000)
    raw_key = cosigner_of(key)
    assert sig.key_hash == raw_key.key_id
    assert sig.signature[:8] == (1700000000).to_bytes(8, "big")
    assert raw_key.public_key and verify_cosignature(body, sig, raw_key) == 1700000000


def test_the_cosigner_key_id_uses_algorithm_byte_4_not_the_log_key_id() -> None:
    key = SigningKey.from_seed(SEED, "w.example")
    assert cosigner_of(key).key_id.hex() != key.info.key_id


def test_a_witness_vkey_round_trips_and_a_log_vkey_is_refused() -> None:
    key = SigningKey.from_seed(SEED, "w.example")
    assert parse_cosigner_vkey(cosigner_of(key).vkey()) == cosigner_of(key)
    with pytest.raises(CosignatureError, match="log's signing key"):
        parse_cosigner_vkey(key.info.vkey())


def test_a_cosignature_of_another_body_does_not_verify() -> None:
    key = SigningKey.from_seed(SEED, "w.example")
    sig = cosign("log.example\n3\n" + "A" * 43 + "=\n", key, 1)
    with pytest.raises(CosignatureError, match="does not verify"):
        verify_cosignature("log.example\n4\n" + "A" * 43 + "=\n", sig, cosigner_of(key))


def test_a_log_verifier_ignores_cosignature_lines(path: Path, witness: Witness) -> None:
    from ledger.tlog.checkpoint import Verifier, verify_note

    cosigned = witness.cosign(None, _bundle(path, witness))
    _, sigs = verify_note(cosigned, [Verifier.from_info(k) for k in _log_keys(path)])
    assert [s.name for s in sigs] == [ledger_origin(path)]


# -- the witness -----------------------------------------------------------------------
def test_a_witness_key_file_is_private_and_created_once(witness: Witness) -> None:
    first = witness.public_key()
    assert os.stat(witness.directory / "witness.key").st_mode & 0o777 == 0o600
    assert Witness(witness.directory).public_key() == first


def test_a_directory_without_a_witness_asks_for_init(tmp_path: Path) -> None:
    with pytest.raises(WitnessError, match="witness init"):
        Witness(tmp_path / "none")


def test_the_witness_cosigns_a_growing_log(path: Path, witness: Witness) -> None:
    key = witness.public_key()
    sizes = []
    for round_ in range(3):
        cosigned = witness.cosign(None, _bundle(path, witness))
        note = parse_note(cosigned)
        sig = next(s for s in note.signatures if key.matches(s))
        verify_cosignature(note.text, sig, key)
        sizes.append(checkpoint_of_note(cosigned).size)
        _append(path, [f"r{round_}-{i}" for i in range(3)])
    assert sizes == [5, 8, 11]
    assert witness.latest(f"{ledger_origin(path)}/default")["size"] == 11


def test_the_same_checkpoint_is_cosigned_again(path: Path, witness: Witness) -> None:
    note = _note(path)
    witness.cosign(note, [], timestamp=100)
    again = witness.cosign(note, [], timestamp=200)
    sig = next(s for s in parse_note(again).signatures if witness.public_key().matches(s))
    assert parse_cosignature(sig).timestamp == 200


def test_a_forked_checkpoint_is_refused_and_the_old_one_kept(path: Path, tmp_path: Path,
                                                             witness: Witness) -> None:
    witness.cosign(None, _bundle(path, witness))
    held = witness.latest(f"{ledger_origin(path)}/default")
    forked = _fork(path, tmp_path, 9)
    with Ledger(forked, pricer=None, checkpoint_interval=None) as led:
        note = led.checkpoint("default").note
        proof = led.tree("default").consistency_proof(5, 9)  # the fork's own proof
    with pytest.raises(WitnessRefusal, match="does not extend") as err:
        witness.cosign(note, proof)
    assert err.value.offered == note and err.value.held == held["note"]
    assert witness.latest(f"{ledger_origin(path)}/default") == held


def test_a_fork_at_the_same_size_is_refused(path: Path, tmp_path: Path,
                                            witness: Witness) -> None:
    witness.cosign(None, _bundle(path, witness))
    forked = _fork(path, tmp_path, 5)
    with pytest.raises(WitnessRefusal, match="different root"):
        witness.cosign(_note(forked), [])


def test_a_truncated_log_is_refused(path: Path, tmp_path: Path, witness: Witness) -> None:
    _append(path, ["more"])
    witness.cosign(None, _bundle(path, witness))
    truncated = _fork(path, tmp_path, 3)
    with pytest.raises(WitnessRefusal, match="smaller than"):
        witness.cosign(_note(truncated), [])


def test_a_proof_from_another_size_is_a_conflict_not_a_cosignature(path: Path,
                                                                   witness: Witness) -> None:
    first = _note(path)
    witness.cosign(first, [])
    _append(path, ["a"])
    witness.cosign(None, _bundle(path, witness))
    _append(path, ["b"])
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        stale = prove_extends(led, "default", checkpoint_of_note(first))
    with pytest.raises(WitnessError, match="starts at size 5"):
        witness.cosign(None, stale)


def test_a_grown_checkpoint_without_a_proof_asks_for_one(path: Path,
                                                        witness: Witness) -> None:
    witness.cosign(_note(path), [])
    _append(path, ["a"])
    with pytest.raises(WitnessError, match="needs the consistency proof from it"):
        witness.cosign(_note(path), [])


def test_an_unknown_log_is_refused_with_the_command_to_add_it(path: Path,
                                                              tmp_path: Path) -> None:
    w = Witness(tmp_path / "w2", "w2.example")
    with pytest.raises(WitnessError, match="witness add-log"):
        w.cosign(_note(path), [])


def test_a_checkpoint_signed_by_another_key_is_refused(path: Path, tmp_path: Path,
                                                       witness: Witness) -> None:
    other = tmp_path / "other"  # same origin, its own signing key
    other.mkdir()
    shutil.copy(path / "config.json", other / "config.json")
    _append(other, ["o"])
    with pytest.raises(WitnessError, match="not validly signed"):
        witness.cosign(_note(other), [])


# -- the ledger stores cosignatures ----------------------------------------------------
def test_the_ledger_serves_its_checkpoint_with_stored_cosignatures(path: Path,
                                                                    witness: Witness) -> None:
    cosigned = witness.cosign(None, _bundle(path, witness))
    notary = Notary(DataDir(path))
    assert notary.attach_cosignatures(cosigned, [witness.public_key()]) == ["witness.example/w1"]
    assert notary.latest_cosigned_note() == cosigned
    assert notary.attach_cosignatures(cosigned) == []  # already stored


def test_the_ledger_refuses_cosignatures_of_a_checkpoint_it_never_signed(
        path: Path, tmp_path: Path, witness: Witness) -> None:
    forked = _fork(path, tmp_path, 5)
    key = SigningKey.from_seed(SEED, "w.example")
    note = _note(forked)
    line = cosign(parse_note(note).text, key, 1).line()
    with pytest.raises(CosignatureError, match="never signed"):
        Notary(DataDir(path)).attach_cosignatures(note + line)


def test_the_ledger_refuses_a_cosignature_that_does_not_verify(path: Path,
                                                               witness: Witness) -> None:
    cosigned = witness.cosign(None, _bundle(path, witness), timestamp=1000)
    forged = _retimed(cosigned, witness.public_key(), 2000)
    with pytest.raises(CosignatureError, match="does not verify"):
        Notary(DataDir(path)).attach_cosignatures(forged, [witness.public_key()])


def _retimed(note: str, key: CosignerKey, timestamp: int) -> str:
    """``note`` with ``key``'s cosignature claiming another time (so it no longer
    verifies)."""
    from ledger.tlog.checkpoint import Note, NoteSignature, format_note

    parsed = parse_note(note)
    sigs = tuple(NoteSignature(s.name, s.key_hash,
                               timestamp.to_bytes(8, "big") + s.signature[8:])
                 if key.matches(s) else s for s in parsed.signatures)
    return format_note(Note(parsed.text, sigs))


# -- the CLI ---------------------------------------------------------------------------
def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_witness_commands_cosign_a_log_and_the_ledger_stores_it(path: Path,
                                                                    tmp_path: Path) -> None:
    wdir = str(tmp_path / "w")
    assert _run("witness", "--dir", wdir, "init", "--name", "w.example").exit_code == 0
    vkey = _run("witness", "--dir", wdir, "key").output.strip()
    assert parse_cosigner_vkey(vkey).name == "w.example"
    pub = tmp_path / "log.pem"
    assert _run("--data", str(path), "signing-keys", "export", "-o", str(pub)).exit_code == 0
    origin = f"{ledger_origin(path)}/default"
    assert _run("witness", "--dir", wdir, "add-log", origin, "--public-key",
                str(pub)).exit_code == 0
    cp = tmp_path / "cp.note"
    cp.write_text(_note(path))
    out = tmp_path / "cosigned.note"
    res = _run("witness", "--dir", wdir, "cosign", "--checkpoint", str(cp), "-o", str(out))
    assert res.exit_code == 0, res.output
    res = _run("--data", str(path), "log", "add-cosignature", str(out))
    assert res.exit_code == 0 and "w.example" in res.output
    _append(path, ["g1", "g2"])
    bundle = tmp_path / "bundle.json"
    assert _run("--data", str(path), "log", "consistency", "--from", str(out), "-o",
                str(bundle)).exit_code == 0
    res = _run("witness", "--dir", wdir, "cosign", "--proof", str(bundle), "--json")
    assert res.exit_code == 0 and json.loads(res.output)["size"] == 7
    shown = json.loads(_run("witness", "--dir", wdir, "show", "--json").output)
    assert shown["logs"][0]["size"] == 7 and shown["name"] == "w.example"


def test_the_witness_command_exits_1_on_a_fork(path: Path, tmp_path: Path,
                                               witness: Witness) -> None:
    witness.cosign(None, _bundle(path, witness))
    forked = _fork(path, tmp_path, 5)
    cp = tmp_path / "forked.note"
    cp.write_text(_note(forked))
    res = CliRunner().invoke(cli, ["witness", "--dir", str(witness.directory), "cosign",
                                   "--checkpoint", str(cp)])
    assert res.exit_code == 1 and "TAMPERING" in res.output


def test_the_witness_directory_comes_from_the_environment(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["witness", "init", "--name", "env.example"],
                             env={"LLMRING_WITNESS_DIR": str(tmp_path / "envw")})
    assert res.exit_code == 0 and (tmp_path / "envw" / "witness.json").exists()
