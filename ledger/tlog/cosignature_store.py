"""The ledger's side of witnessing: witnesses' cosignatures of the checkpoints the ledger
signed, stored next to them and served with them.

``<data>/cosignatures/<origin, percent-encoded>.jsonl`` holds one JSON line per accepted
cosignature ``{"size", "root", "line", "added_at"}``, appended durably. A cosignature is
accepted only on a note whose body is exactly a checkpoint the ledger signed (same origin,
size and root), and only if it has the shape of a tlog-cosignature; with the witnesses'
keys given it must also verify. Verifiers check cosignatures against their own policy
(``ledger.tlog.policy``) anyway, so a stored line proves nothing by being stored.

Accepting cosignatures and handing out cosigned notes is ``ledger.tlog.notary.Notary``,
which holds a directory's checkpoint store and this store together.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ledger.errors import CosignatureError
from ledger.storage.durable import append_line, private_dir
from ledger.tlog.checkpoint import NoteSignature, SignedCheckpoint
from ledger.tlog.cosignature import parse_signature_line
from ledger.tlog.signing import now_text


class CosignatureStore:
    """Accepted cosignatures per log origin, append-only, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def path(self, origin: str) -> Path:
        return self.directory / f"{quote(origin, safe='')}.jsonl"

    def add(self, signed: SignedCheckpoint, sigs: Sequence[NoteSignature]) -> list[str]:
        """Store the lines of ``sigs`` not stored yet for ``signed``; returns the names of
        the witnesses whose lines were new."""
        cp = signed.checkpoint
        with self._lock:
            have = {s.line() for s in self.of(signed)}
            added = []
            for sig in sigs:
                if sig.line() in have:
                    continue
                private_dir(self.directory)
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


__all__ = ["CosignatureStore"]
