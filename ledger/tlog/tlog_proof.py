"""c2sp.org/tlog-proof@v1 files: an entry's index, its RFC 6962 inclusion proof and the
(cosigned) checkpoint it leads to, as text; written for a log inclusion bundle
(``ledger.tlog.consistency.prove_inclusion``) and read back into one, so the same
check (``check_inclusion``) verifies either form.

The ledger puts the entry itself (the event's canonical JSON) in the optional ``extra``
line: the spec reserves it for data needed to reconstruct the record hash, and a
verifier must not trust it beyond that — it is checked by hashing it to the leaf.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import rfc8785

from ledger.errors import ConsistencyFormatError
from ledger.tlog.checkpoint import NoteError, parse_checkpoint, parse_note
from ledger.tlog.consistency import INCLUSION_FORMAT
from ledger.tlog.merkle import HASH_SIZE
from ledger.tlog.signing import b64std_decode

HEADER = "c2sp.org/tlog-proof@v1"
SUFFIX = ".tlog-proof"  # the spec's file extension
_INDEX_RE = re.compile(r"index (0|[1-9][0-9]*)")


def is_tlog_proof(data: bytes) -> bool:
    """Whether ``data`` starts like a tlog-proof file."""
    return data.startswith(HEADER.encode() + b"\n")


def to_tlog_proof(bundle: dict[str, Any]) -> str:
    """The tlog-proof text of a ``ledger-log-inclusion/v1`` bundle."""
    entry = rfc8785.dumps(bundle["event"])
    lines = [HEADER, "extra " + base64.b64encode(entry).decode("ascii"),
             f"index {int(bundle['leaf_index'])}"]
    lines += [base64.b64encode(bytes.fromhex(h)).decode("ascii")
              for h in bundle["audit_path"]]
    return "\n".join(lines) + "\n\n" + str(bundle["checkpoint"])


def from_tlog_proof(text: str) -> dict[str, Any]:
    """The ``ledger-log-inclusion/v1`` bundle a tlog-proof text holds (not yet verified:
    ``check_inclusion`` does that). ``ConsistencyFormatError`` says what is malformed,
    including a proof without the entry in its ``extra`` line."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines or lines[0] != HEADER:
        raise ConsistencyFormatError(f"not a tlog-proof: it must start with {HEADER!r} "
                                     "and hold a blank line before the checkpoint")
    rest = lines[1:]
    extra: bytes | None = None
    if rest and rest[0].startswith("extra "):
        try:
            extra = b64std_decode(rest[0][len("extra "):])
        except ValueError as exc:
            raise ConsistencyFormatError(f"tlog-proof: the extra line is {exc}") from None
        rest = rest[1:]
    if not rest or not _INDEX_RE.fullmatch(rest[0]):
        raise ConsistencyFormatError("tlog-proof: expected 'index N' (decimal, no leading "
                                     "zeros) after the header and optional extra line")
    index = int(rest[0][len("index "):])
    path = []
    for n, line in enumerate(rest[1:], 1):
        try:
            digest = b64std_decode(line)
        except ValueError as exc:
            raise ConsistencyFormatError(f"tlog-proof: proof line {n} is {exc}") from None
        if len(digest) != HASH_SIZE:
            raise ConsistencyFormatError(f"tlog-proof: proof line {n} is not a "
                                         f"{HASH_SIZE}-byte hash")
        path.append(digest.hex())
    try:
        size = parse_checkpoint(parse_note(note).text).size
    except NoteError as exc:
        raise ConsistencyFormatError(f"tlog-proof: the checkpoint is malformed ({exc})"
                                     ) from None
    if extra is None:
        raise ConsistencyFormatError("tlog-proof: no extra line, so the entry is unknown: "
                                     "ledger proofs carry the event's canonical JSON there")
    try:
        event = orjson.loads(extra)
    except orjson.JSONDecodeError:
        raise ConsistencyFormatError("tlog-proof: the extra data is not an event's JSON"
                                     ) from None
    if not isinstance(event, dict):
        raise ConsistencyFormatError("tlog-proof: the extra data is not an event's JSON")
    return {"format": INCLUSION_FORMAT, "checkpoint": note, "event": event,
            "leaf_index": index, "tree_size": size, "audit_path": path}


__all__ = ["HEADER", "SUFFIX", "from_tlog_proof", "is_tlog_proof", "to_tlog_proof"]
