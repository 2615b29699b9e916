"""Witness cosignatures of checkpoints: C2SP tlog-cosignature v1, Ed25519.

A cosignature is one more signed-note signature line on a checkpoint::

    — <witness name> base64(key id ‖ u64 timestamp, big-endian ‖ Ed25519 signature)

* key id = SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4] (0x04: the cosignature
  algorithm byte; the log's own signatures use 0x01, so the two never collide);
* the signed message is ``cosignature/v1\\n`` ‖ ``time <timestamp>\\n`` ‖ the checkpoint's
  whole note body (every line up to, not including, the blank line);
* the timestamp is POSIX seconds, at most 2^63 - 1.

A cosigner's public key is written as a C2SP verifier key ``name+hexid+base64(0x04 ‖ key)``
(``CosignerKey.vkey``). Log verifiers (``checkpoint.verify_note``) ignore cosignature lines,
since their key ids are computed with another algorithm byte.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from ledger.errors import CosignatureError
from ledger.tlog.checkpoint import (
    SIGNATURE_PREFIX,
    Note,
    NoteSignature,
    format_note,
    parse_note,
)
from ledger.tlog.signing import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    b64std_decode,
    valid_key_name,
    verify_signature,
)

COSIGNATURE_TYPE = 0x04  # C2SP tlog-cosignature v1, Ed25519
HEADER = "cosignature/v1\n"
TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = 2**63 - 1
COSIGNATURE_SIZE = TIMESTAMP_SIZE + SIGNATURE_SIZE  # after the 4-byte key id


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]."""
    return sha256(name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_TYPE])
                  + bytes(public_key)).digest()[:4]


@dataclass(frozen=True)
class CosignerKey:
    """A witness's public key: its name and 32-byte Ed25519 key."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not valid_key_name(self.name):
            raise CosignatureError(f"invalid witness name {self.name!r}: it must be "
                                   "non-empty, without spaces or '+'")
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise CosignatureError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, "
                                   f"not {len(self.public_key)}")

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def vkey(self) -> str:
        """``name+hexid+base64(0x04 ‖ key)``."""
        raw = bytes([COSIGNATURE_TYPE]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode('ascii')}"

    def matches(self, sig: NoteSignature) -> bool:
        return sig.name == self.name and sig.key_hash == self.key_id


def parse_cosigner_vkey(vkey: str) -> CosignerKey:
    """Read ``name+hexid+base64(0x04 ‖ key)``; rejects another algorithm byte (0x01 is a
    log key, not a witness key), a bad length or a key id that does not match."""
    text = vkey.strip() if isinstance(vkey, str) else ""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CosignatureError(f"malformed witness key {vkey!r}: expected "
                               "name+hexid+base64key (`llmring witness key` prints it)")
    name, hex_id, b64 = parts
    try:
        raw = b64std_decode(b64)
    except ValueError as exc:
        raise CosignatureError(f"witness key {name}: the key is {exc}") from None
    if not raw or raw[0] != COSIGNATURE_TYPE:
        kind = f"0x{raw[0]:02x}" if raw else "none"
        hint = " (that is a log's signing key, not a witness key)" if raw[:1] == b"\x01" else ""
        raise CosignatureError(f"witness key {name}: algorithm byte {kind}{hint}; a "
                               "tlog-cosignature v1 key has 0x04")
    key = CosignerKey(name, raw[1:])
    if key.key_id.hex() != hex_id.lower():
        raise CosignatureError(f"witness key {name}: key id {hex_id} does not match the key "
                               f"(expected {key.key_id.hex()})")
    return key


def cosigner_of(key: SigningKey) -> CosignerKey:
    """The public cosigner key of a private key (named after ``key.info.name``)."""
    return CosignerKey(key.info.name, key.info.public_key)


def cosigned_message(body: str, timestamp: int) -> bytes:
    """The bytes a cosignature signs: header line, time line, the checkpoint body."""
    _check_timestamp(timestamp)
    if not body.endswith("\n"):
        raise CosignatureError("a checkpoint body ends with a newline")
    return f"{HEADER}time {timestamp}\n{body}".encode()


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not (
            0 <= timestamp <= MAX_TIMESTAMP):
        raise CosignatureError(f"a cosignature timestamp is an integer in 0..2^63-1, not "
                               f"{timestamp!r}")


def cosign(body: str, key: SigningKey, timestamp: int | None = None) -> NoteSignature:
    """The cosignature of the checkpoint ``body`` by ``key`` at ``timestamp`` (POSIX
    seconds, now by default). ``.line()`` is the signature line to add to the note."""
    when = int(time.time()) if timestamp is None else timestamp
    cosigner = cosigner_of(key)
    signature = key.sign(cosigned_message(body, when))
    return NoteSignature(cosigner.name, cosigner.key_id,
                         when.to_bytes(TIMESTAMP_SIZE, "big") + signature)


@dataclass(frozen=True)
class Cosignature:
    """A parsed cosignature line: who, when (POSIX seconds), the 64-byte signature."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes


def parse_cosignature(sig: NoteSignature) -> Cosignature:
    """The timestamp and signature of a cosignature line; ``CosignatureError`` if it does
    not have the size of an Ed25519 tlog-cosignature (4 + 8 + 64 bytes)."""
    if len(sig.signature) != COSIGNATURE_SIZE:
        raise CosignatureError(f"the signature of {sig.name} has {4 + len(sig.signature)} "
                               f"bytes, not the {4 + COSIGNATURE_SIZE} of a cosignature")
    timestamp = int.from_bytes(sig.signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise CosignatureError(f"the cosignature of {sig.name} has a timestamp beyond 2^63-1")
    return Cosignature(sig.name, sig.key_hash, timestamp, sig.signature[TIMESTAMP_SIZE:])


def verify_cosignature(body: str, sig: NoteSignature, key: CosignerKey) -> int:
    """Check that ``sig`` is ``key``'s cosignature of the checkpoint ``body``; returns its
    timestamp. Raises ``CosignatureError`` saying why not."""
    if not key.matches(sig):
        raise CosignatureError(f"the line of {sig.name} ({sig.key_hash.hex()}) is not by "
                               f"witness {key.name} ({key.key_id.hex()})")
    cosig = parse_cosignature(sig)
    message = cosigned_message(body, cosig.timestamp)
    if not verify_signature(key.public_key, message, cosig.signature):
        raise CosignatureError(f"the cosignature of {key.name} does not verify: the "
                               "checkpoint or the cosignature was altered")
    return cosig.timestamp


def cosignatures_of(note: str | Note, keys: Sequence[CosignerKey]
                    ) -> tuple[dict[str, int], list[str]]:
    """The witnesses among ``keys`` that validly cosigned ``note`` (name → timestamp),
    and the problems with lines that claim to be theirs but do not verify. Lines of other
    keys are ignored."""
    parsed = parse_note(note) if isinstance(note, str) else note
    valid: dict[str, int] = {}
    problems: list[str] = []
    for sig in parsed.signatures:
        for key in keys:
            if key.matches(sig):
                try:
                    valid[key.name] = verify_cosignature(parsed.text, sig, key)
                except CosignatureError as exc:
                    problems.append(str(exc))
    return valid, problems


def add_signatures(note: str, sigs: Sequence[NoteSignature]) -> str:
    """``note`` with ``sigs`` appended; a line with the same name and key id as one
    already there replaces it (a fresher cosignature by the same witness)."""
    parsed = parse_note(note)
    kept = list(parsed.signatures)
    for sig in sigs:
        kept = [s for s in kept if (s.name, s.key_hash) != (sig.name, sig.key_hash)]
        kept.append(sig)
    return format_note(Note(parsed.text, tuple(kept)))


def parse_signature_line(line: str) -> NoteSignature:
    """One ``— name base64`` line (with or without its newline)."""
    text = line if line.endswith("\n") else line + "\n"
    if not text.startswith(SIGNATURE_PREFIX):
        raise CosignatureError(f"not a signature line: {line[:40]!r}")
    return parse_note("x\n\n" + text).signatures[0]


__all__ = ["COSIGNATURE_TYPE", "Cosignature", "CosignatureError", "CosignerKey",
           "add_signatures", "cosign", "cosignatures_of", "cosigned_message",
           "cosigner_key_id", "cosigner_of", "parse_cosignature", "parse_cosigner_vkey",
           "parse_signature_line", "verify_cosignature"]
