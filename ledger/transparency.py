"""Append-only evidence: that a project's log extends a checkpoint somebody kept.

A client or a witness that saved a signed checkpoint of a project's log (size m, root r)
later asks the ledger for its current signed checkpoint (size n ≥ m, root R) and the RFC
9162 consistency proof between the two, and checks it (``merkle.verify_append_only``,
RFC 9162 §2.1.4.2; from size 0 an empty proof). A valid proof shows that the first m
entries of today's log are exactly the entries the saved checkpoint committed to: history
was only appended to. No valid proof exists for a log that was rewritten, truncated or
forked, so each of those is reported as ``TamperEvidence``, with both checkpoints.

The ledger side is ``prove_extends`` (used by the CLI and the server); the client side is
``check_extends``, which needs only the bundle, the saved checkpoint and public keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.checkpoint import (
    Checkpoint,
    NoteError,
    Verifier,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
)
from ledger.merkle import ProofError, verify_append_only

FORMAT = "ledger-consistency/v1"


class TamperEvidence(Exception):
    """The log does not extend a checkpoint that was signed for it: keep both notes, they
    are the evidence."""


class ConsistencyFormatError(ValueError):
    """A consistency bundle is not of the expected shape."""


def checkpoint_of_note(note: str) -> Checkpoint:
    """The checkpoint a signed note carries (signatures not checked)."""
    return parse_checkpoint(parse_note(note).text)


def prove_extends(ledger: Any, tenant: str, old: Checkpoint) -> dict[str, Any]:
    """The bundle that proves the tenant's current log extends ``old``: the log's current
    signed checkpoint and the consistency proof from ``old.size`` to its size.

    Raises ``TamperEvidence`` when no such proof can exist: ``old`` names a larger log,
    or the log's root at ``old.size`` is not ``old.root``."""
    signed = ledger.checkpoint(tenant)
    new = signed.checkpoint
    if old.origin != new.origin:
        raise ValueError(f"the checkpoint is of {old.origin!r}, not of this project's log "
                         f"{new.origin!r}")
    if old.size > new.size:
        raise TamperEvidence(
            f"the log of {new.origin} has {new.size} entries but a checkpoint signed for it "
            f"has {old.size}: entries were removed (the log was truncated or replaced)")
    tree = ledger.tree(tenant)
    if old.size and tree.root(old.size) != old.root:
        raise TamperEvidence(
            f"the log of {new.origin} at size {old.size} has root "
            f"{tree.root(old.size).hex()}, but a checkpoint signed for that size has root "
            f"{old.root.hex()}: the first {old.size} entries were rewritten (a fork)")
    proof = tree.consistency_proof(old.size, new.size) if old.size else []
    return {
        "format": FORMAT,
        "old": {"origin": old.origin, "size": old.size, "root": old.root.hex()},
        "new": signed.note,
        "proof": [h.hex() for h in proof],
    }


def check_extends(old: Checkpoint, bundle: Any, verifiers: Sequence[Verifier]) -> Checkpoint:
    """Check a bundle from ``prove_extends`` against the checkpoint ``old`` the caller
    kept; return the newer checkpoint (keep it for next time).

    Raises ``ConsistencyFormatError`` for a malformed bundle, ``NoteError`` if the new
    checkpoint is not validly signed by one of ``verifiers``, and ``TamperEvidence`` if
    the new checkpoint does not extend ``old``."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ConsistencyFormatError(f'not a consistency bundle (expected "format": '
                                     f'"{FORMAT}")')
    note, raw = bundle.get("new"), bundle.get("proof")
    if not isinstance(note, str) or not isinstance(raw, list):
        raise ConsistencyFormatError('a consistency bundle needs "new" (a signed checkpoint '
                                     'note) and "proof" (a list of hex hashes)')
    try:
        proof = [bytes.fromhex(h) for h in raw]
    except (TypeError, ValueError):
        raise ConsistencyFormatError('"proof" must be a list of hex hashes') from None
    new = verify_checkpoint(note, verifiers, origin=old.origin)
    if new.size < old.size:
        raise TamperEvidence(
            f"the ledger's checkpoint of {old.origin} has size {new.size}, smaller than the "
            f"{old.size} of the checkpoint you kept: entries were removed")
    try:
        verify_append_only(old.size, new.size, old.root, new.root, proof)
    except ProofError as exc:
        raise TamperEvidence(
            f"the log of {old.origin} at size {new.size} (root {new.root.hex()}) does not "
            f"extend the checkpoint you kept at size {old.size} (root {old.root.hex()}): "
            f"{exc}") from None
    return new


__all__ = ["FORMAT", "ConsistencyFormatError", "NoteError", "TamperEvidence",
           "check_extends", "checkpoint_of_note", "prove_extends"]
