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

Likewise for one event: ``prove_inclusion`` gives the event (its canonical fields), its
index and RFC 9162 audit path in the log at a signed checkpoint (the latest, or one at a
given size the ledger signed), and ``check_inclusion`` verifies it offline: the note's
signature, the leaf recomputed from the event, the path to the checkpoint's root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import rfc8785

from ledger.errors import ConsistencyFormatError, TamperEvidence
from ledger.tlog.checkpoint import (
    Checkpoint,
    NoteError,
    Verifier,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
)
from ledger.tlog.merkle import ProofError, leaf_hash, verify_append_only, verify_inclusion

FORMAT = "ledger-consistency/v1"
INCLUSION_FORMAT = "ledger-log-inclusion/v1"


def checkpoint_of_note(note: str) -> Checkpoint:
    """The checkpoint a signed note carries (signatures not checked)."""
    return parse_checkpoint(parse_note(note).text)


def prove_extends(ledger: Any, tenant: str, old: Checkpoint) -> dict[str, Any]:
    """The bundle that proves the tenant's current log extends ``old``: the log's current
    signed checkpoint and the consistency proof from ``old.size`` to its size.

    Raises ``TamperEvidence`` when no such proof can exist: ``old`` names a larger log,
    or the log's root at ``old.size`` is not ``old.root``."""
    signed = ledger.checkpoint(tenant)
    if old.origin != signed.checkpoint.origin:
        raise ValueError(f"the checkpoint is of {old.origin!r}, not of this project's log "
                         f"{signed.checkpoint.origin!r}")
    tree = ledger.tree(tenant)

    def at_old(first: int, second: int) -> tuple[str, list[str]]:
        proof = tree.consistency_proof(first, second) if first else []
        return tree.root(first).hex() if first else "", [h.hex() for h in proof]

    return extension_bundle(old, signed.note, at_old)


def extension_bundle(old: Checkpoint, note: str,
                     at_old: Callable[[int, int], tuple[str, list[str]]]) -> dict[str, Any]:
    """The bundle that proves the log of the signed checkpoint ``note`` extends ``old``,
    of the same origin. ``at_old(old.size, new.size)`` answers the log's root at
    ``old.size`` and the consistency proof between the sizes, as hex (from the tree, or
    from the API's consistency operation); it is asked only when the sizes allow a proof.

    Raises ``TamperEvidence`` when no such proof can exist."""
    new = checkpoint_of_note(note)
    if old.size > new.size:
        raise TamperEvidence(
            f"the log of {new.origin} has {new.size} entries but a checkpoint signed for it "
            f"has {old.size}: entries were removed (the log was truncated or replaced)")
    root_at_old, proof = at_old(old.size, new.size)
    if old.size and root_at_old != old.root.hex():
        raise TamperEvidence(
            f"the log of {new.origin} at size {old.size} has root {root_at_old}, but a "
            f"checkpoint signed for that size has root {old.root.hex()}: the first "
            f"{old.size} entries were rewritten (a fork)")
    return {
        "format": FORMAT,
        "old": {"origin": old.origin, "size": old.size, "root": old.root.hex()},
        "new": note,
        "proof": list(proof),
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


def prove_inclusion(ledger: Any, tenant: str, event_id: str, *,
                    size: int | None = None) -> dict[str, Any]:
    """The bundle that proves ``event_id`` is in the tenant's log at a signed checkpoint:
    the current one (signed now if the log grew), or the stored one at ``size``. Raises
    ``LookupError`` for an unknown event or a size no checkpoint was signed at, and
    ``ValueError`` for an event after that checkpoint."""
    ack = ledger.resolve(tenant, [event_id]).get(event_id)
    if ack is None:
        raise LookupError(f"no log {event_id!r} in project {tenant!r}")
    if size is None:
        signed = ledger.checkpoint(tenant)
    else:
        origin = ledger.checkpoint(tenant).checkpoint.origin
        signed = ledger.notary.checkpoints.at_size(origin, size)
        if signed is None:
            raise LookupError(f"no checkpoint of {origin} was signed at size {size}")
    n = signed.checkpoint.size
    if ack.seq >= n:
        raise ValueError(f"log {event_id!r} (seq {ack.seq}) was appended after the "
                         f"checkpoint at size {n}")
    event = ledger.event_of(ack)
    if event is None:  # pragma: no cover - index and log disagree
        raise LookupError(f"log {event_id!r} is indexed but not in the log")
    path = ledger.tree(tenant).inclusion_proof(ack.seq, n)
    return {"format": INCLUSION_FORMAT, "checkpoint": signed.note,
            "event": orjson.loads(event.canonical_bytes()), "leaf_index": ack.seq,
            "tree_size": n, "audit_path": [h.hex() for h in path]}


def check_inclusion(bundle: Any, verifiers: Sequence[Verifier]) -> Checkpoint:
    """Verify a ``prove_inclusion`` bundle offline; return its checkpoint. Raises
    ``ConsistencyFormatError`` (malformed), ``NoteError`` (not signed by ``verifiers``)
    or ``TamperEvidence`` (the event is not the leaf, or the path misses the root)."""
    if not isinstance(bundle, dict) or bundle.get("format") != INCLUSION_FORMAT:
        raise ConsistencyFormatError(f'not a log inclusion bundle (expected "format": '
                                     f'"{INCLUSION_FORMAT}")')
    try:
        note = str(bundle["checkpoint"])
        event = dict(bundle["event"])
        index, size = int(bundle["leaf_index"]), int(bundle["tree_size"])
        path = [bytes.fromhex(h) for h in bundle["audit_path"]]
    except (KeyError, TypeError, ValueError):
        raise ConsistencyFormatError('a log inclusion bundle needs "checkpoint", "event", '
                                     '"leaf_index", "tree_size" and "audit_path"') from None
    cp = verify_checkpoint(note, verifiers)
    if cp.size != size:
        raise TamperEvidence(f"the bundle says tree size {size}, its checkpoint {cp.size}")
    leaf = leaf_hash(rfc8785.dumps(event))
    try:
        verify_inclusion(leaf, index, size, path, cp.root)
    except ProofError as exc:
        raise TamperEvidence(f"event {event.get('event_id')!r} is not at index {index} of "
                             f"{cp.origin} at size {size}: {exc} (the event was edited, "
                             "or the path is not of this log)") from None
    return cp


__all__ = [
    "FORMAT",
    "INCLUSION_FORMAT",
    "ConsistencyFormatError",
    "NoteError",
    "TamperEvidence",
    "check_extends",
    "check_inclusion",
    "checkpoint_of_note",
    "prove_extends",
    "prove_inclusion",
]
