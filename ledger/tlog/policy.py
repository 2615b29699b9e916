"""Witness policy: which witnesses a verifier trusts, and how many of them (k of n) must
have cosigned a checkpoint before it believes it.

A policy is a small text file, one directive per line; ``#`` starts a comment::

    # witnesses of ledger.example
    witness alice.example/w1+1a2b3c4d+BP…          a C2SP vkey (llmring witness key)
    witness bob.example/w2 5Fz…=                    or: a name and a base64 Ed25519 key
    quorum 1                                        k: distinct witnesses required

``check_quorum`` counts the distinct policy witnesses whose cosignature of the note
verifies (lines of other keys are ignored) and raises ``QuorumError`` with fewer than k.
It does not check the log's own signature: do that first (``checkpoint.verify_checkpoint``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import PolicyError, QuorumError
from ledger.tlog.checkpoint import NoteError, Verifier, parse_checkpoint, verify_note
from ledger.tlog.cosignature import (
    CosignatureError,
    CosignerKey,
    cosignatures_of,
    parse_cosigner_vkey,
)
from ledger.tlog.signing import PUBLIC_KEY_SIZE, PublicKeyInfo, b64std_decode


@dataclass(frozen=True)
class Policy:
    witnesses: tuple[CosignerKey, ...]
    quorum: int

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise PolicyError("a witness is listed twice")
        if not 1 <= self.quorum <= len(self.witnesses):
            raise PolicyError(f"quorum {self.quorum} must be between 1 and the number of "
                              f"witnesses ({len(self.witnesses)})")


def parse_policy(text: str, source: str = "the policy") -> Policy:
    """Read a policy's text (see the module docstring)."""
    witnesses: list[CosignerKey] = []
    quorum: int | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, *args = line.split()
        where = f"{source}, line {n}"
        if word == "witness" and len(args) in (1, 2):
            try:
                witnesses.append(_witness(args))
            except CosignatureError as exc:
                raise PolicyError(f"{where}: {exc}") from None
        elif word == "quorum" and len(args) == 1:
            if quorum is not None:
                raise PolicyError(f"{where}: a second quorum line")
            if not args[0].isascii() or not args[0].isdigit():
                raise PolicyError(f"{where}: quorum {args[0]!r} is not a whole number")
            quorum = int(args[0])
        else:
            raise PolicyError(f"{where}: expected `witness VKEY`, `witness NAME BASE64KEY` "
                              f"or `quorum K`, not {line!r}")
    if not witnesses:
        raise PolicyError(f"{source} lists no witness: add `witness VKEY` lines "
                          "(`llmring witness key` prints a witness's VKEY)")
    if quorum is None:
        raise PolicyError(f"{source} has no `quorum K` line (how many witnesses must "
                          "cosign)")
    try:
        return Policy(tuple(witnesses), quorum)
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None


def _witness(args: list[str]) -> CosignerKey:
    if len(args) == 1:
        return parse_cosigner_vkey(args[0])
    name, b64 = args
    try:
        key = b64std_decode(b64)
    except ValueError as exc:
        raise CosignatureError(f"witness {name}: the key is {exc}") from None
    if len(key) != PUBLIC_KEY_SIZE:
        raise CosignatureError(f"witness {name}: an Ed25519 key has {PUBLIC_KEY_SIZE} bytes, "
                               f"this one {len(key)}")
    return CosignerKey(name, key)


def load_policy(path: Path) -> Policy:
    """Read the policy file ``path``; ``PolicyError`` names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read the policy {path}: {exc}") from None
    return parse_policy(text, str(path))


def check_quorum(note: str, policy: Policy) -> list[str]:
    """The policy witnesses that validly cosigned ``note`` (sorted names); raises
    ``QuorumError`` when they are fewer than ``policy.quorum``."""
    valid, problems = cosignatures_of(note, policy.witnesses)
    if len(valid) < policy.quorum:
        cosigned = ", ".join(sorted(valid)) or "none"
        extra = f"; {'; '.join(problems)}" if problems else ""
        raise QuorumError(
            f"the checkpoint has {len(valid)} valid witness cosignature(s) of the "
            f"{policy.quorum} the policy requires (cosigned by: {cosigned}){extra}; have "
            "the policy's witnesses cosign it (`llmring witness cosign`, then `llmring log "
            "add-cosignature`) and fetch it again")
    return sorted(valid)


def check_receipt_checkpoint(receipt: Any, note: str, public_keys: Sequence[PublicKeyInfo],
                             policy: Policy) -> list[str]:
    """For a receipt without a proof bundle: ``note`` must be the log checkpoint the
    receipt names (``log_checkpoint``), signed by the ledger and cosigned per ``policy``.
    Returns the witnesses; raises ``NoteError`` (or ``QuorumError``) saying why not."""
    claim = receipt.get("log_checkpoint") if isinstance(receipt, dict) else None
    if not isinstance(claim, dict):
        raise NoteError("the receipt has no log_checkpoint to check against the policy")
    verified, _ = verify_note(note, [Verifier.from_info(k) for k in public_keys])
    cp = parse_checkpoint(verified.text)
    if (cp.origin, cp.size, cp.root.hex()) != (claim.get("origin"), claim.get("size"),
                                               claim.get("root")):
        raise NoteError(f"the checkpoint ({cp.origin} at size {cp.size}) is not the "
                        f"receipt's log_checkpoint ({claim.get('origin')} at size "
                        f"{claim.get('size')})")
    return check_quorum(note, policy)


__all__ = ["Policy", "PolicyError", "QuorumError", "check_quorum", "check_receipt_checkpoint",
           "load_policy", "parse_policy"]
