"""A witness: an independent party that keeps the latest checkpoint of each log it
watches and cosigns a new checkpoint only if the log's consistency proof shows it extends
that one (C2SP tlog-witness semantics, tlog-cosignature v1 signatures).

The witness directory holds::

    witness.json          {"format", "name"}: the witness's name (its key name)
    witness.key           its Ed25519 seed, mode 0600, created on first use
    logs.json             origin → the log's public keys (added with ``add_log``)
    state/<origin>.json   the latest checkpoint it cosigned, with its cosignature

Every file is written durably (fsync, atomic rename). A checkpoint that does not extend
the one held (a fork, a truncation, a rewrite) is refused with ``WitnessRefusal``, a
``TamperEvidence`` naming both checkpoints, and the held checkpoint stays.

``add_checkpoint`` answers the body of a C2SP tlog-witness ``add-checkpoint`` request
with the protocol's status, content type and body (``llmring witness serve`` puts it on
HTTP). Checking a request against the held size and persisting the new checkpoint happen
under one lock per origin (a lock file, so threads and processes alike are serialised),
and the state is durable before the answer: concurrent submissions never roll back.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ledger.errors import WitnessError, WitnessRefusal
from ledger.storage.durable import create_private, write_atomic
from ledger.tlog.checkpoint import (
    Checkpoint,
    NoteError,
    Verifier,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
    verify_note,
)
from ledger.tlog.consistency import FORMAT as CONSISTENCY_FORMAT
from ledger.tlog.cosignature import CosignerKey, add_signatures, cosign, cosigner_of
from ledger.tlog.merkle import EMPTY_ROOT, ProofError, verify_append_only
from ledger.tlog.signing import (
    PublicKeyFormatError,
    PublicKeyInfo,
    SigningKey,
    b64url,
    b64url_decode,
    now_text,
    parse_public_keys_json,
    public_keys_json,
    valid_key_name,
)

WITNESS_FORMAT = "llmring-witness/v1"
MAX_PROOF_LINES = 63  # C2SP tlog-witness: a client MUST NOT send more
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to an ``add-checkpoint`` request."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class Witness:
    """The witness kept in ``directory``; ``name`` creates it there on first use."""

    def __init__(self, directory: Path, name: str | None = None) -> None:
        self.directory = Path(directory)
        meta = self.directory / "witness.json"
        if not meta.exists():
            if name is None:
                raise WitnessError(f"no witness in {self.directory}: create one with "
                                   "`llmring witness init --name NAME`")
            if not valid_key_name(name):
                raise WitnessError(f"invalid witness name {name!r}: use a schema-less URL "
                                   "such as witness.example.com/w1 (no spaces, no '+')")
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(meta, orjson.dumps({"format": WITNESS_FORMAT, "name": name}) + b"\n")
        try:
            self.name = str(orjson.loads(meta.read_bytes())["name"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise WitnessError(f"{meta} is damaged ({exc}); restore it from a backup"
                               ) from None
        if name is not None and name != self.name:
            raise WitnessError(f"{self.directory} holds witness {self.name!r}, not {name!r}")
        self._key: SigningKey | None = None

    # -- keys ----------------------------------------------------------------------------
    def signing_key(self) -> SigningKey:
        """The witness's private key, created (mode 0600) on first use."""
        if self._key is not None:
            return self._key
        path = self.directory / "witness.key"
        if not path.exists():
            key = SigningKey.generate(self.name)
            payload = {"algorithm": "ed25519", "name": self.name, "seed": b64url(key.seed()),
                       "created_at": key.info.created_at}
            with contextlib.suppress(FileExistsError):  # else another process won: use its
                create_private(path, orjson.dumps(payload) + b"\n")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise WitnessError(f"the witness key {path} has mode {mode:04o}, readable by "
                               f"others: run `chmod 600 {path}`")
        try:
            obj = orjson.loads(path.read_bytes())
            self._key = SigningKey.from_seed(b64url_decode(obj["seed"]), self.name)
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise WitnessError(f"the witness key {path} is damaged: restore it from a "
                               "backup") from None
        return self._key

    def public_key(self) -> CosignerKey:
        """The witness's public key (``.vkey()`` goes into verifiers' policy files)."""
        return cosigner_of(self.signing_key())

    # -- logs ----------------------------------------------------------------------------
    def logs(self) -> dict[str, list[PublicKeyInfo]]:
        """origin → the log's public keys."""
        path = self.directory / "logs.json"
        try:
            obj = orjson.loads(path.read_bytes())
            return {origin: parse_public_keys_json(keys)
                    for origin, keys in obj["logs"].items()}
        except FileNotFoundError:
            return {}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError,
                PublicKeyFormatError) as exc:
            raise WitnessError(f"{path} is damaged ({exc}); restore it from a backup"
                               ) from None

    def add_log(self, origin: str, keys: Sequence[PublicKeyInfo]) -> None:
        """Watch the log ``origin``, whose checkpoints are signed by one of ``keys``
        (replaces the keys of a log already watched, e.g. after a rotation)."""
        if not origin or any(c.isspace() for c in origin):
            raise WitnessError(f"invalid log origin {origin!r}: it is the first line of the "
                               "log's checkpoints, e.g. ledger.example/acme")
        if not keys:
            raise WitnessError(f"give at least one public key of the log {origin}")
        with self._locked():
            logs = self.logs()
            logs[origin] = list(keys)
            doc = {"format": WITNESS_FORMAT,
                   "logs": {o: public_keys_json(k)["keys"] for o, k in sorted(logs.items())}}
            write_atomic(self.directory / "logs.json",
                         orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")

    # -- state ---------------------------------------------------------------------------
    def _state_path(self, origin: str) -> Path:
        return self.directory / "state" / f"{quote(origin, safe='')}.json"

    def latest(self, origin: str) -> dict[str, Any] | None:
        """The latest checkpoint cosigned for ``origin``: ``{"origin", "size", "root",
        "note", "cosigned_at"}`` (``note`` carries the cosignature), or None."""
        path = self._state_path(origin)
        try:
            return dict(orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise WitnessError(f"{path} is damaged ({exc}); restore it from a backup"
                               ) from None

    def _held(self, origin: str) -> tuple[Checkpoint, str] | None:
        state = self.latest(origin)
        if state is None:
            return None
        cp = Checkpoint(origin, int(state["size"]), bytes.fromhex(state["root"]))
        return cp, str(state["note"])

    @contextmanager
    def _locked(self, origin: str | None = None) -> Iterator[None]:
        """The directory's lock (``logs.json``), or with ``origin`` that log's state lock:
        a ``flock`` on a lock file, exclusive across threads and processes alike."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / ".lock"
        if origin is not None:
            path = self._state_path(origin).with_suffix(".lock")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- cosigning -----------------------------------------------------------------------
    def cosign(self, note: str | None, proof: Sequence[bytes] | dict[str, Any] = (),
               *, timestamp: int | None = None) -> str:
        """Cosign ``note`` if it extends the checkpoint held for its log; returns the note
        with the witness's cosignature added, and holds it from now on.

        ``proof`` is the RFC 9162 consistency proof from the held checkpoint's size (empty
        for the first checkpoint of a log, or the same one again), or a
        ``ledger-consistency/v1`` bundle (``llmring log consistency -o``; then ``note`` may
        be None: the bundle's new checkpoint). Raises ``WitnessError`` for an unknown log,
        a bad signature or a proof from another size, ``WitnessRefusal`` for a checkpoint
        that does not extend the held one."""
        note, hashes, from_size = _read_proof(note, proof)
        try:
            origin = _origin_of(note)
        except NoteError as exc:
            raise WitnessError(f"not a checkpoint note: {exc}") from None
        keys = self.logs().get(origin)
        if keys is None:
            raise WitnessError(f"this witness does not watch the log {origin!r}: add it with "
                               f"`llmring witness add-log {origin} --public-key FILE`")
        try:
            new = verify_checkpoint(note, [Verifier.from_info(k) for k in keys],
                                    origin=origin)
        except NoteError as exc:
            raise WitnessError(f"the checkpoint of {origin} is not validly signed by the "
                               f"log's keys: {exc}") from None
        with self._locked(origin):
            held = self._held(origin)
            self._check_extends(held, new, note, hashes, from_size)
            return self._cosign_and_hold(origin, new, note, timestamp)

    def _cosign_and_hold(self, origin: str, new: Checkpoint, note: str,
                         timestamp: int | None) -> str:
        """Cosign ``note`` and hold it (durably) — under ``_locked(origin)``."""
        sig = cosign(parse_note(note).text, self.signing_key(), timestamp)
        cosigned = add_signatures(note, [sig])
        state = {"origin": origin, "size": new.size, "root": new.root.hex(),
                 "note": cosigned, "cosigned_at": now_text()}
        path = self._state_path(origin)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, orjson.dumps(state, option=orjson.OPT_INDENT_2) + b"\n")
        return cosigned

    # -- C2SP tlog-witness -----------------------------------------------------------------
    def add_checkpoint(self, body: bytes, *, timestamp: int | None = None) -> Answer:
        """Answer an ``add-checkpoint`` request body (c2sp.org/tlog-witness): 200 with
        the cosignature line; 400 malformed or old size above the checkpoint's; 403 no
        signature by the log's keys; 404 unknown origin; 409 (``text/x.tlog.size``, the
        held size) when the old size is not the held one, or the same size has another
        root; 422 when the consistency proof does not verify."""
        try:
            old, proof, note = _parse_request(body)
            text = parse_note(note).text
            cp = parse_checkpoint(text)
        except (NoteError, ValueError) as exc:
            return Answer(400, f"malformed add-checkpoint request: {exc}\n")
        keys = self.logs().get(cp.origin)
        if keys is None:
            return Answer(404, f"unknown log origin {cp.origin!r}\n")
        try:
            verify_note(note, [Verifier.from_info(k) for k in keys])
        except NoteError as exc:
            return Answer(403, f"no valid signature by a trusted key of {cp.origin}: {exc}\n")
        if old > cp.size:
            return Answer(400, f"old size {old} is larger than the checkpoint's {cp.size}\n")
        if old == 0 and proof:
            return Answer(400, "the consistency proof must be empty when the old size is 0\n")
        with self._locked(cp.origin):
            held = self._held(cp.origin)
            held_size, held_root = (held[0].size, held[0].root) if held else (0, EMPTY_ROOT)
            if old != held_size:
                return Answer(409, f"{held_size}\n", SIZE_CONTENT_TYPE)
            if old == cp.size:
                if cp.root != held_root:
                    return Answer(409, f"{held_size}\n", SIZE_CONTENT_TYPE)
            else:
                try:
                    verify_append_only(old, cp.size, held_root, cp.root, proof)
                except ProofError as exc:
                    return Answer(422, f"the consistency proof from size {old} to "
                                       f"{cp.size} does not verify: {exc}\n")
            cosigned = self._cosign_and_hold(cp.origin, cp, note, timestamp)
        return Answer(200, parse_note(cosigned).signatures[-1].line())

    def _check_extends(self, held: tuple[Checkpoint, str] | None, new: Checkpoint,
                       note: str, proof: list[bytes], from_size: int | None) -> None:
        if held is None:
            old, old_note = Checkpoint(new.origin, 0, EMPTY_ROOT), ""
        else:
            old, old_note = held
        what = (f"{new.origin} at size {new.size} (root {new.root.hex()})")
        mine = f"size {old.size} (root {old.root.hex()})"
        if new.size < old.size or (new.size == old.size and new.root != old.root):
            kind = ("smaller than" if new.size < old.size else "a different root at the "
                    "same size as")
            raise WitnessRefusal(
                f"refusing to cosign {what}: it is {kind} the checkpoint this witness holds "
                f"at {mine}, so the log was truncated or forked; keep both notes, they are "
                "the evidence", old_note, note)
        if new.size == old.size:
            return  # the same checkpoint again: cosign it afresh
        if old.size and not proof:  # a proof from a non-empty tree is never empty
            raise WitnessError(
                f"this witness holds {new.origin} at {mine}: cosigning size {new.size} needs "
                "the consistency proof from it (`llmring log consistency --from HELD -o "
                "BUNDLE`, then `llmring witness cosign --proof BUNDLE`)")
        if from_size is not None and from_size != old.size:
            raise WitnessError(
                f"the proof starts at size {from_size}, but this witness holds {new.origin} "
                f"at {mine}: make the proof from the witness's checkpoint (`llmring witness "
                "show` prints it; `llmring log consistency --from FILE -o BUNDLE`)")
        try:
            verify_append_only(old.size, new.size, old.root, new.root, proof)
        except ProofError as exc:
            raise WitnessRefusal(
                f"refusing to cosign {what}: it does not extend the checkpoint this witness "
                f"holds at {mine} ({exc}); the log was rewritten or forked, or the proof is "
                "not from this log; keep both notes, they are the evidence",
                old_note, note) from None


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, proof hashes, checkpoint note) of an ``add-checkpoint`` body; raises
    ``ValueError`` saying what is malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValueError("no empty line between the old size and proof lines and the "
                         "checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise ValueError(f"the first line must be `old <size>`, not {lines[0][:40]!r}")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ValueError(f"{len(lines) - 1} consistency proof lines; at most "
                         f"{MAX_PROOF_LINES}")
    proof = []
    for line in lines[1:]:
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 32:
            raise ValueError(f"a proof line must be a base64 32-byte hash, not "
                             f"{line[:60]!r}")
        proof.append(digest)
    return int(match.group(1)), proof, note


def _origin_of(note: str) -> str:
    text = parse_note(note).text
    return text.split("\n", 1)[0]


def _read_proof(note: str | None, proof: Sequence[bytes] | dict[str, Any]
                ) -> tuple[str, list[bytes], int | None]:
    """(note, proof hashes, the size the proof starts from when the bundle says)."""
    if not isinstance(proof, dict):
        if note is None:
            raise WitnessError("give the checkpoint note to cosign")
        return note, [bytes(h) for h in proof], None
    if proof.get("format") != CONSISTENCY_FORMAT or not isinstance(proof.get("new"), str):
        raise WitnessError(f'not a consistency bundle (expected "format": '
                           f'"{CONSISTENCY_FORMAT}" and a "new" checkpoint note)')
    try:
        hashes = [bytes.fromhex(h) for h in proof.get("proof", [])]
        from_size = int(proof["old"]["size"])
    except (TypeError, ValueError, KeyError):
        raise WitnessError('the bundle\'s "proof" must be hex hashes and "old" its starting '
                           'checkpoint') from None
    bundled = proof["new"]
    if note is not None and parse_note(note).text != parse_note(bundled).text:
        raise WitnessError("the checkpoint given is not the bundle's new checkpoint")
    return (note if note is not None else bundled), hashes, from_size


__all__ = ["SIZE_CONTENT_TYPE", "Answer", "Witness", "WitnessError", "WitnessRefusal"]
