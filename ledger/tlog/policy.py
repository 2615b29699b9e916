"""Witness policy: which witnesses a verifier trusts, where the ledger submits its
checkpoints to them, and which of them (a quorum, possibly of nested groups) must have
cosigned a checkpoint before it is believed.

A policy is a small text file in the Tessera / Sigsum syntax, one directive per line;
``#`` starts a comment; a name must be defined before a line refers to it::

    witness W1 w1.example/w+1a2b3c4d+BP…  https://w1.example/witness   # C2SP vkey, URL
    witness W2 w2.example/w+5e6f7a8b+BK…                               # URL optional
    witness W3 9c3f…(64 hex digits)…      https://w3.example           # Sigsum: hex key
    group  G   2 W1 W2 W3                   # k of the members; also `all` / `any`
    quorum G                                # a witness or group name, or `none`
    log    …                                # Sigsum log lines: accepted, not used here

With a hex (Sigsum) key, the witness's key name is NAME. The home-grown syntax of
earlier releases is still read, for the files already written: ``witness VKEY``,
``witness KEYNAME BASE64KEY`` and ``quorum K`` (K of all the witnesses, when K is not a
defined name).

``check_quorum`` counts the policy witnesses whose cosignature of the note verifies
(lines of other keys are ignored) and raises ``QuorumError`` when the quorum rule is not
met. It does not check the log's own signature: do that first
(``checkpoint.verify_checkpoint``).
"""

from __future__ import annotations

import re
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

_VKEY = re.compile(r"^[^+\s]+\+[0-9a-fA-F]{8}\+")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9._:/@-]+$")


@dataclass(frozen=True)
class Group:
    """``k`` of ``members`` (witness key names or groups) must have cosigned."""

    name: str
    k: int
    members: tuple[str | Group, ...]

    def met(self, cosigned: set[str]) -> bool:
        return sum(1 for m in self.members
                   if (m.met(cosigned) if isinstance(m, Group) else m in cosigned)
                   ) >= self.k

    def describe(self) -> str:
        inner = ", ".join(m.describe() if isinstance(m, Group) else m for m in self.members)
        return f"{self.k} of ({inner})"


@dataclass(frozen=True)
class Policy:
    """The trusted witnesses, their quorum and, for the ledger's submissions, their
    policy names and URLs (parallel to ``witnesses``).

    ``quorum`` is an ``int`` k (k of all the witnesses), a ``Group``, a witness key name
    (that witness alone) or None (``quorum none``: no cosignature required)."""

    witnesses: tuple[CosignerKey, ...]
    quorum: int | Group | str | None
    names: tuple[str, ...] = ()
    urls: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.names:
            object.__setattr__(self, "names", tuple(w.name for w in self.witnesses))
        if not self.urls:
            object.__setattr__(self, "urls", (None,) * len(self.witnesses))
        keys = [w.name for w in self.witnesses]
        if len(set(keys)) != len(keys) or len(set(self.names)) != len(self.names):
            raise PolicyError("a witness is listed twice")
        if len(self.names) != len(keys) or len(self.urls) != len(keys):
            raise PolicyError("names and urls must be given for every witness")
        if isinstance(self.quorum, int) and not 1 <= self.quorum <= len(self.witnesses):
            raise PolicyError(f"quorum {self.quorum} must be between 1 and the number of "
                              f"witnesses ({len(self.witnesses)})")

    def met(self, cosigned: set[str]) -> bool:
        """Whether the witnesses (key names) in ``cosigned`` satisfy the quorum."""
        q = self.quorum
        if q is None:
            return True
        if isinstance(q, int):
            return len(cosigned & {w.name for w in self.witnesses}) >= q
        if isinstance(q, Group):
            return q.met(cosigned)
        return q in cosigned

    def describe(self) -> str:
        """The quorum rule in words: ``K`` (of all), ``2 of (w1, w2, w3)``, a name."""
        q = self.quorum
        if q is None:
            return "none"
        if isinstance(q, int):
            return str(q)
        return q.describe() if isinstance(q, Group) else q

    def submission_targets(self) -> list[tuple[str, CosignerKey, str]]:
        """(policy name, key, URL) of every witness with a URL: the ledger submits its
        checkpoints to these."""
        return [(n, k, u) for n, k, u in zip(self.names, self.witnesses, self.urls,
                                             strict=True) if u]


def parse_policy(text: str, source: str = "the policy") -> Policy:
    """Read a policy's text (see the module docstring)."""
    keys: list[CosignerKey] = []
    names: list[str] = []
    urls: list[str | None] = []
    defined: dict[str, str | Group] = {}  # policy name → witness key name or group
    quorum: int | Group | str | None = None
    have_quorum = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, *args = line.split()
        where = f"{source}, line {n}"
        if word == "witness" and 1 <= len(args) <= 3:
            try:
                name, key, url = _witness(args)
            except CosignatureError as exc:
                raise PolicyError(f"{where}: {exc}") from None
            if name in defined or name == "none":
                raise PolicyError(f"{where}: the name {name!r} is defined twice")
            defined[name] = key.name
            keys.append(key)
            names.append(name)
            urls.append(url)
        elif word == "group" and len(args) >= 3:
            group = _group(args, defined, where)
            defined[group.name] = group
        elif word == "quorum" and len(args) == 1:
            if have_quorum:
                raise PolicyError(f"{where}: a second quorum line")
            have_quorum = True
            quorum = _quorum(args[0], defined, where)
        elif word == "log" and 1 <= len(args) <= 2:
            continue  # a Sigsum policy's log key: the ledger checks its own keys itself
        else:
            raise PolicyError(f"{where}: expected `witness NAME VKEY [URL]`, `group NAME K "
                              f"MEMBER…`, `quorum NAME` (or the older `witness VKEY`, "
                              f"`quorum K`), not {line!r}")
    if not keys:
        raise PolicyError(f"{source} lists no witness: add `witness NAME VKEY URL` lines "
                          "(`llmring witness key` prints a witness's VKEY)")
    if not have_quorum:
        raise PolicyError(f"{source} has no `quorum NAME` (or `quorum K`) line: which "
                          "witnesses must cosign")
    try:
        return Policy(tuple(keys), quorum, tuple(names), tuple(urls))
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None


def _witness(args: list[str]) -> tuple[str, CosignerKey, str | None]:
    """(policy name, key, URL) of a witness line's arguments."""
    if len(args) == 1:  # older syntax: witness VKEY
        key = parse_cosigner_vkey(args[0])
        return key.name, key, None
    name, spec, *rest = args
    url = rest[0] if rest else None
    if url is not None and not re.match(r"^https?://[^\s/]+", url):
        raise CosignatureError(f"witness {name}: {url!r} is not an http(s) URL")
    if not _NAME.match(name):
        raise CosignatureError(f"witness name {name!r}: use letters, digits and . _ : / @ -")
    if _VKEY.match(spec):
        return name, parse_cosigner_vkey(spec), url
    if _HEX_KEY.match(spec):  # Sigsum: the raw key in hex; its key name is NAME
        return name, CosignerKey(name, bytes.fromhex(spec)), url
    try:
        key = b64std_decode(spec)  # older syntax: witness KEYNAME BASE64KEY
    except ValueError as exc:
        raise CosignatureError(f"witness {name}: the key is neither a vkey, 64 hex digits "
                               f"nor base64 ({exc})") from None
    if len(key) != PUBLIC_KEY_SIZE:
        raise CosignatureError(f"witness {name}: an Ed25519 key has {PUBLIC_KEY_SIZE} bytes, "
                               f"this one {len(key)}")
    return name, CosignerKey(name, key), url


def _group(args: list[str], defined: dict[str, str | Group], where: str) -> Group:
    name, k_text, *member_names = args
    if name in defined or name == "none":
        raise PolicyError(f"{where}: the name {name!r} is defined twice")
    if len(set(member_names)) != len(member_names):
        raise PolicyError(f"{where}: group {name} lists a member twice")
    members = []
    for m in member_names:
        if m not in defined:
            raise PolicyError(f"{where}: group {name}: {m!r} is not a witness or group "
                              "defined on an earlier line")
        members.append(defined[m])
    if k_text == "all":
        k = len(members)
    elif k_text == "any":
        k = 1
    elif k_text.isascii() and k_text.isdigit() and 1 <= int(k_text) <= len(members):
        k = int(k_text)
    else:
        raise PolicyError(f"{where}: group {name}: the threshold {k_text!r} must be `all`, "
                          f"`any` or a number from 1 to {len(members)}")
    return Group(name, k, tuple(members))


def _quorum(word: str, defined: dict[str, str | Group], where: str
            ) -> int | Group | str | None:
    if word == "none":
        return None
    if word in defined:
        return defined[word]
    if word.isascii() and word.isdigit():  # older syntax: K of all the witnesses
        return int(word)
    raise PolicyError(f"{where}: quorum {word!r} is not a witness or group defined on an "
                      "earlier line (nor `none`)")


def load_policy(path: Path) -> Policy:
    """Read the policy file ``path``; ``PolicyError`` names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read the policy {path}: {exc}") from None
    return parse_policy(text, str(path))


def check_quorum(note: str, policy: Policy) -> list[str]:
    """The policy witnesses that validly cosigned ``note`` (sorted key names); raises
    ``QuorumError`` when they do not meet ``policy``'s quorum."""
    valid, problems = cosignatures_of(note, policy.witnesses)
    if not policy.met(set(valid)):
        cosigned = ", ".join(sorted(valid)) or "none"
        extra = f"; {'; '.join(problems)}" if problems else ""
        raise QuorumError(
            f"the checkpoint has {len(valid)} valid witness cosignature(s) of the "
            f"{policy.describe()} the policy requires (cosigned by: {cosigned}){extra}; have "
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


__all__ = ["Group", "Policy", "PolicyError", "QuorumError", "check_quorum",
           "check_receipt_checkpoint", "load_policy", "parse_policy"]
