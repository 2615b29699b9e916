"""Offline verification of receipts and proof bundles (docs/formats.md): needs only the JSON
and the public keys, never a data directory or a server.

``verify_receipt`` checks the receipt's shape, finds the signing key by ``key_id`` among
the given keys (or tries nameless PEM keys) and checks the Ed25519 signature over the
RFC 8785 bytes of the receipt without ``signature``. ``verify_bundle`` also recomputes the
event's leaf hash from its canonical fields and walks the audit path to the receipt's
``merkle_root``; with a ``log_proof`` it checks the signed checkpoint and the event's
inclusion in the tenant's log. The result names the first check that failed:

* ``format``     the document is not a receipt / bundle of a known format;
* ``key``        no given public key has the receipt's key id (key unknown);
* ``signature``  the signature does not verify: a signed field was changed;
* ``leaf``       the event's fields do not hash to the bundle's leaf hash (the event was
                 edited: cost, tokens, …);
* ``path``       the audit path does not lead from the leaf to the receipt's merkle root;
* ``scope``      the certified event is outside the receipt's signed ``scope``: its
                 metadata does not match ``scope.where``, its ``ts`` is outside a date
                 range, or it is not of the scope's conversation;
* ``log_proof``  the log checkpoint or the event's inclusion in the log does not verify;
* ``witness``    with a witness ``policy`` (``ledger.tlog.policy``): the bundle's log checkpoint
                 is not cosigned by the quorum of witnesses (or the bundle has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from typing import Any

from ledger.model.event import canonical_json
from ledger.tlog.merkle import ProofError, root_from_inclusion_proof
from ledger.tlog.signing import (
    PublicKeyInfo,
    SignatureFormatError,
    decode_signature,
    keys_for,
    verify_signature,
)

BUNDLE_FORMAT = "ledger-proof/v1"
ALGORITHM = "ed25519"
SIGNED_FIELDS = ("receipt_id", "timestamp", "tenant", "certified_count", "merkle_root",
                 "key_id")


@dataclass
class VerifyResult:
    """Outcome of a verification: ``valid``, and when not, which check failed and why."""

    valid: bool
    kind: str  # "receipt" or "bundle"
    receipt_id: str | None = None
    key_id: str | None = None
    failed: str | None = None  # format | key | signature | leaf | path | log_proof
    message: str = ""
    checks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "kind": self.kind, "receipt_id": self.receipt_id,
                "key_id": self.key_id, "algorithm": ALGORITHM, "failed": self.failed,
                "message": self.message, "checks": self.checks}

    def _fail(self, check: str, message: str) -> VerifyResult:
        self.valid, self.failed, self.message = False, check, message
        return self


def signed_bytes(receipt: dict[str, Any]) -> bytes:
    """The bytes a receipt's signature covers: RFC 8785 JSON without ``signature``."""
    return canonical_json({k: v for k, v in receipt.items() if k != "signature"},
                          reference=True)


def _hex32(value: Any) -> bytes | None:
    if not isinstance(value, str) or len(value) != 64:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def verify_receipt(receipt: Any, public_keys: Sequence[PublicKeyInfo], *,
                   _result: VerifyResult | None = None) -> VerifyResult:
    """Verify a signed receipt's signature with ``public_keys`` (current and retired)."""
    result = _result or VerifyResult(valid=False, kind="receipt")
    if not isinstance(receipt, dict):
        return result._fail("format", "a receipt must be a JSON object")
    result.receipt_id = receipt.get("receipt_id") if isinstance(
        receipt.get("receipt_id"), str) else None
    missing = [f for f in (*SIGNED_FIELDS, "signature") if f not in receipt]
    if missing:
        return result._fail("format", f"not a signed receipt: missing {', '.join(missing)}")
    key_id = receipt["key_id"]
    result.key_id = key_id if isinstance(key_id, str) else None
    try:
        signature = decode_signature(receipt["signature"])
    except SignatureFormatError as exc:
        return result._fail("signature", str(exc))
    candidates = keys_for(key_id, public_keys) if isinstance(key_id, str) else []
    if not candidates:
        known = ", ".join(sorted({k.key_id for k in public_keys})) or "none"
        return result._fail("key", f"key unknown: the receipt was signed by key id "
                            f"{key_id}, which is not among the given public keys ({known}); "
                            "get the ledger's public keys (current and retired)")
    try:
        message = signed_bytes(receipt)
    except Exception as exc:  # rfc8785 rejects values JSON cannot carry exactly
        return result._fail("format", f"the receipt cannot be canonicalized: {exc}")
    if not any(verify_signature(k.public_key, message, signature) for k in candidates):
        return result._fail("signature", f"the signature does not verify with key {key_id}: "
                            "a signed field of the receipt was changed, or another key "
                            "signed it")
    result.checks.append(f"signature by key {key_id}")
    result.valid, result.failed, result.message = True, None, "the receipt is authentic"
    return result


def verify_bundle(bundle: Any, public_keys: Sequence[PublicKeyInfo],
                  policy: Any = None) -> VerifyResult:
    """Verify a proof bundle: the receipt's signature, the event's leaf, the audit path to
    the receipt's merkle root, and (when present) the log proof. With a witness ``policy``
    (``ledger.tlog.policy.Policy``) the log proof is required and its checkpoint must be
    cosigned by the policy's quorum of witnesses."""
    result = VerifyResult(valid=False, kind="bundle")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        return result._fail("format", f'not a proof bundle: "format" must be '
                            f'"{BUNDLE_FORMAT}"')
    missing = [f for f in ("receipt", "event", "leaf_index", "tree_size", "audit_path")
               if f not in bundle]
    if missing:
        return result._fail("format", f"the bundle lacks {', '.join(missing)}")
    verify_receipt(bundle["receipt"], public_keys, _result=result)
    if not result.valid:
        return result
    receipt, event = bundle["receipt"], bundle["event"]
    result.valid = False
    if not isinstance(event, dict):
        return result._fail("format", "the bundle's event must be a JSON object")
    if event.get("tenant") != receipt.get("tenant"):
        return result._fail("leaf", f"the event belongs to project {event.get('tenant')!r}, "
                            f"the receipt to {receipt.get('tenant')!r}")
    try:
        leaf = sha256(b"\x00" + canonical_json(event, reference=True)).digest()
    except Exception as exc:
        return result._fail("format", f"the event cannot be canonicalized: {exc}")
    if "leaf_hash" in bundle:
        given = _hex32(bundle["leaf_hash"])
        if given is None:
            return result._fail("format", "leaf_hash must be 64 hex digits")
        if given != leaf:
            return result._fail("leaf", "the event does not match the leaf: its canonical "
                                "fields hash to " + leaf.hex() + ", not the bundle's "
                                "leaf_hash (the event was edited)")
    result.checks.append(f"leaf hash {leaf.hex()}")
    index, size = bundle["leaf_index"], bundle["tree_size"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, size)):
        return result._fail("format", "leaf_index and tree_size must be integers")
    if size != receipt.get("certified_count"):
        return result._fail("path", f"tree_size {size} is not the receipt's certified_count "
                            f"{receipt.get('certified_count')}")
    path = [_hex32(h) for h in bundle["audit_path"]] if isinstance(
        bundle["audit_path"], list) else [None]
    if any(h is None for h in path):
        return result._fail("format", "audit_path must be a list of 64-hex-digit hashes")
    root = _hex32(receipt.get("merkle_root"))
    if root is None:
        return result._fail("format", "the receipt's merkle_root must be 64 hex digits")
    try:
        reached = root_from_inclusion_proof(leaf, index, size, path)  # type: ignore[arg-type]
    except ProofError as exc:
        return result._fail("path", f"the audit path is malformed: {exc}")
    if reached != root:
        what = ("the event does not match the leaf the path was made for (the event was "
                "edited), or the path was altered") if "leaf_hash" not in bundle else \
            "the audit path was altered or belongs to another receipt"
        return result._fail("path", f"the path does not reach the receipt's merkle_root "
                            f"({root.hex()}): it reaches {reached.hex()}; {what}")
    result.checks.append(f"leaf {index} of {size} reaches merkle_root {root.hex()}")
    problem = _check_scope(receipt.get("scope"), event)
    if problem:
        return result._fail("scope", problem)
    if (isinstance(receipt.get("scope"), dict) and receipt["scope"].get("mode") in (
            "date_range", "conversation")) or _where_of(receipt) is not None:
        result.checks.append("the event is within the receipt's scope")
    if "log_proof" in bundle:
        problem = _check_log_proof(bundle["log_proof"], receipt, leaf, public_keys)
        if problem:
            return result._fail("log_proof", problem)
        result.checks.append("event included in the signed log checkpoint "
                             f"{receipt['log_checkpoint']['origin']} @ "
                             f"{receipt['log_checkpoint']['size']}")
    if policy is not None:
        problem = _check_witnesses(bundle.get("log_proof"), policy, result, receipt,
                                   public_keys)
        if problem:
            return result._fail("witness", problem)
    result.valid, result.message = True, "the event is certified by the authentic receipt"
    return result


def _where_of(receipt: dict[str, Any]) -> Any:
    scope = receipt.get("scope")
    return scope.get("where") if isinstance(scope, dict) else None


def _check_scope(scope: Any, event: dict[str, Any]) -> str | None:
    """Why the certified ``event`` (canonical fields) is outside the signed ``scope``;
    None when it is within it (or the scope says nothing checkable)."""
    from ledger.model.dimensions import matches

    if not isinstance(scope, dict):
        return None
    where = scope.get("where")
    if where is not None:
        if not isinstance(where, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in where.items()):
            return "scope.where must be an object of metadata key to string value"
        metadata = event.get("metadata") if isinstance(event.get("metadata"), dict) else {}
        if not matches(metadata, where):
            return (f"the event's metadata does not match the receipt's scope.where "
                    f"{where}: the receipt certifies an event it says it excludes")
    mode = scope.get("mode")
    if mode == "conversation" and event.get("conversation_id") != scope.get(
            "conversation_id"):
        return (f"the event is of conversation {event.get('conversation_id')!r}, the "
                f"receipt's scope of {scope.get('conversation_id')!r}")
    if mode == "date_range":
        ts, lo, hi = (_instant(event.get("ts")), _instant(scope.get("start_date")),
                      _instant(scope.get("end_date")))
        if ts is not None and lo is not None and hi is not None and not lo <= ts < hi:
            return (f"the event's ts {event.get('ts')} is outside the receipt's scope "
                    f"[{scope.get('start_date')}, {scope.get('end_date')})")
    return None


def _instant(text: Any) -> datetime | None:
    """RFC 3339 text as an aware datetime; None when it is not such text."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _check_witnesses(proof: Any, policy: Any, result: VerifyResult, receipt: dict[str, Any],
                     public_keys: Sequence[PublicKeyInfo]) -> str | None:
    """The receipt's log checkpoint is cosigned by the policy's quorum, or it is extended
    (consistency proof) by a later checkpoint of the same log that is."""
    from ledger.tlog.checkpoint import NoteError, Verifier, verify_checkpoint
    from ledger.tlog.merkle import verify_append_only
    from ledger.tlog.policy import check_quorum

    if not isinstance(proof, dict) or not isinstance(proof.get("checkpoint"), str):
        return ("the bundle has no log_proof, so no witnessed checkpoint: make the bundle "
                "again (`llmring receipts prove`) once the ledger has a checkpoint")
    try:
        names = check_quorum(proof["checkpoint"], policy)
        where = "the log checkpoint"
    except NoteError as exc:  # QuorumError, or a note that does not parse
        witnessed = proof.get("witnessed")
        if not isinstance(witnessed, dict):
            return str(exc)
        claim = receipt["log_checkpoint"]
        try:
            later = verify_checkpoint(witnessed.get("checkpoint", ""),
                                      [Verifier.from_info(k) for k in public_keys],
                                      origin=claim["origin"])
            names = check_quorum(witnessed["checkpoint"], policy)
            link = [_hex32(h) for h in witnessed.get("consistency", [None])]
            if any(h is None for h in link):
                return "the witnessed consistency proof must be 64-hex-digit hashes"
            verify_append_only(claim["size"], later.size, bytes.fromhex(claim["root"]),
                               later.root, link)  # type: ignore[arg-type]
        except (NoteError, ProofError, TypeError, ValueError) as later_exc:
            return f"{exc} (the later witnessed checkpoint does not help: {later_exc})"
        where = f"a later log checkpoint (size {later.size}) that extends it,"
    result.checks.append(f"{where} cosigned by {len(names)} of {policy.describe()} required "
                         f"witnesses ({', '.join(names)})")
    return None


def _check_log_proof(proof: Any, receipt: dict[str, Any], leaf: bytes,
                     public_keys: Sequence[PublicKeyInfo]) -> str | None:
    from ledger.tlog.checkpoint import NoteError, Verifier, verify_checkpoint

    if not isinstance(proof, dict):
        return "log_proof must be a JSON object"
    cp_claim = receipt.get("log_checkpoint")
    if not isinstance(cp_claim, dict):
        return "the receipt has no log_checkpoint"
    try:
        cp = verify_checkpoint(proof.get("checkpoint", ""),
                               [Verifier.from_info(k) for k in public_keys],
                               origin=cp_claim.get("origin"))
    except NoteError as exc:
        return f"the log checkpoint does not verify: {exc}"
    if cp.size != cp_claim.get("size") or cp.root.hex() != cp_claim.get("root"):
        return "the signed checkpoint is not the receipt's log_checkpoint"
    path = [_hex32(h) for h in proof.get("audit_path", [None])]
    if any(h is None for h in path):
        return "the log audit_path must be a list of 64-hex-digit hashes"
    try:
        reached = root_from_inclusion_proof(leaf, proof.get("leaf_index", -1), cp.size,
                                            path)  # type: ignore[arg-type]
    except (ProofError, TypeError) as exc:
        return f"the log inclusion proof is malformed: {exc}"
    if reached != cp.root:
        return "the event's log inclusion proof does not reach the checkpoint's root"
    return None


__all__ = ["BUNDLE_FORMAT", "VerifyResult", "signed_bytes", "verify_bundle",
           "verify_receipt"]
