"""Ed25519 signing keys (docs/formats.md): key ids, signature text, public-key formats and the
key ring of a data directory.

A key has a *name* (the ledger origin, e.g. ``ledger.example``) and a *key id*: the first
4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), as in C2SP signed-note, shown as 8
lowercase hex digits. Signatures in JSON documents are ``"ed25519:" + base64url`` without
padding.

``KeyRing`` keeps a directory's keys in ``<data>/keys/``:

* ``keys.json``: every public key, current and retired, oldest first (the shape of the
  public-keys JSON), replaced atomically (temporary file, fsync, rename, fsync dir);
* ``<key id>.key``: one private key (a small JSON object holding the 32-byte seed),
  created with mode 0600 and fsynced before ``keys.json`` names it, so a crash never
  leaves a current key without its private file, nor zero current keys.

Public keys can be read back for offline verification from PEM (SubjectPublicKeyInfo),
from the public-keys JSON, or from C2SP verifier keys (``name+hexid+base64``). A PEM
carries no name, so its key id cannot be computed: such keys get the empty name, and
verifiers try them against any signature (``keys_for``), which is sound because the
signature itself is checked with the key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import orjson

from ledger.errors import KeyRingError, PublicKeyFormatError, SignatureFormatError
from ledger.model.event import format_ts, now_us
from ledger.storage.durable import create_private, private_dir, write_atomic
from ledger.storage.layout import KEYS_FILE

ALGORITHM = "ed25519"
SIGNATURE_TYPE_ED25519 = 0x01  # the C2SP signed-note signature type byte
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64
SIGNATURE_PREFIX = f"{ALGORITHM}:"
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # DER of an Ed25519 SPKI, minus the key
KEYS_FORMAT = "llmring-ledger-public-keys/v1"

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX_ID_RE = re.compile(r"[0-9a-fA-F]{8}")
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END ([A-Z0-9 ]+)-----",
                     re.DOTALL)


# -- small encodings ---------------------------------------------------------------------
def b64url(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of ``b64url``: no padding, no other characters, canonical."""
    if not isinstance(text, str) or not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("non-canonical base64url (unused bits are set)")
    return data


def b64std_decode(text: str, *, canonical: bool = True) -> bytes:
    """Strict standard base64 with padding (RFC 4648 §4), canonical unless told otherwise,
    as signed notes use."""
    if not isinstance(text, str) or not _B64_RE.fullmatch(text):
        raise ValueError("not standard base64 with padding")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not standard base64 ({exc})") from None
    if canonical and base64.b64encode(data).decode("ascii") != text:
        raise ValueError("non-canonical base64 (unused bits are set)")
    return data


def valid_key_name(name: str) -> bool:
    """A C2SP signed-note key name: non-empty, no Unicode spaces, no '+', no control
    characters."""
    return (isinstance(name, str) and name != "" and "+" not in name
            and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name))


def now_text() -> str:
    """Now, RFC 3339 UTC with microseconds and ``Z``."""
    return format_ts(now_us())


# -- key ids and signatures --------------------------------------------------------------
def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP signed-note key id: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    return sha256(name.encode("utf-8") + b"\n" + bytes([SIGNATURE_TYPE_ED25519])
                  + bytes(public_key)).digest()[:4]


def encode_signature(sig: bytes) -> str:
    """``"ed25519:" + base64url(sig)`` without padding."""
    if len(sig) != SIGNATURE_SIZE:
        raise ValueError(f"an Ed25519 signature has {SIGNATURE_SIZE} bytes, not {len(sig)}")
    return SIGNATURE_PREFIX + b64url(bytes(sig))


def decode_signature(text: str) -> bytes:
    """The 64 signature bytes of ``"ed25519:<base64url>"``; ``SignatureFormatError`` with
    the reason otherwise."""
    if not isinstance(text, str):
        raise SignatureFormatError(f"a signature must be a string, not {type(text).__name__}")
    if not text.startswith(SIGNATURE_PREFIX):
        algorithm = text.split(":", 1)[0] if ":" in text else ""
        what = f"algorithm {algorithm!r}" if algorithm else "no algorithm prefix"
        raise SignatureFormatError(
            f"unsupported signature: it has {what}; expected 'ed25519:' followed by "
            "base64url without padding")
    body = text[len(SIGNATURE_PREFIX):]
    try:
        sig = b64url_decode(body)
    except ValueError as exc:
        raise SignatureFormatError(f"malformed ed25519 signature: {exc}") from None
    if len(sig) != SIGNATURE_SIZE:
        raise SignatureFormatError(
            f"malformed ed25519 signature: {len(sig)} bytes, expected {SIGNATURE_SIZE}")
    return sig


def verify_signature(public_key: bytes, message: bytes, sig: bytes) -> bool:
    """True if ``sig`` is a valid Ed25519 signature of ``message`` by ``public_key``.
    Never raises: malformed keys or signatures are simply not valid."""
    try:
        if len(public_key) != PUBLIC_KEY_SIZE or len(sig) != SIGNATURE_SIZE:
            return False
        nacl.signing.VerifyKey(bytes(public_key)).verify(bytes(message), bytes(sig))
        return True
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False


# -- public keys -------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicKeyInfo:
    """One public key as published. ``name`` is empty for a key read from a PEM file
    (which has no name); its ``key_id`` is then computed with the empty name and only
    identifies it locally."""

    name: str
    key_id: str
    public_key: bytes
    created_at: str
    retired_at: str | None = None

    def __post_init__(self) -> None:
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise PublicKeyFormatError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, "
                                       f"not {len(self.public_key)}")

    @classmethod
    def of(cls, name: str, public_key: bytes, created_at: str = "",
           retired_at: str | None = None) -> PublicKeyInfo:
        """The info of ``public_key`` under ``name``, with its computed key id."""
        return cls(name, key_id(name, public_key).hex(), bytes(public_key), created_at,
                   retired_at)

    @property
    def status(self) -> str:
        return "current" if self.retired_at is None else "retired"

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "name": self.name,
            "public_key": b64url(self.public_key),
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, obj: Any) -> PublicKeyInfo:
        """Read one entry of the public-keys JSON; the key id must match name and key."""
        if not isinstance(obj, dict):
            raise PublicKeyFormatError("a public key entry must be a JSON object")
        algorithm = obj.get("algorithm", ALGORITHM)
        if algorithm != ALGORITHM:
            raise PublicKeyFormatError(f"unsupported key algorithm {algorithm!r} "
                                       f"(only {ALGORITHM!r})")
        name = obj.get("name", "")
        if not isinstance(name, str) or (name and not valid_key_name(name)):
            raise PublicKeyFormatError(f"invalid key name {name!r}")
        try:
            public_key = b64url_decode(obj["public_key"])
        except (KeyError, ValueError) as exc:
            raise PublicKeyFormatError(
                f"public_key must be base64url without padding ({exc})") from None
        created_at = obj.get("created_at") or ""
        retired_at = obj.get("retired_at")
        if not isinstance(created_at, str) or not (retired_at is None
                                                   or isinstance(retired_at, str)):
            raise PublicKeyFormatError("created_at and retired_at must be strings")
        info = cls.of(name, public_key, created_at, retired_at)
        given = obj.get("key_id")
        if given is not None and str(given).lower() != info.key_id:
            raise PublicKeyFormatError(
                f"key_id {given!r} does not match the key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ "
                f"key) gives {info.key_id} for name {name!r}")
        return info

    def pem(self) -> str:
        """The key as a SubjectPublicKeyInfo PEM (RFC 8410)."""
        body = base64.b64encode(SPKI_PREFIX + self.public_key).decode("ascii")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"

    def vkey(self) -> str:
        """The C2SP signed-note verifier key ``name+hexid+base64(0x01 ‖ key)``."""
        if not self.name:
            raise PublicKeyFormatError("a key without a name (read from a PEM file) has no "
                                       "verifier key: its key id depends on the name")
        raw = bytes([SIGNATURE_TYPE_ED25519]) + self.public_key
        return f"{self.name}+{self.key_id}+{base64.b64encode(raw).decode('ascii')}"


def public_keys_json(infos: Iterable[PublicKeyInfo]) -> dict[str, Any]:
    """The public-keys JSON document: ``{"keys": [...]}``, oldest first."""
    return {"keys": [info.to_json() for info in infos]}


def keys_for(key_id_hex: str, infos: Sequence[PublicKeyInfo]) -> list[PublicKeyInfo]:
    """The keys that may have made a signature labelled ``key_id_hex``: the key with that
    id, then every nameless key (from a PEM file), whose id is unknown. Callers accept a
    signature if one of them verifies it."""
    wanted = key_id_hex.lower()
    return ([i for i in infos if i.name and i.key_id == wanted]
            + [i for i in infos if not i.name])


def parse_vkey(vkey: str) -> PublicKeyInfo:
    """Read a C2SP signed-note verifier key ``name+hexid+base64(0x01 ‖ key)``: rejects a
    bad name, an unknown algorithm byte, a key of the wrong length, a key id that does not
    match."""
    text = vkey.strip() if isinstance(vkey, str) else ""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise PublicKeyFormatError(f"malformed verifier key {vkey!r}: expected "
                                   "name+hexid+base64key")
    name, hex_id, b64 = parts
    if not valid_key_name(name):
        raise PublicKeyFormatError(f"verifier key: invalid key name {name!r}")
    if not _HEX_ID_RE.fullmatch(hex_id):
        raise PublicKeyFormatError(f"verifier key: key id {hex_id!r} is not 8 hex digits")
    try:
        raw = b64std_decode(b64, canonical=False)  # report a wrong length before encoding
    except ValueError as exc:
        raise PublicKeyFormatError(f"verifier key: the key is {exc}") from None
    if not raw or raw[0] != SIGNATURE_TYPE_ED25519:
        kind = f"0x{raw[0]:02x}" if raw else "none"
        raise PublicKeyFormatError(f"verifier key: unknown algorithm byte {kind} "
                                   "(only 0x01, Ed25519)")
    if len(raw) != 1 + PUBLIC_KEY_SIZE:
        raise PublicKeyFormatError(f"verifier key: an Ed25519 key has {PUBLIC_KEY_SIZE} "
                                   f"bytes, this one {len(raw) - 1}")
    if base64.b64encode(raw).decode("ascii") != b64:
        raise PublicKeyFormatError("verifier key: non-canonical base64 (unused bits are set)")
    info = PublicKeyInfo.of(name, raw[1:])
    if info.key_id != hex_id.lower():
        raise PublicKeyFormatError(f"verifier key: key id {hex_id} does not match the key "
                                   f"and name (expected {info.key_id})")
    return info


def parse_pem_keys(text: str) -> list[PublicKeyInfo]:
    """Every ``PUBLIC KEY`` block of a PEM text, as nameless keys."""
    out = []
    for label, body, end in _PEM_RE.findall(text):
        if label != end:
            raise PublicKeyFormatError(f"PEM block BEGIN {label} ends with END {end}")
        if "PRIVATE" in label:
            raise PublicKeyFormatError(
                "this PEM holds a private key: give the public key instead "
                "(`llmring signing-keys export --format pem`)")
        if label != "PUBLIC KEY":
            raise PublicKeyFormatError(f"PEM block {label!r} is not a PUBLIC KEY")
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            raise PublicKeyFormatError("PEM block: invalid base64") from None
        if len(der) != len(SPKI_PREFIX) + PUBLIC_KEY_SIZE or not der.startswith(SPKI_PREFIX):
            raise PublicKeyFormatError("PEM block is not an Ed25519 public key "
                                       "(SubjectPublicKeyInfo with OID 1.3.101.112)")
        out.append(PublicKeyInfo.of("", der[len(SPKI_PREFIX):]))
    if not out:
        raise PublicKeyFormatError("no PEM block found")
    return out


def parse_public_keys_json(obj: Any) -> list[PublicKeyInfo]:
    """The keys of a public-keys JSON document (``{"keys": [...]}``), a list of entries,
    or one entry."""
    if isinstance(obj, dict) and "keys" in obj:
        obj = obj["keys"]
    entries = obj if isinstance(obj, list) else [obj]
    if not entries:
        raise PublicKeyFormatError("the public-keys JSON lists no key")
    out = []
    for n, entry in enumerate(entries):
        try:
            out.append(PublicKeyInfo.from_json(entry))
        except PublicKeyFormatError as exc:
            raise PublicKeyFormatError(f"key #{n + 1}: {exc}") from None
    return out


def load_public_keys(path: Path) -> list[PublicKeyInfo]:
    """The public keys in ``path`` for offline verification: a PEM file (one or more
    SubjectPublicKeyInfo blocks; the keys have no name, see ``keys_for``), the public-keys
    JSON (``llmring signing-keys export --format json``, or ``keys.json``), or C2SP
    verifier-key lines. Raises ``PublicKeyFormatError`` naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PublicKeyFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        text = None
    stripped = (text or "").strip()
    try:
        keys = _parse_public_key_text(stripped)
    except PublicKeyFormatError as exc:
        raise PublicKeyFormatError(f"{path}: {exc}") from None
    if keys is not None:
        return keys
    raise PublicKeyFormatError(
        f"{path} is not a public key file: expected a PEM public key, the public-keys JSON "
        "of `llmring signing-keys export --format json`, or a verifier key line "
        "(name+hexid+base64)")


def _parse_public_key_text(text: str) -> list[PublicKeyInfo] | None:
    """Keys from PEM, public-keys JSON or vkey lines; None if the text is none of them."""
    if not text:
        return None
    if "-----BEGIN" in text:
        return parse_pem_keys(text)
    if text[0] in "{[":
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise PublicKeyFormatError(f"invalid JSON ({exc})") from None
        return parse_public_keys_json(obj)
    if "+" in text:
        return [parse_vkey(line) for line in text.splitlines() if line.strip()]
    return None


def read_keys(directory: Path) -> list[PublicKeyInfo]:
    """The public keys listed in ``<directory>/keys.json``, oldest first; empty if there
    is no such file. Reads only: usable while another process holds the ledger."""
    path = Path(directory) / KEYS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return parse_public_keys_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, PublicKeyFormatError) as exc:
        raise KeyRingError(f"{path} is damaged ({exc}); restore it from a backup") from None


# -- private keys ------------------------------------------------------------------------
class SigningKey:
    """A private Ed25519 key with its public info. Its repr never shows the secret."""

    __slots__ = ("_key", "info")

    def __init__(self, seed: bytes, info: PublicKeyInfo) -> None:
        if len(seed) != SEED_SIZE:
            raise PublicKeyFormatError(f"an Ed25519 seed has {SEED_SIZE} bytes")
        key = nacl.signing.SigningKey(bytes(seed))
        if bytes(key.verify_key) != info.public_key:
            raise PublicKeyFormatError(f"the private key does not match public key "
                                       f"{info.key_id}")
        self._key = key
        self.info = info

    @classmethod
    def from_seed(cls, seed: bytes, name: str, created_at: str = "",
                  retired_at: str | None = None) -> SigningKey:
        public = bytes(nacl.signing.SigningKey(bytes(seed)).verify_key)
        return cls(seed, PublicKeyInfo.of(name, public, created_at, retired_at))

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A new random key named ``name``, created now."""
        return cls.from_seed(os.urandom(SEED_SIZE), name, now_text())

    @classmethod
    def from_skey(cls, skey: str) -> SigningKey:
        """Read a golang ``sumdb/note`` signer key
        ``PRIVATE+KEY+name+hexid+base64(0x01 ‖ seed)``."""
        prefix = "PRIVATE+KEY+"
        if not skey.startswith(prefix):
            raise PublicKeyFormatError("a signer key starts with PRIVATE+KEY+")
        parts = skey[len(prefix):].strip().split("+", 2)
        if len(parts) != 3 or not valid_key_name(parts[0]) or not _HEX_ID_RE.fullmatch(parts[1]):
            raise PublicKeyFormatError("malformed signer key: expected "
                                       "PRIVATE+KEY+name+hexid+base64key")
        name, hex_id, b64 = parts
        try:
            raw = b64std_decode(b64)
        except ValueError as exc:
            raise PublicKeyFormatError(f"signer key: the key is {exc}") from None
        if len(raw) != 1 + SEED_SIZE or raw[0] != SIGNATURE_TYPE_ED25519:
            raise PublicKeyFormatError("signer key: expected 0x01 and a 32-byte Ed25519 seed")
        key = cls.from_seed(raw[1:], name)
        if key.info.key_id != hex_id.lower():
            raise PublicKeyFormatError(f"signer key: key id {hex_id} does not match the key")
        return key

    def renamed(self, name: str) -> SigningKey:
        """The same key under another signed-note name (so another key id)."""
        info = self.info
        return SigningKey(self.seed(), PublicKeyInfo.of(name, info.public_key,
                                                        info.created_at, info.retired_at))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (deterministic)."""
        return self._key.sign(bytes(message)).signature

    def seed(self) -> bytes:
        return bytes(self._key)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.info.key_id!r}, name={self.info.name!r})"


class KeyRing:
    """The signing keys of one data directory (``<data>/keys``), named after the ledger
    origin. With ``log_names``, checkpoints of a log are signed by the same key under
    the log's origin as name (``checkpoint_key``). The ledger's lock keeps other
    processes out; this class makes every change crash-safe."""

    def __init__(self, directory: Path, name: str, *, log_names: bool = False) -> None:
        if not valid_key_name(name):
            raise KeyRingError(f"invalid key name {name!r}: it must be non-empty, without "
                               "spaces or '+'")
        self.directory = Path(directory)
        self.name = name
        self.log_names = log_names
        self._loaded: dict[str, SigningKey] = {}

    @property
    def keys_file(self) -> Path:
        return self.directory / KEYS_FILE

    def private_file(self, key_id_hex: str) -> Path:
        return self.directory / f"{key_id_hex}.key"

    # -- public side ---------------------------------------------------------------------
    def keys(self) -> list[PublicKeyInfo]:
        """Every key, current and retired, oldest first (empty before the first use)."""
        return read_keys(self.directory)

    def find(self, key_id: str) -> PublicKeyInfo | None:
        wanted = key_id.lower()
        return next((info for info in self.keys() if info.key_id == wanted), None)

    def current_info(self) -> PublicKeyInfo | None:
        """The current key's public info, or None before the first key exists."""
        infos = self.keys()
        if not infos:
            return None
        return self._current_of(infos)

    def _current_of(self, infos: list[PublicKeyInfo]) -> PublicKeyInfo:
        current = [info for info in infos if info.retired_at is None]
        if len(current) != 1:
            raise KeyRingError(
                f"{self.keys_file} lists {len(current)} current keys instead of one; "
                "restore it from a backup, or run `llmring signing-keys rotate` to retire "
                "them all and create a new current key")
        return current[0]

    # -- private side --------------------------------------------------------------------
    def current(self) -> SigningKey:
        """The current signing key; the first one is created and persisted on first use."""
        infos = self.keys()
        if not infos:
            key = self._create(set())
            self._save([key.info])
            return key
        return self._load_private(self._current_of(infos))

    def rotate(self) -> SigningKey:
        """Retire the current key (it stays listed, so its signatures keep verifying) and
        create a new current one. The new private file is durable before ``keys.json``
        names it, and ``keys.json`` changes in one atomic rename."""
        infos = self.keys()
        key = self._create({info.key_id for info in infos})
        retired_at = key.info.created_at
        kept = [replace(info, retired_at=retired_at) if info.retired_at is None else info
                for info in infos]
        self._save([*kept, key.info])
        return key

    def checkpoint_key(self, origin: str) -> SigningKey:
        """The key that signs checkpoints of the log ``origin``: the current key, under
        the name ``origin`` when the ring uses per-log names."""
        key = self.current()
        return key.renamed(origin) if self.log_names and origin != key.info.name else key

    def sign(self, message: bytes) -> tuple[str, bytes]:
        """``(key id, signature)`` of ``message`` with the current key."""
        key = self.current()
        return key.info.key_id, key.sign(message)

    def _create(self, taken: set[str]) -> SigningKey:
        private_dir(self.directory)
        while True:
            key = SigningKey.generate(self.name)
            if key.info.key_id not in taken and not self.private_file(key.info.key_id).exists():
                break
        payload = {"algorithm": ALGORITHM, "name": key.info.name, "key_id": key.info.key_id,
                   "seed": b64url(key.seed())}
        create_private(self.private_file(key.info.key_id), orjson.dumps(payload) + b"\n")
        self._loaded[key.info.key_id] = key
        return key

    def _save(self, infos: list[PublicKeyInfo]) -> None:
        doc = {"format": KEYS_FORMAT, **public_keys_json(infos)}
        write_atomic(self.keys_file, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")

    def _load_private(self, info: PublicKeyInfo) -> SigningKey:
        cached = self._loaded.get(info.key_id)
        if cached is not None and cached.info == info:
            return cached
        path = self.private_file(info.key_id)
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            raise KeyRingError(
                f"the private key file {path} of the current signing key {info.key_id} is "
                "missing: restore it from a backup, or run `llmring signing-keys rotate` "
                "to retire that key and sign with a new one") from None
        if mode & 0o077:
            raise KeyRingError(
                f"the private key file {path} has mode {mode:04o}, readable by others: "
                f"run `chmod 600 {path}` (and consider rotating the key if others could "
                "read it)")
        try:
            obj = orjson.loads(path.read_bytes())
            seed = b64url_decode(obj["seed"])
            key = SigningKey(seed, info)
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise KeyRingError(
                f"the private key file {path} is damaged or does not match public key "
                f"{info.key_id} in {self.keys_file}: restore it from a backup, or run "
                "`llmring signing-keys rotate`") from None
        self._loaded[info.key_id] = key
        return key
