"""C2SP signed notes and tlog checkpoints, and the checkpoint store (ledger.tlog.checkpoint,
docs/formats.md), against the public vectors in tests/vectors."""

from __future__ import annotations

import base64
import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.tlog.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    Note,
    NoteError,
    NoteSignature,
    SignedCheckpoint,
    Verifier,
    format_note,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from ledger.tlog.signing import KeyRing, PublicKeyInfo, SigningKey, load_public_keys
from tests.support.paths import VECTORS

NOTE_VECTORS = VECTORS / "signed-note" / "signed-note-vectors.json"
REKOR = VECTORS / "sigstore-rekor-v2" / "rekor2-checkpoint-cosigned.json"

ORIGIN = "ledger.example/acme"
ROOT = sha256(b"root").digest()


def load_vectors(path: Path) -> Any:
    """A vector file; a missing file fails the test (it must never be skipped)."""
    assert path.is_file(), f"missing test vectors {path}"
    return json.loads(path.read_text(encoding="utf-8"))


def note_vectors(kind: str) -> list[dict[str, Any]]:
    vectors = load_vectors(NOTE_VECTORS)["vectors"] if NOTE_VECTORS.is_file() else []
    selected = {
        "valid": [v for v in vectors if "signed_note" in v],
        "skey": [v for v in vectors if "skey" in v],
        "bad_vkey": [v for v in vectors if v["expect"].startswith("reject vkey")],
        "checkpoint": [v for v in vectors if "checkpoint_body" in v],
    }[kind]
    # No vectors (a missing file) must fail, not skip: one case that asserts the file.
    return selected or [pytest.param({}, id=f"no-{kind}-vectors")]


def need(vector: dict[str, Any]) -> dict[str, Any]:
    assert vector, f"missing test vectors {NOTE_VECTORS}"
    return vector


def key(n: int = 0, name: str = "ledger.example") -> SigningKey:
    return SigningKey.from_seed(bytes([n]) * 32, name)


def verifier(k: SigningKey) -> Verifier:
    return Verifier.from_info(k.info)


def verifiers_of(ring: KeyRing) -> list[Verifier]:
    """Verifiers for every key of ``ring``, current and retired."""
    infos = ring.keys()
    return [Verifier.from_info(info) for info in infos]


def body(size: int = 5, root: bytes = ROOT, origin: str = ORIGIN) -> str:
    return Checkpoint(origin, size, root).body()


# -- the public vectors ------------------------------------------------------------------
def test_the_vector_files_are_present() -> None:
    assert load_vectors(NOTE_VECTORS)["vectors"]
    assert load_vectors(REKOR)["checkpoint_note"]


@pytest.mark.parametrize("vector", note_vectors("valid"))
def test_vector_note_parses_and_verifies_with_its_vkey(vector: dict[str, Any]) -> None:
    vector = need(vector)
    note = parse_note(vector["signed_note"])
    assert note.text == vector["signed_text"]
    assert format_note(note) == vector["signed_note"]
    checked, sigs = verify_note(vector["signed_note"], [Verifier.from_vkey(vector["vkey"])])
    assert checked == note and sigs == list(note.signatures)


@pytest.mark.parametrize("vector", note_vectors("valid"))
def test_vector_note_with_its_text_altered_fails(vector: dict[str, Any]) -> None:
    vector = need(vector)
    altered = "X" + vector["signed_note"][1:]
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(altered, [Verifier.from_vkey(vector["vkey"])])


@pytest.mark.parametrize("vector", note_vectors("skey"))
def test_signing_with_the_vector_skey_reproduces_the_signature_line(
        vector: dict[str, Any]) -> None:
    vector = need(vector)
    signer = SigningKey.from_skey(vector["skey"])
    assert signer.info.vkey() == vector["vkey"]
    assert sign_note(vector["signed_text"], [signer]) == vector["signed_note"]


@pytest.mark.parametrize("vector", note_vectors("bad_vkey"))
def test_vector_bad_vkey_is_rejected(vector: dict[str, Any]) -> None:
    vector = need(vector)
    reason = "bytes" if "length" in vector["expect"] else "algorithm"
    with pytest.raises(NoteError, match=reason):
        Verifier.from_vkey(vector["vkey"])


@pytest.mark.parametrize("vector", note_vectors("checkpoint"))
def test_vector_checkpoint_body_parses(vector: dict[str, Any]) -> None:
    vector = need(vector)
    cp = parse_checkpoint(vector["checkpoint_body"])
    assert cp.origin == "go.sum database tree"
    assert cp.size == 123456789012
    assert cp.root == sha256(b"\x00hello world").digest()
    assert cp.body() == vector["checkpoint_body"]


def test_cosigned_rekor_checkpoint_verifies_with_the_log_key() -> None:
    rekor = load_vectors(REKOR)
    log = Verifier.from_vkey(rekor["log_vkey_derived"])
    cp = verify_checkpoint(rekor["checkpoint_note"], [log], origin=rekor["log_origin"])
    assert cp.size == rekor["tree_size"]
    assert cp.root == base64.b64decode(rekor["root_hash_b64"])


def test_cosigned_rekor_checkpoint_witness_line_is_ignored_as_unknown() -> None:
    rekor = load_vectors(REKOR)
    log = Verifier.from_vkey(rekor["log_vkey_derived"])
    note, sigs = verify_note(rekor["checkpoint_note"], [log])
    assert [s.name for s in note.signatures] == [rekor["log_origin"], "witness.example"]
    assert [s.name for s in sigs] == [rekor["log_origin"]]


def test_rekor_log_key_from_its_pkix_der_verifies_as_a_nameless_key(tmp_path: Path) -> None:
    rekor = load_vectors(REKOR)
    der = base64.b64decode(rekor["log_pubkey_pkix_der_b64"])
    pem = tmp_path / "rekor.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode()
                   + "\n-----END PUBLIC KEY-----\n")
    [info] = load_public_keys(pem)
    cp = verify_checkpoint(rekor["checkpoint_note"], [Verifier.from_info(info)])
    assert cp.origin == rekor["log_origin"]


def test_the_witness_cosignature_alone_is_signed_by_none_of_the_keys() -> None:
    rekor = load_vectors(REKOR)
    text, _, sigs = rekor["checkpoint_note"].partition("\n\n")
    only_witness = text + "\n\n" + sigs.splitlines(keepends=True)[1]
    with pytest.raises(NoteError, match="signed by none of the given keys"):
        verify_note(only_witness, [Verifier.from_vkey(rekor["log_vkey_derived"])])


# -- signing and verifying notes ---------------------------------------------------------
def test_sign_note_is_deterministic() -> None:
    assert sign_note("hello\n", [key()]) == sign_note("hello\n", [key()])


def test_a_note_signed_by_several_keys_verifies_with_each() -> None:
    note = sign_note("hello\n", [key(1), key(2, "witness.example")])
    for k in (key(1), key(2, "witness.example")):
        _, sigs = verify_note(note, [verifier(k)])
        assert [s.name for s in sigs] == [k.info.name]


def test_unknown_signature_lines_are_ignored() -> None:
    note = sign_note("hello\n", [key(7, "stranger.example"), key(1)])
    _, sigs = verify_note(note, [verifier(key(1))])
    assert len(sigs) == 1 and sigs[0].key_hash.hex() == key(1).info.key_id


def test_a_line_sharing_only_the_name_of_a_known_key_is_ignored() -> None:
    impostor = key(9)  # same name, other key, so another key id
    note = sign_note("hello\n", [impostor, key(1)])
    _, sigs = verify_note(note, [verifier(key(1))])
    assert [s.key_hash.hex() for s in sigs] == [key(1).info.key_id]


def test_a_bad_signature_from_a_known_key_rejects_the_note() -> None:
    good = parse_note(sign_note("hello\n", [key(1)]))
    forged = NoteSignature(good.signatures[0].name, good.signatures[0].key_hash, b"\x01" * 64)
    note = format_note(Note("hello\n", (forged,)))
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(note, [verifier(key(1))])


def test_a_note_signed_by_no_known_key_is_rejected() -> None:
    note = sign_note("hello\n", [key(7, "stranger.example")])
    with pytest.raises(NoteError, match="signed by none of the given keys"):
        verify_note(note, [verifier(key(1))])


@pytest.mark.parametrize("count", [16, 40, MAX_SIGNATURES])
def test_notes_with_many_signature_lines_are_accepted(count: int) -> None:
    keys = [key(1)] + [key(n % 250 + 2, f"witness{n}.example") for n in range(count - 1)]
    note = sign_note("hello\n", keys)
    _, sigs = verify_note(note, [verifier(key(1))])
    assert len(parse_note(note).signatures) == count and len(sigs) == 1


def test_a_note_with_more_than_the_maximum_of_signatures_is_rejected() -> None:
    keys = [key(n % 250, f"w{n}.example") for n in range(MAX_SIGNATURES + 1)]
    with pytest.raises(NoteError, match="at most"):
        parse_note(sign_note("hello\n", keys))


def test_a_nameless_verifier_matches_by_the_key_id_under_the_line_name() -> None:
    signer = key(3)
    nameless = Verifier.from_info(PublicKeyInfo.of("", signer.info.public_key))
    _, sigs = verify_note(sign_note("hi\n", [signer]), [nameless])
    assert sigs[0].name == signer.info.name


def test_a_retired_key_still_verifies_what_it_signed(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys", "ledger.example")
    old_note = sign_note(body(), [ring.current()])
    ring.rotate()
    verifiers = verifiers_of(ring)
    assert verify_checkpoint(old_note, verifiers).size == 5


SIG = "— k " + base64.b64encode(b"\x00" * 68).decode() + "\n"


@pytest.mark.parametrize("data, message", [
    ("hello\n" + SIG, "no blank line"),
    ("hello\n\n", "no signature lines"),
    ("hello\n\n" + SIG[:-1], "does not end with a newline"),
    ("hello\n\n- k AAAAAAAA\n", "em dash"),
    ("hello\n\n—k AAAAAAAA\n", "em dash"),
    ("hello\n\n— k\n", "no signature after the key name"),
    ("hello\n\n— a+b AAAAAAAA\n", "invalid key name"),
    ("hello\n\n— k AAAA\n", "too short"),
    ("hello\n\n— k AAAAAAA\n", "base64"),
    ("hello\n\n— k AAAAAAB=\n", "non-canonical"),
    ("hello\n\n— k AAAAAAAA \n", "base64"),
    ("hel\x00lo\n\n" + SIG, "control character U\\+0000"),
    ("hello\r\n\n" + SIG, "control character U\\+000D"),
    (b"hel\xfflo\n\n" + SIG.encode(), "not valid UTF-8"),
])
def test_malformed_notes_give_a_precise_note_error(data: str | bytes, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        parse_note(data)


def test_signing_a_text_without_a_final_newline_is_refused() -> None:
    with pytest.raises(NoteError, match="end with a newline"):
        sign_note("hello", [key()])


def test_a_vkey_whose_key_id_does_not_match_is_rejected() -> None:
    vkey = key(1).info.vkey()
    name, _, rest = vkey.split("+", 2)
    with pytest.raises(NoteError, match="does not match"):
        Verifier.from_vkey(f"{name}+00000000+{rest}")


# -- checkpoints -------------------------------------------------------------------------
def test_checkpoint_body_is_origin_size_and_base64_root_lines() -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT, ("ext one",))
    assert cp.body() == f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}\next one\n"
    assert parse_checkpoint(cp.body()) == cp


def test_a_signed_checkpoint_verifies_and_requires_its_origin() -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), [key()])
    assert verify_checkpoint(signed.note, [verifier(key())], origin=ORIGIN).root == ROOT
    with pytest.raises(CheckpointError, match=r"not 'ledger\.example/other'"):
        verify_checkpoint(signed.note, [verifier(key())], origin="ledger.example/other")


def test_signed_checkpoint_json_shape() -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), [key()])
    doc = signed.to_json()
    assert doc == {"origin": ORIGIN, "size": 5, "root": ROOT.hex(),
                   "root_b64": base64.b64encode(ROOT).decode(), "note": signed.note,
                   "issued_at": signed.issued_at}
    assert doc["issued_at"].endswith("Z")
    assert SignedCheckpoint.from_json(doc) == signed


@pytest.mark.parametrize("tamper", ["size", "root", "origin"])
def test_a_tampered_checkpoint_fails(tamper: str) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), [key()]).note
    root_b64 = base64.b64encode(ROOT).decode()
    other = base64.b64encode(sha256(b"other").digest()).decode()
    altered = {"size": note.replace("\n5\n", "\n6\n", 1),
               "root": note.replace(root_b64, other, 1),
               "origin": note.replace(ORIGIN, "ledger.example/evil", 1)}[tamper]
    assert altered != note
    with pytest.raises(NoteError, match="does not verify"):
        verify_checkpoint(altered, [verifier(key())])


ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize("text, message", [
    (f"o\n5\n{ROOT_B64}", "end with a newline"),
    ("o\n5\n", "needs an origin, a tree size and a root"),
    (f"\n5\n{ROOT_B64}\n", "origin line is empty"),
    (f"o\n05\n{ROOT_B64}\n", "without leading zeros"),
    (f"o\n-5\n{ROOT_B64}\n", "decimal"),
    (f"o\n+5\n{ROOT_B64}\n", "decimal"),
    (f"o\n 5\n{ROOT_B64}\n", "decimal"),
    (f"o\n٥\n{ROOT_B64}\n", "decimal"),
    (f"o\n{2**64}\n{ROOT_B64}\n", "64 bits"),
    (f"o\n5\n{base64.b64encode(b'x' * 31).decode()}\n", "31 bytes"),
    ("o\n5\nnot base64!\n", "base64"),
    (f"o\n5\n{ROOT_B64}\n\next\n", "line 4 of the checkpoint is empty"),
])
def test_malformed_checkpoint_bodies_are_rejected(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(text)


def test_size_zero_is_a_valid_checkpoint() -> None:
    empty = sha256(b"").digest()
    assert parse_checkpoint(Checkpoint(ORIGIN, 0, empty).body()).size == 0


# -- property tests ----------------------------------------------------------------------
origins = st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)),
                  min_size=1, max_size=40)
sizes = st.integers(min_value=0, max_value=2**64 - 1)
roots = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(origin=origins, size=sizes, root=roots)
def test_sign_then_verify_round_trips(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    signed = sign_checkpoint(cp, [key()])
    assert verify_checkpoint(signed.note, [verifier(key())], origin=origin) == cp


@settings(max_examples=150, deadline=None)
@given(size=sizes, root=roots, data=st.data())
def test_any_single_byte_change_of_the_note_fails(size: int, root: bytes,
                                                  data: st.DataObject) -> None:
    note = bytearray(sign_checkpoint(Checkpoint(ORIGIN, size, root), [key()]).note.encode())
    i = data.draw(st.integers(min_value=0, max_value=len(note) - 1), label="offset")
    new = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != note[i]),
                    label="byte")
    note[i] = new
    with pytest.raises(NoteError):
        verify_checkpoint(bytes(note), [verifier(key())])


# -- the checkpoint store ----------------------------------------------------------------
@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "keys", "ledger.example")


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "checkpoints")


def root_of(n: int) -> bytes:
    return sha256(n.to_bytes(8, "big")).digest()


def test_issue_signs_with_the_current_key_and_stores_it(store: CheckpointStore,
                                                        ring: KeyRing) -> None:
    signed = store.issue(ORIGIN, 3, root_of(3), ring)
    verifiers = verifiers_of(ring)
    cp = verify_checkpoint(signed.note, verifiers, origin=ORIGIN)
    assert (cp.size, cp.root) == (3, root_of(3))
    assert store.latest(ORIGIN) == signed
    assert parse_note(signed.note).signatures[0].key_hash.hex() == ring.current().info.key_id


def test_issue_of_an_unchanged_log_returns_the_latest_checkpoint(
        store: CheckpointStore, ring: KeyRing) -> None:
    first = store.issue(ORIGIN, 3, root_of(3), ring)
    assert store.issue(ORIGIN, 3, root_of(3), ring) == first
    assert list(store.all(ORIGIN)) == [first]


def test_checkpoints_are_kept_in_order_and_found_by_size(store: CheckpointStore,
                                                         ring: KeyRing) -> None:
    issued = [store.issue(ORIGIN, n, root_of(n), ring) for n in (1, 2, 5)]
    assert list(CheckpointStore(store.directory).all(ORIGIN)) == issued
    assert store.at_size(ORIGIN, 2) == issued[1]
    assert store.at_size(ORIGIN, 3) is None
    assert store.latest(ORIGIN) == issued[-1]


def test_a_checkpoint_stored_by_another_writer_is_found_by_size(store: CheckpointStore,
                                                                  ring: KeyRing) -> None:
    first = store.issue(ORIGIN, 1, root_of(1), ring)
    assert store.at_size(ORIGIN, 1) == first  # the store's index now covers the file
    later = CheckpointStore(store.directory).issue(ORIGIN, 7, root_of(7), ring)
    assert store.at_size(ORIGIN, 7) == later
    assert store.at_size(ORIGIN, 1) == first


def test_a_torn_last_line_is_not_a_checkpoint_until_it_is_complete(
        store: CheckpointStore, ring: KeyRing) -> None:
    store.issue(ORIGIN, 1, root_of(1), ring)
    second = sign_checkpoint(Checkpoint(ORIGIN, 2, root_of(2)), [ring.current()])
    line = orjson.dumps(second.to_json()) + b"\n"
    with store.path(ORIGIN).open("ab") as fh:
        fh.write(line[:40])
    assert store.at_size(ORIGIN, 2) is None
    with store.path(ORIGIN).open("ab") as fh:
        fh.write(line[40:])
    assert store.at_size(ORIGIN, 2) == second


def test_a_restored_shorter_store_file_is_read_anew(store: CheckpointStore,
                                                    ring: KeyRing) -> None:
    store.issue(ORIGIN, 1, root_of(1), ring)
    backup = store.path(ORIGIN).read_bytes()
    store.issue(ORIGIN, 2, root_of(2), ring)
    assert store.at_size(ORIGIN, 2) is not None
    store.path(ORIGIN).write_bytes(backup)
    assert store.at_size(ORIGIN, 2) is None
    assert store.at_size(ORIGIN, 1) is not None


def test_a_store_file_whose_sizes_do_not_grow_is_searched_line_by_line(
        store: CheckpointStore, ring: KeyRing) -> None:
    issued = [store.issue(ORIGIN, n, root_of(n), ring) for n in (1, 5)]
    lines = store.path(ORIGIN).read_bytes().splitlines(keepends=True)
    store.path(ORIGIN).write_bytes(lines[1] + lines[0])  # edited by hand: 5, then 1
    fresh = CheckpointStore(store.directory)
    assert fresh.at_size(ORIGIN, 1) == issued[0]
    assert fresh.at_size(ORIGIN, 5) == issued[1]


def test_each_origin_has_its_own_checkpoints(store: CheckpointStore, ring: KeyRing) -> None:
    a = store.issue("ledger.example/a", 1, root_of(1), ring)
    assert store.latest("ledger.example/b") is None
    assert list(store.all("ledger.example/b")) == []
    assert store.latest("ledger.example/a") == a


def test_issue_refuses_a_log_that_shrank(store: CheckpointStore, ring: KeyRing) -> None:
    store.issue(ORIGIN, 5, root_of(5), ring)
    with pytest.raises(CheckpointError, match="refusing to sign"):
        store.issue(ORIGIN, 4, root_of(4), ring)


def test_issue_refuses_another_root_at_the_same_size(store: CheckpointStore,
                                                     ring: KeyRing) -> None:
    store.issue(ORIGIN, 5, root_of(5), ring)
    with pytest.raises(CheckpointError, match="fork"):
        store.issue(ORIGIN, 5, root_of(6), ring)


def test_checkpoints_after_a_rotation_use_the_new_key(store: CheckpointStore,
                                                      ring: KeyRing) -> None:
    old = store.issue(ORIGIN, 1, root_of(1), ring)
    new_key = ring.rotate()
    new = store.issue(ORIGIN, 2, root_of(2), ring)
    assert parse_note(new.note).signatures[0].key_hash.hex() == new_key.info.key_id
    verifiers = verifiers_of(ring)
    for signed in (old, new):
        verify_checkpoint(signed.note, verifiers, origin=ORIGIN)


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_issue(
        store: CheckpointStore, ring: KeyRing) -> None:
    first = store.issue(ORIGIN, 1, root_of(1), ring)
    with store.path(ORIGIN).open("ab") as fh:
        fh.write(b'{"origin": "ledger.exa')
    assert store.latest(ORIGIN) == first
    assert list(store.all(ORIGIN)) == [first]
    second = store.issue(ORIGIN, 2, root_of(2), ring)
    assert list(store.all(ORIGIN)) == [first, second]


def test_a_damaged_checkpoint_file_says_so(store: CheckpointStore, ring: KeyRing) -> None:
    store.issue(ORIGIN, 1, root_of(1), ring)
    store.path(ORIGIN).write_text("not json\n")
    with pytest.raises(CheckpointError, match="damaged"):
        store.latest(ORIGIN)
