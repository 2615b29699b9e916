"""Ed25519 keys, key ids, signature text, public-key formats and the key ring
(ledger.tlog.signing; docs/formats.md)."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest

from ledger.storage import durable
from ledger.tlog.signing import (
    ALGORITHM,
    KeyRing,
    KeyRingError,
    PublicKeyFormatError,
    PublicKeyInfo,
    SignatureFormatError,
    SigningKey,
    decode_signature,
    encode_signature,
    key_id,
    keys_for,
    load_public_keys,
    parse_vkey,
    public_keys_json,
    verify_signature,
)

NAME = "ledger.example"
# Published test key of golang.org/x/mod sumdb/note (never used in production).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.from_seed(bytes(range(32)), NAME, "2025-06-01T00:00:00.000000Z")


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "keys", NAME)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable."""
    old = os.umask(0)
    yield
    os.umask(old)


# -- key ids -----------------------------------------------------------------------------
def test_key_id_is_the_first_four_bytes_of_sha256_of_name_newline_0x01_key() -> None:
    public = bytes(range(32))
    expected = sha256(b"ledger.example\n\x01" + public).digest()[:4]
    assert key_id("ledger.example", public) == expected


@pytest.mark.parametrize("vkey, hex_id", [
    ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "530d903a"),
    (GO_VKEY, "c74f20a3"),
    ("log2025-alpha1.rekor.sigstage.dev+f30d5a99+AT5/gERB6AWme8IEtcwaqcZi0hp8ocV4+JRcUnVlQfKP",
     "f30d5a99"),
])
def test_key_id_matches_published_c2sp_verifier_keys(vkey: str, hex_id: str) -> None:
    name, _, b64 = vkey.split("+", 2)
    public = base64.b64decode(b64)[1:]
    assert key_id(name, public).hex() == hex_id


def test_info_key_id_is_eight_lowercase_hex_digits(key: SigningKey) -> None:
    assert key.info.key_id == key_id(NAME, key.info.public_key).hex()
    assert len(key.info.key_id) == 8 and key.info.key_id == key.info.key_id.lower()


# -- signature text ----------------------------------------------------------------------
def test_signature_text_is_ed25519_prefix_and_unpadded_base64url(key: SigningKey) -> None:
    sig = key.sign(b"message")
    text = encode_signature(sig)
    assert text.startswith("ed25519:") and "=" not in text
    assert text[len("ed25519:"):] == base64.urlsafe_b64encode(sig).decode().rstrip("=")
    assert decode_signature(text) == sig


@pytest.mark.parametrize("text, reason", [
    ("AAAA", "no algorithm prefix"),
    ("rsa:AAAA", "algorithm 'rsa'"),
    ("ed25519:" + "A" * 85 + "=", "base64url"),
    ("ed25519:" + "A" * 84, "64"),
    ("ed25519:" + "A" * 85 + "+", "base64url"),
    ("ed25519:" + "A" * 85 + "B", "non-canonical"),
])
def test_decode_signature_rejects_malformed_text_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(SignatureFormatError, match=reason):
        decode_signature(text)


def test_signature_format_error_is_a_value_error() -> None:
    assert issubclass(SignatureFormatError, ValueError)


def test_verify_signature_accepts_a_good_signature(key: SigningKey) -> None:
    assert verify_signature(key.info.public_key, b"m", key.sign(b"m"))


@pytest.mark.parametrize("public, message, sig", [
    (None, b"other", None),                 # another message
    (b"\x00" * 31, b"m", None),             # short key
    (None, b"m", b"\x00" * 63),             # short signature
    (b"\xff" * 32, b"m", None),             # bytes that are not a curve point
    (None, b"m", b"\xff" * 64),             # garbage signature
])
def test_verify_signature_returns_false_and_never_raises(
        key: SigningKey, public: bytes | None, message: bytes, sig: bytes | None) -> None:
    good = key.sign(b"m")
    assert verify_signature(public or key.info.public_key, message, sig or good) is False


def test_signing_is_deterministic(key: SigningKey) -> None:
    assert key.sign(b"same") == key.sign(b"same")


def test_repr_of_a_signing_key_shows_no_secret(key: SigningKey) -> None:
    assert key.seed().hex() not in repr(key) and key.info.key_id in repr(key)


# -- public key formats ------------------------------------------------------------------
def test_public_key_json_has_the_published_fields(key: SigningKey) -> None:
    doc = key.info.to_json()
    assert doc == {
        "key_id": key.info.key_id,
        "algorithm": ALGORITHM,
        "name": NAME,
        "public_key": base64.urlsafe_b64encode(key.info.public_key).decode().rstrip("="),
        "created_at": "2025-06-01T00:00:00.000000Z",
        "retired_at": None,
        "status": "current",
    }
    assert PublicKeyInfo.from_json(doc) == key.info


def test_public_key_json_with_a_wrong_key_id_is_rejected(key: SigningKey) -> None:
    doc = {**key.info.to_json(), "key_id": "00000000"}
    with pytest.raises(PublicKeyFormatError, match="does not match"):
        PublicKeyInfo.from_json(doc)


def test_pem_parses_with_cryptography_to_the_same_raw_key(key: SigningKey) -> None:
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    pem = key.info.pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    loaded = serialization.load_pem_public_key(pem.encode())
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == key.info.public_key


def test_a_signature_verifies_with_cryptography_too(key: SigningKey) -> None:
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    public = ed25519.Ed25519PublicKey.from_public_bytes(key.info.public_key)
    public.verify(key.sign(b"hello"), b"hello")  # raises if invalid


def test_vkey_is_the_c2sp_verifier_key(key: SigningKey) -> None:
    vkey = key.info.vkey()
    name, hex_id, b64 = vkey.split("+", 2)
    assert (name, hex_id) == (NAME, key.info.key_id)
    assert base64.b64decode(b64) == b"\x01" + key.info.public_key
    assert parse_vkey(vkey).public_key == key.info.public_key


def test_skey_gives_the_published_go_test_key() -> None:
    assert SigningKey.from_skey(GO_SKEY).info == parse_vkey(GO_VKEY)


def test_a_nameless_key_has_no_vkey() -> None:
    info = PublicKeyInfo.of("", bytes(32))
    with pytest.raises(PublicKeyFormatError, match="without a name"):
        info.vkey()


def test_load_public_keys_reads_pem_blocks_as_nameless_keys(tmp_path: Path) -> None:
    a = SigningKey.from_seed(b"a" * 32, NAME)
    b = SigningKey.from_seed(b"b" * 32, NAME)
    path = tmp_path / "keys.pem"
    path.write_text(a.info.pem() + b.info.pem())
    infos = load_public_keys(path)
    assert [i.public_key for i in infos] == [a.info.public_key, b.info.public_key]
    assert all(i.name == "" for i in infos)


def test_load_public_keys_reads_the_public_keys_json(tmp_path: Path) -> None:
    a = SigningKey.from_seed(b"a" * 32, NAME, "2025-01-01T00:00:00.000000Z")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(public_keys_json([a.info])))
    assert load_public_keys(path) == [a.info]


def test_load_public_keys_reads_vkey_lines(tmp_path: Path) -> None:
    path = tmp_path / "key.vkey"
    path.write_text(GO_VKEY + "\n")
    assert load_public_keys(path) == [parse_vkey(GO_VKEY)]


@pytest.mark.parametrize("content, message", [
    ("hello world\n", "not a public key file"),
    ("", "not a public key file"),
    ("{not json", "invalid JSON"),
    ('{"keys": []}', "lists no key"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "private key"),
    ("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VxAyEA\n-----END PUBLIC KEY-----\n", "not an Ed25519"),
    ("PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
])
def test_load_public_keys_says_what_is_wrong_with_a_file(
        tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "key.txt"
    path.write_text(content)
    with pytest.raises(PublicKeyFormatError, match=message) as err:
        load_public_keys(path)
    assert str(path) in str(err.value)


def test_load_public_keys_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(PublicKeyFormatError, match="cannot read"):
        load_public_keys(tmp_path / "nope.pem")


def test_keys_for_tries_the_matching_key_and_every_nameless_key(key: SigningKey) -> None:
    other = SigningKey.from_seed(b"o" * 32, NAME).info
    nameless = PublicKeyInfo.of("", key.info.public_key)
    assert keys_for(key.info.key_id, [other, key.info, nameless]) == [key.info, nameless]


# -- the key ring ------------------------------------------------------------------------
def test_current_creates_and_persists_a_key_on_first_use(ring: KeyRing, tmp_path: Path) -> None:
    key = ring.current()
    assert key.info.name == NAME and key.info.retired_at is None
    again = KeyRing(tmp_path / "keys", NAME).current()
    assert again.info == key.info
    assert again.sign(b"x") == key.sign(b"x")


def test_private_key_file_is_readable_by_its_owner_only(ring: KeyRing, open_umask: None) -> None:
    key = ring.current()
    mode = stat.S_IMODE(ring.private_file(key.info.key_id).stat().st_mode)
    assert mode == 0o600


def test_keys_json_holds_no_private_material(ring: KeyRing) -> None:
    key = ring.current()
    text = ring.keys_file.read_text()
    seed = key.seed()
    for encoding in (seed.hex(), base64.b64encode(seed).decode().rstrip("="),
                     base64.urlsafe_b64encode(seed).decode().rstrip("=")):
        assert encoding not in text


def test_sign_uses_the_current_key(ring: KeyRing) -> None:
    kid, sig = ring.sign(b"receipt bytes")
    info = ring.find(kid)
    assert info is not None and info.status == "current"
    assert verify_signature(info.public_key, b"receipt bytes", sig)


def test_rotate_retires_the_old_key_and_keeps_it_listed(ring: KeyRing) -> None:
    old = ring.current()
    new = ring.rotate()
    infos = ring.keys()
    assert [i.key_id for i in infos] == [old.info.key_id, new.info.key_id]
    assert infos[0].retired_at is not None and infos[0].status == "retired"
    assert infos[1].retired_at is None
    assert ring.current().info == new.info


def test_signatures_of_a_retired_key_still_verify(ring: KeyRing) -> None:
    kid, sig = ring.sign(b"old receipt")
    ring.rotate()
    info = ring.find(kid)
    assert info is not None and info.status == "retired"
    assert verify_signature(info.public_key, b"old receipt", sig)


def test_rotate_without_any_key_creates_the_first_one(ring: KeyRing) -> None:
    key = ring.rotate()
    infos = ring.keys()
    assert [i.key_id for i in infos] == [key.info.key_id]


def test_find_of_an_unknown_key_id_is_none(ring: KeyRing) -> None:
    ring.current()
    assert ring.find("00000000") is None


def test_a_missing_private_key_file_says_what_to_do(ring: KeyRing, tmp_path: Path) -> None:
    key = ring.current()
    ring.private_file(key.info.key_id).unlink()
    with pytest.raises(KeyRingError, match=r"missing.*rotate"):
        KeyRing(tmp_path / "keys", NAME).current()


def test_rotate_recovers_from_a_missing_private_key_file(ring: KeyRing, tmp_path: Path) -> None:
    key = ring.current()
    ring.private_file(key.info.key_id).unlink()
    fresh = KeyRing(tmp_path / "keys", NAME)
    new = fresh.rotate()
    assert fresh.current().info == new.info


def test_a_private_key_file_readable_by_others_is_refused(ring: KeyRing, tmp_path: Path) -> None:
    key = ring.current()
    path = ring.private_file(key.info.key_id)
    path.chmod(0o644)
    with pytest.raises(KeyRingError, match="chmod 600"):
        KeyRing(tmp_path / "keys", NAME).current()


def test_a_private_key_file_of_another_key_is_refused(ring: KeyRing, tmp_path: Path) -> None:
    key = ring.current()
    path = ring.private_file(key.info.key_id)
    path.write_text(json.dumps({"seed": base64.urlsafe_b64encode(b"z" * 32).decode()
                                .rstrip("=")}))
    with pytest.raises(KeyRingError, match="does not match"):
        KeyRing(tmp_path / "keys", NAME).current()


def test_a_damaged_keys_file_says_to_restore_it(ring: KeyRing) -> None:
    ring.current()
    ring.keys_file.write_text("{")
    with pytest.raises(KeyRingError, match="damaged"):
        ring.keys()


def test_a_crash_during_rotate_leaves_the_old_key_current(
        ring: KeyRing, monkeypatch: pytest.MonkeyPatch) -> None:
    old = ring.current()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash before keys.json is replaced")

    monkeypatch.setattr("ledger.tlog.signing.write_atomic", crash)
    with pytest.raises(OSError):
        ring.rotate()
    monkeypatch.setattr("ledger.tlog.signing.write_atomic", durable.write_atomic)
    infos = ring.keys()
    assert [i.key_id for i in infos] == [old.info.key_id]
    assert ring.current().info == old.info
    assert ring.rotate().info.key_id != old.info.key_id


def test_key_names_must_be_valid_signed_note_names(tmp_path: Path) -> None:
    for bad in ("", "has space", "a+b"):
        with pytest.raises(KeyRingError, match="invalid key name"):
            KeyRing(tmp_path, bad)
