"""The ledger's side of witnessing: witnesses' cosignatures of the checkpoints the ledger
signed, stored next to them and served with them.

``<data>/cosignatures/<origin, percent-encoded>.jsonl`` holds one JSON line per accepted
cosignature ``{"size", "root", "line", "added_at"}``, appended durably. A cosignature is
accepted only on a note whose body is exactly a checkpoint the ledger signed (same origin,
size and root), and only if it has the shape of a tlog-cosignature; with the witnesses'
keys given it must also verify. Verifiers check cosignatures against their own policy
(``ledger.tlog.policy``) anyway, so a stored line proves nothing by being stored.

``cosigned_note`` / ``latest_cosigned_note`` give a checkpoint note with every stored
cosignature appended: what ``llmring log checkpoint``, proof bundles and the server hand
out. ``latest_cosigned_from`` finds the latest cosigned checkpoint at or after a size,
which a receipt's proof bundle links to its own checkpoint (``log_proof.witnessed``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ledger.storage.config import ledger_origin
from ledger.storage.durable import append_line
from ledger.tlog.checkpoint import (
    CheckpointStore,
    NoteSignature,
    SignedCheckpoint,
    parse_checkpoint,
    parse_note,
)
from ledger.tlog.cosignature import (
    CosignatureError,
    CosignerKey,
    add_signatures,
    parse_cosignature,
    parse_signature_line,
    verify_cosignature,
)
from ledger.tlog.signing import now_text

COSIGNATURES_DIR = "cosignatures"
CHECKPOINTS_DIR = "checkpoints"
_lock = threading.Lock()


class CosignatureStore:
    """Accepted cosignatures per log origin, append-only, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, origin: str) -> Path:
        return self.directory / f"{quote(origin, safe='')}.jsonl"

    def add(self, signed: SignedCheckpoint, sigs: Sequence[NoteSignature]) -> list[str]:
        """Store the lines of ``sigs`` not stored yet for ``signed``; returns the names of
        the witnesses whose lines were new."""
        cp = signed.checkpoint
        with _lock:
            have = {s.line() for s in self.of(signed)}
            added = []
            for sig in sigs:
                if sig.line() in have:
                    continue
                self.directory.mkdir(parents=True, exist_ok=True)
                record = {"size": cp.size, "root": cp.root.hex(), "line": sig.line()[:-1],
                          "added_at": now_text()}
                append_line(self.path(cp.origin), orjson.dumps(record) + b"\n")
                have.add(sig.line())
                added.append(sig.name)
        return added

    def of(self, signed: SignedCheckpoint) -> list[NoteSignature]:
        """The stored cosignature lines of ``signed`` (same size and root), oldest first."""
        cp = signed.checkpoint
        try:
            raw = self.path(cp.origin).read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                continue  # a torn last line is not a cosignature
            try:
                rec: Any = orjson.loads(line)
                if rec["size"] == cp.size and rec["root"] == cp.root.hex():
                    out.append(parse_signature_line(rec["line"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise CosignatureError(f"{self.path(cp.origin)} holds a damaged line "
                                       f"({exc}); restore it from a backup") from None
        return out


def _stores(data: Path) -> tuple[CheckpointStore, CosignatureStore]:
    data = Path(data)
    return CheckpointStore(data / CHECKPOINTS_DIR), CosignatureStore(data / COSIGNATURES_DIR)


def cosigned_note(data: Path, signed: SignedCheckpoint) -> str:
    """``signed``'s note with every cosignature stored for it."""
    _, cosigs = _stores(data)
    sigs = cosigs.of(signed)
    return add_signatures(signed.note, sigs) if sigs else signed.note


def latest_cosigned_note(data: Path, tenant: str = "default") -> str | None:
    """The latest checkpoint the ledger signed for ``tenant``'s log, with its
    cosignatures; None before the first checkpoint."""
    checkpoints, _ = _stores(data)
    signed = checkpoints.latest(f"{ledger_origin(Path(data))}/{tenant}")
    return None if signed is None else cosigned_note(data, signed)


def cosigned_note_at(data: Path, origin: str, size: int) -> str | None:
    """The checkpoint of ``origin`` at ``size`` with its cosignatures, if one was signed."""
    checkpoints, _ = _stores(data)
    signed = checkpoints.at_size(origin, size)
    return None if signed is None else cosigned_note(data, signed)


def latest_cosigned_from(data: Path, origin: str, size: int) -> str | None:
    """The largest checkpoint of ``origin`` of at least ``size`` entries that carries a
    stored cosignature, with its cosignatures; None if there is none. A receipt's proof
    bundle links its own checkpoint to it by a consistency proof (witnesses cosign the
    checkpoints they are shown, seldom exactly the one a receipt names)."""
    checkpoints, cosigs = _stores(data)
    try:
        raw = cosigs.path(origin).read_bytes()
    except FileNotFoundError:
        return None
    best: tuple[int, str] | None = None
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            continue
        try:
            rec: Any = orjson.loads(line)
            key = (int(rec["size"]), str(rec["root"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if key[0] >= size and (best is None or key[0] > best[0]):
            best = key
    if best is None:
        return None
    signed = checkpoints.at_size(origin, best[0])
    if signed is None or signed.checkpoint.root.hex() != best[1]:
        return None
    return cosigned_note(data, signed)


def attach_cosignatures(data: Path, note: str,
                        witnesses: Sequence[CosignerKey] | None = None) -> list[str]:
    """Accept the cosignatures on ``note``, a checkpoint the ledger signed that witnesses
    cosigned; returns the names of the witnesses whose cosignatures were new.

    Raises ``CosignatureError`` if the ledger never signed that checkpoint, or a line
    other than the ledger's own signatures is not a cosignature; with ``witnesses``, only
    their lines are taken, and each must verify."""
    parsed = parse_note(note)
    cp = parse_checkpoint(parsed.text)
    checkpoints, cosigs = _stores(data)
    signed = checkpoints.at_size(cp.origin, cp.size)
    if signed is None or parse_note(signed.note).text != parsed.text:
        raise CosignatureError(
            f"the ledger in {data} never signed this checkpoint ({cp.origin} at size "
            f"{cp.size}, root {cp.root.hex()}): cosignatures are accepted only on the "
            "ledger's own checkpoints (`llmring log checkpoint` prints the latest)")
    own = set(parse_note(signed.note).signatures)
    taken = []
    for sig in parsed.signatures:
        if sig in own:
            continue
        if witnesses is not None:
            key = next((w for w in witnesses if w.matches(sig)), None)
            if key is None:
                continue
            verify_cosignature(parsed.text, sig, key)
        else:
            parse_cosignature(sig)
        taken.append(sig)
    if not taken:
        raise CosignatureError("the note carries no cosignature"
                               + (" by the given witnesses" if witnesses is not None else "")
                               + ": have a witness cosign it (`llmring witness cosign`)")
    return cosigs.add(signed, taken)


__all__ = ["CosignatureStore", "attach_cosignatures", "cosigned_note", "cosigned_note_at",
           "latest_cosigned_from", "latest_cosigned_note"]
