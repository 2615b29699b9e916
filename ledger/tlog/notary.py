"""The signing side of one data directory: its ledger origin, its key ring, the store of
the checkpoints it signed and the store of the witnesses' cosignatures on them.

A ``Notary`` is built once per open directory (the open ``Ledger`` owns one, and
everyone else takes it from there), so one ``KeyRing`` and one ``CheckpointStore`` serve
the whole process. Its methods join the two stores: ``cosigned_note`` /
``latest_cosigned_note`` give a checkpoint note with every stored cosignature appended
(what ``llmring log checkpoint``, proof bundles and the server hand out);
``latest_cosigned_from`` finds the latest cosigned checkpoint at or after a size, which a
receipt's proof bundle links to its own checkpoint (``log_proof.witnessed``);
``attach_cosignatures`` accepts witnesses' cosignatures on the ledger's own checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ledger.errors import CosignatureError
from ledger.storage.config import ledger_origin, log_key_names
from ledger.storage.layout import DataDir
from ledger.tlog.checkpoint import (
    CheckpointStore,
    SignedCheckpoint,
    parse_checkpoint,
    parse_note,
)
from ledger.tlog.cosignature import (
    CosignerKey,
    add_signatures,
    parse_cosignature,
    verify_cosignature,
)
from ledger.tlog.cosignature_store import CosignatureStore
from ledger.tlog.signing import KeyRing


class Notary:
    """One directory's origin, key ring, checkpoints and cosignatures."""

    def __init__(self, layout: DataDir) -> None:
        self.layout = layout
        self.origin = ledger_origin(layout)
        self.keyring = KeyRing(layout.keys, self.origin, log_names=log_key_names(layout))
        self.checkpoints = CheckpointStore(layout.checkpoints)
        self.cosignatures = CosignatureStore(layout.cosignatures)

    def log_origin(self, tenant: str) -> str:
        """The checkpoint origin of a project's log: ``<ledger origin>/<project>``."""
        return f"{self.origin}/{tenant}"

    def cosigned_note(self, signed: SignedCheckpoint) -> str:
        """``signed``'s note with every cosignature stored for it."""
        sigs = self.cosignatures.of(signed)
        return add_signatures(signed.note, sigs) if sigs else signed.note

    def latest_cosigned_note(self, tenant: str = "default") -> str | None:
        """The latest checkpoint the ledger signed for ``tenant``'s log, with its
        cosignatures; None before the first checkpoint."""
        signed = self.checkpoints.latest(self.log_origin(tenant))
        return None if signed is None else self.cosigned_note(signed)

    def cosigned_note_at(self, origin: str, size: int) -> str | None:
        """The checkpoint of ``origin`` at ``size`` with its cosignatures, if one was
        signed."""
        signed = self.checkpoints.at_size(origin, size)
        return None if signed is None else self.cosigned_note(signed)

    def latest_cosigned_from(self, origin: str, size: int) -> str | None:
        """The checkpoint of ``origin`` of at least ``size`` entries cosigned by the most
        witnesses (the largest of those), with its cosignatures; None if none is
        cosigned. A receipt's proof bundle links its own checkpoint to it by a
        consistency proof (witnesses cosign the checkpoints they are shown, seldom
        exactly the one a receipt names; while some are down, a later checkpoint carries
        fewer cosignatures than an earlier one)."""
        try:
            raw = self.cosignatures.path(origin).read_bytes()
        except FileNotFoundError:
            return None
        cosigners: dict[tuple[int, str], set[str]] = {}
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                continue
            try:
                rec: Any = orjson.loads(line)
                key = (int(rec["size"]), str(rec["root"]))
                name = str(rec["line"]).split(" ", 2)[1]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
                continue
            if key[0] >= size:
                cosigners.setdefault(key, set()).add(name)
        if not cosigners:
            return None
        best = max(cosigners, key=lambda k: (len(cosigners[k]), k[0]))
        signed = self.checkpoints.at_size(origin, best[0])
        if signed is None or signed.checkpoint.root.hex() != best[1]:
            return None
        return self.cosigned_note(signed)

    def attach_cosignatures(self, note: str,
                            witnesses: Sequence[CosignerKey] | None = None) -> list[str]:
        """Accept the cosignatures on ``note``, a checkpoint the ledger signed that
        witnesses cosigned; returns the names of the witnesses whose cosignatures were new.

        Raises ``CosignatureError`` if the ledger never signed that checkpoint, or a line
        other than the ledger's own signatures is not a cosignature; with ``witnesses``,
        only their lines are taken, and each must verify."""
        parsed = parse_note(note)
        cp = parse_checkpoint(parsed.text)
        signed = self.checkpoints.at_size(cp.origin, cp.size)
        if signed is None or parse_note(signed.note).text != parsed.text:
            raise CosignatureError(
                f"the ledger in {self.layout.root} never signed this checkpoint ({cp.origin} "
                f"at size {cp.size}, root {cp.root.hex()}): cosignatures are accepted only on "
                "the ledger's own checkpoints (`llmring log checkpoint` prints the latest)")
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
                                   + (" by the given witnesses" if witnesses is not None
                                      else "")
                                   + ": have a witness cosign it (`llmring witness cosign`)")
        return self.cosignatures.add(signed, taken)


__all__ = ["Notary"]
