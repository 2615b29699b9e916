"""Signed checkpoints of the projects' logs (docs/formats.md): C2SP signed-note v1 parsing,
signing and verification, C2SP tlog-checkpoint v1 bodies, and the store of every
checkpoint the ledger has signed.

A checkpoint note looks like::

    llmring-ledger.local/acme          origin: <ledger origin>/<project>
    1234                               tree size, decimal
    2Xh…=                              base64 of the 32-byte RFC 9162 root

    — llmring-ledger.local <base64(key id ‖ Ed25519 signature)>

Verifiers ignore signature lines from keys they do not know (so witnesses can cosign),
reject the note if a known key's signature fails, and reject it if no known key signed
it. A ``Verifier`` with an empty name (a key from a PEM file, whose name is unknown)
matches any signature line whose key id is the one its key has under that line's name.

``CheckpointStore`` keeps ``<data>/checkpoints/<origin, percent-encoded>.jsonl``: one
JSON line per signed checkpoint, appended durably, oldest first.
"""

from __future__ import annotations

import base64
import os
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ledger.errors import CheckpointError, NoteError
from ledger.storage.durable import append_line, private_dir
from ledger.tlog.signing import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    KeyRing,
    PublicKeyFormatError,
    PublicKeyInfo,
    SigningKey,
    b64std_decode,
    key_id,
    now_text,
    parse_vkey,
    valid_key_name,
    verify_signature,
)

MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "— "  # U+2014 em dash, space
HASH_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1


# -- signed notes ------------------------------------------------------------------------
@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id, signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        b64 = base64.b64encode(self.key_hash + self.signature).decode("ascii")
        return f"{SIGNATURE_PREFIX}{self.name} {b64}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]


def _check_text(text: str, what: str) -> None:
    for n, ch in enumerate(text):
        if ch != "\n" and (ord(ch) < 0x20):
            raise NoteError(f"{what} contains the control character U+{ord(ch):04X} at "
                            f"offset {n}; only newlines are allowed")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise NoteError(f"{what} is not valid UTF-8 (lone surrogate at offset {n})")


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note strictly (C2SP signed-note v1); ``NoteError`` says what is
    wrong. Signatures are not verified here."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"the note is not valid UTF-8 (byte {exc.start})") from None
    elif isinstance(data, str):
        text = data
    else:
        raise NoteError(f"a note is text, not {type(data).__name__}")
    _check_text(text, "the note")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line separating its text from the signature "
                        "lines")
    body, sigs = text[:split + 1], text[split + 2:]
    if not sigs:
        raise NoteError("the note has no signature lines after its blank line")
    if not sigs.endswith("\n"):
        raise NoteError("the note's last signature line does not end with a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signature lines; at most "
                        f"{MAX_SIGNATURES} are accepted")
    signatures = []
    for n, line in enumerate(lines, 1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"signature line {n} does not start with an em dash (U+2014) and "
                            f"a space: {line[:40]!r}")
        name, sep, b64 = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not sep or not b64:
            raise NoteError(f"signature line {n} has no signature after the key name")
        if not valid_key_name(name):
            raise NoteError(f"signature line {n}: invalid key name {name!r}")
        try:
            raw = b64std_decode(b64)
        except ValueError as exc:
            raise NoteError(f"signature line {n} ({name}): the signature is {exc}") from None
        if len(raw) < 5:
            raise NoteError(f"signature line {n} ({name}): {len(raw)} bytes is too short for "
                            "a key id and a signature")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(body, tuple(signatures))


def format_note(note: Note) -> str:
    """The note's text, a blank line, its signature lines."""
    return note.text + "\n" + "".join(sig.line() for sig in note.signatures)


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note's text must end with a newline")
    _check_text(text, "the note text")


def sign_note(text: str, keys: Sequence[SigningKey]) -> str:
    """``text`` signed by each of ``keys`` (Ed25519 is deterministic, so the same text and
    keys give the same note)."""
    _check_note_text(text)
    if not keys:
        raise NoteError("a note needs at least one signing key")
    sigs = []
    for key in keys:
        if not valid_key_name(key.info.name):
            raise NoteError(f"key {key.info.key_id} has no valid signed-note name "
                            f"({key.info.name!r})")
        sigs.append(NoteSignature(key.info.name, bytes.fromhex(key.info.key_id),
                                  key.sign(text.encode("utf-8"))))
    return format_note(Note(text, tuple(sigs)))


@dataclass(frozen=True)
class Verifier:
    """A trusted Ed25519 key for signed notes. ``name == ""`` (a key from a PEM file)
    matches any line whose key id is ``key_id(line name, public_key)``; a named key also
    matches lines named ``<name>/<log>`` with the key id of that name: a ledger key
    signs its logs' checkpoints under their origins when the directory uses per-log key
    names (``ledger.storage.config.log_key_names``), and only its holder can."""

    name: str
    key_hash: bytes
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        try:
            return cls.from_info(parse_vkey(vkey))
        except PublicKeyFormatError as exc:
            raise NoteError(str(exc)) from None

    @classmethod
    def from_info(cls, info: PublicKeyInfo) -> Verifier:
        return cls(info.name, key_id(info.name, info.public_key), info.public_key)

    def matches(self, sig: NoteSignature) -> bool:
        if self.name and sig.name == self.name:
            return sig.key_hash == self.key_hash
        if self.name and not sig.name.startswith(self.name + "/"):
            return False
        return sig.key_hash == key_id(sig.name, self.public_key)


def verify_note(data: str | bytes, verifiers: Sequence[Verifier]
                ) -> tuple[Note, list[NoteSignature]]:
    """Parse and verify a signed note: returns the note and the signatures made by the
    given keys. Unknown keys' lines are ignored; a known key's bad signature, or no known
    signature at all, raises ``NoteError``."""
    note = parse_note(data)
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    for sig in note.signatures:
        known = [v for v in verifiers if v.matches(sig)]
        if not known:
            continue
        if any(len(v.public_key) != PUBLIC_KEY_SIZE for v in known):
            raise NoteError(f"verifier for {sig.name} has a malformed public key")
        if len(sig.signature) != SIGNATURE_SIZE or not any(
                verify_signature(v.public_key, message, sig.signature) for v in known):
            raise NoteError(f"the signature of {sig.name} (key id {sig.key_hash.hex()}) does "
                            "not verify: the note was altered or signed by another key")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        names = ", ".join(f"{s.name} ({s.key_hash.hex()})" for s in note.signatures)
        raise NoteError(f"the note is signed by none of the given keys (it is signed by "
                        f"{names})")
    return note, verified


# -- checkpoints -------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        _validate_checkpoint(self)
        root = base64.b64encode(self.root).decode("ascii")
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), root,
                                                *self.extensions))


def _validate_checkpoint(cp: Checkpoint) -> None:
    if not cp.origin or "\n" in cp.origin:
        raise CheckpointError("a checkpoint origin must be a non-empty line")
    if not isinstance(cp.size, int) or isinstance(cp.size, bool) or not (
            0 <= cp.size <= MAX_TREE_SIZE):
        raise CheckpointError(f"tree size {cp.size!r} is not an integer in 0..2^64-1")
    if len(cp.root) != HASH_SIZE:
        raise CheckpointError(f"the root hash has {len(cp.root)} bytes, expected {HASH_SIZE}")
    for ext in cp.extensions:
        if not ext or "\n" in ext:
            raise CheckpointError("checkpoint extension lines must be non-empty lines")


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body strictly: an origin line, a decimal tree size without
    leading zeros, the base64 of a 32-byte root, then optional non-empty extension lines,
    every line ending in a newline."""
    if not body.endswith("\n"):
        raise CheckpointError("the checkpoint does not end with a newline")
    _check_text(body, "the checkpoint")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"the checkpoint has {len(lines)} lines; it needs an origin, "
                              "a tree size and a root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("the checkpoint's origin line is empty")
    if not size_text.isascii() or not size_text.isdigit() or (
            len(size_text) > 1 and size_text[0] == "0"):
        raise CheckpointError(f"the tree size {size_text!r} is not a decimal number without "
                              "leading zeros")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError(f"the tree size {size_text} does not fit in 64 bits")
    try:
        root = b64std_decode(root_text)
    except ValueError as exc:
        raise CheckpointError(f"the root hash {root_text!r} is {exc}") from None
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash has {len(root)} bytes, expected {HASH_SIZE}")
    for n, ext in enumerate(extensions, 4):
        if not ext:
            raise CheckpointError(f"line {n} of the checkpoint is empty")
    return Checkpoint(origin, size, root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str
    issued_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.checkpoint.origin,
            "size": self.checkpoint.size,
            "root": self.checkpoint.root.hex(),
            "root_b64": base64.b64encode(self.checkpoint.root).decode("ascii"),
            "note": self.note,
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_json(cls, obj: Any) -> SignedCheckpoint:
        """Read ``to_json``'s shape back; the checkpoint is parsed from the note, and must
        agree with the JSON's origin, size and root."""
        if not isinstance(obj, dict) or not isinstance(obj.get("note"), str):
            raise CheckpointError('a signed checkpoint JSON needs a "note" string')
        cp = parse_checkpoint(parse_note(obj["note"]).text)
        for field, value in (("origin", cp.origin), ("size", cp.size),
                             ("root", cp.root.hex())):
            if field in obj and obj[field] != value:
                raise CheckpointError(f"the JSON's {field} {obj[field]!r} disagrees with its "
                                      f"note ({value!r})")
        return cls(cp, obj["note"], str(obj.get("issued_at") or ""))


def sign_checkpoint(cp: Checkpoint, keys: Sequence[SigningKey]) -> SignedCheckpoint:
    """Sign ``cp`` with each of ``keys``; ``issued_at`` is now."""
    return SignedCheckpoint(cp, sign_note(cp.body(), keys), now_text())


def verify_checkpoint(note: str, verifiers: Sequence[Verifier], *,
                      origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body; with ``origin``, also require
    that origin."""
    verified_note, _ = verify_note(note, verifiers)
    cp = parse_checkpoint(verified_note.text)
    if origin is not None and cp.origin != origin:
        raise CheckpointError(f"the checkpoint is for origin {cp.origin!r}, not {origin!r}")
    return cp


# -- the store ---------------------------------------------------------------------------
class CheckpointStore:
    """Every checkpoint the ledger signed, per log origin, in append-only JSON-lines files.
    ``all`` scans one origin's file, ``latest`` reads only its end, and ``at_size`` finds
    the line by an index of sizes and offsets kept in memory (``_SizeIndex``, one per
    origin file, owned by this store: one store per open data directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._size_indexes: dict[Path, _SizeIndex] = {}
        self._size_lock = threading.Lock()

    def path(self, origin: str) -> Path:
        return self.directory / f"{quote(origin, safe='')}.jsonl"

    def issue(self, origin: str, size: int, root: bytes, keyring: KeyRing) -> SignedCheckpoint:
        """Sign the log state (origin, size, root) with the current key and append it
        durably; the latest stored checkpoint is returned instead if it has the same size
        and root. Refuses a state that contradicts the latest checkpoint (a smaller log, or
        another root at the same size): signing it would publish a fork."""
        cp = Checkpoint(origin, size, bytes(root))
        cp.body()  # validate before touching anything
        latest = self.latest(origin)
        if latest is not None:
            old = latest.checkpoint
            if old.size == size and old.root == cp.root:
                return latest
            if old.size >= size:
                raise CheckpointError(
                    f"refusing to sign {origin} at size {size} (root {cp.root.hex()}): a "
                    f"checkpoint at size {old.size} with root {old.root.hex()} was already "
                    "issued, so the log lost or changed entries and signing would publish a "
                    "fork of it; restore the data directory from a backup and run "
                    "`llmring ledger verify`")
        signed = sign_checkpoint(cp, [keyring.checkpoint_key(origin)])
        private_dir(self.directory)
        append_line(self.path(origin), orjson.dumps(signed.to_json()) + b"\n")
        return signed

    def all(self, origin: str) -> Iterator[SignedCheckpoint]:
        """Every stored checkpoint of ``origin``, oldest first."""
        try:
            fh = self.path(origin).open("rb")
        except FileNotFoundError:
            return
        with fh:
            for line in fh:
                if line.endswith(b"\n"):  # a torn last line is not a checkpoint
                    yield self._read(line, origin)

    def latest(self, origin: str) -> SignedCheckpoint | None:
        line = _last_line(self.path(origin))
        return None if line is None else self._read(line, origin)

    def at_size(self, origin: str, size: int) -> SignedCheckpoint | None:
        """The checkpoint of ``origin`` signed at ``size``, if any."""
        path = self.path(origin)
        with self._size_lock:
            index = self._size_indexes.get(path)
            if index is None:
                index = self._size_indexes[path] = _SizeIndex()
            line = index.line_at(path, size, lambda raw: self._read(raw, origin))
        if line is None:
            return None
        signed = self._read(line, origin)
        return signed if signed.checkpoint.size == size else None

    def _read(self, line: bytes, origin: str) -> SignedCheckpoint:
        try:
            return SignedCheckpoint.from_json(orjson.loads(line))
        except (orjson.JSONDecodeError, NoteError) as exc:
            raise CheckpointError(f"{self.path(origin)} holds a damaged checkpoint ({exc}); "
                                  "restore it from a backup") from None


class _SizeIndex:
    """The sizes of the checkpoints in one store file, in file order, with the offset of
    each line, extended with the lines appended since the last call. ``issue`` appends
    strictly growing sizes, so a size is found by bisection; a file whose sizes do not
    grow (edited by hand) is searched line by line. A file that shrank or was replaced
    (another inode) is indexed anew."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, inode: tuple[int, int] | None) -> None:
        self.inode = inode
        self.end = 0  # the offset after the last complete line indexed
        self.sizes = array("Q")
        self.offsets = array("q")
        self.growing = True

    def line_at(self, path: Path, size: int,
                read: Callable[[bytes], SignedCheckpoint]) -> bytes | None:
        """The line of the checkpoint at ``size`` (``read(line)`` parses a line whose
        JSON does not state its size), or None."""
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            self.reset(None)
            return None
        with fh:
            st = os.fstat(fh.fileno())
            if (st.st_dev, st.st_ino) != self.inode or st.st_size < self.end:
                self.reset((st.st_dev, st.st_ino))
            fh.seek(self.end)
            for line in fh:
                if not line.endswith(b"\n"):  # a torn last line is not a checkpoint
                    break
                self._add(line, read)
            if self.growing:
                i = bisect_left(self.sizes, size)
                found = i < len(self.sizes) and self.sizes[i] == size
            else:
                i = next((k for k, s in enumerate(self.sizes) if s == size), -1)
                found = i >= 0
            if not found:
                return None
            fh.seek(self.offsets[i])
            return fh.readline()

    def _add(self, line: bytes, read: Callable[[bytes], SignedCheckpoint]) -> None:
        try:
            size = orjson.loads(line).get("size")
        except (orjson.JSONDecodeError, AttributeError):
            size = None
        if type(size) is not int or not 0 <= size < 2**64:
            size = read(line).checkpoint.size
        if self.sizes and size <= self.sizes[-1]:
            self.growing = False
        self.sizes.append(size)
        self.offsets.append(self.end)
        self.end += len(line)


def _last_line(path: Path, block: int = 8192) -> bytes | None:
    """The last complete (newline-terminated) line of ``path``, or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        end = os.fstat(fd).st_size
        data = b""
        pos = end
        while pos > 0:
            start = max(0, pos - block)
            data = os.pread(fd, pos - start, start) + data
            pos = start
            complete = data[:data.rfind(b"\n") + 1] if b"\n" in data else b""
            if complete:
                i = complete.rfind(b"\n", 0, len(complete) - 1)
                if i >= 0 or pos == 0:
                    return complete[i + 1:]
        return None
    finally:
        os.close(fd)
