"""The log side of C2SP tlog-witness: the ``add-checkpoint`` request the ledger sends a
witness, the reading of its answers, and the durable record, per witness and log origin,
of the size that witness last cosigned (``witness-state.json``, docs/formats.md).

The record is what the next request's ``old`` line and consistency proof start from; a
409 answer (``text/x.tlog.size``) replaces it with the size the witness says it holds.
Failures are recorded too (the last error and how many in a row), so ``llmring log
witnesses``, ``GET /api/v1/log/witnesses`` and ``/metrics`` show them.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from ledger.errors import CosignatureError
from ledger.storage.durable import write_atomic
from ledger.tlog.checkpoint import NoteSignature
from ledger.tlog.cosignature import (
    CosignerKey,
    cosignatures_of,
    parse_signature_line,
    verify_cosignature,
)
from ledger.tlog.policy import Policy

STATE_FORMAT = "llmring-witness-state/v1"
MAX_ANSWER = 64 * 1024  # bytes of a witness's answer read at most


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body: ``old N``, one base64 hash per line, an empty line, the note."""
    lines = [f"old {old}"] + [base64.b64encode(h).decode("ascii") for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


def cosignatures_in(answer: str, body: str, key: CosignerKey) -> list[NoteSignature]:
    """The lines of a 200 answer that are valid cosignatures of the checkpoint ``body``
    by ``key``; lines of other keys are ignored (C2SP tlog-witness). Raises
    ``CosignatureError`` when none is, or a line of ``key`` does not verify."""
    found = []
    for line in answer.splitlines():
        if not line.strip():
            continue
        sig = parse_signature_line(line)
        if key.matches(sig):
            verify_cosignature(body, sig, key)
            found.append(sig)
    if not found:
        raise CosignatureError(f"the answer holds no cosignature by {key.vkey()}")
    return found


def parse_size_answer(text: str) -> int:
    """The tree size of a 409 ``text/x.tlog.size`` answer (a decimal and a newline)."""
    word = text.strip()
    if not word.isascii() or not word.isdigit() or len(word) > 20:
        raise ValueError(f"a 409 answer must be a tree size, not {text[:40]!r}")
    return int(word)


def witness_status(policy: Policy, state: WitnessState, origin: str,
                   cosigned_note: str | None, size: int | None) -> dict[str, Any]:
    """What ``llmring log witnesses`` and ``GET /api/v1/log/witnesses`` show for one log:
    each policy witness's record and state, and whether the latest checkpoint (``size``,
    its note with the stored cosignatures) meets the quorum. A witness's ``state`` is
    ``current`` (it cosigned the latest checkpoint), ``behind`` (an older one),
    ``pending`` (none yet), ``failing`` (its last attempt failed) or ``no-url`` (the
    policy gives no URL: cosignatures only arrive by ``llmring log add-cosignature``)."""
    records = state.read()
    valid = set(cosignatures_of(cosigned_note, policy.witnesses)[0]) if cosigned_note else set()
    rows = []
    for name, key, url in zip(policy.names, policy.witnesses, policy.urls, strict=True):
        rec = records.get(name, {}).get(origin, {})
        held = rec.get("size")
        if not url:
            st = "no-url"
        elif rec.get("last_error"):
            st = "failing"
        elif key.name in valid or (held is not None and held == size and rec.get("root")):
            st = "current"
        elif held:
            st = "behind"
        else:
            st = "pending"
        rows.append({"name": name, "key": key.vkey(), "url": url, "state": st,
                     "cosigned_size": held, "cosigned_at": rec.get("cosigned_at"),
                     "cosigned_latest": key.name in valid,
                     "last_attempt": rec.get("last_attempt"),
                     "last_error": rec.get("last_error"),
                     "failures": int(rec.get("failures") or 0)})
    return {"origin": origin, "checkpoint_size": size, "quorum": policy.describe(),
            "quorum_met": size is not None and policy.met(valid), "witnesses": rows}


class WitnessState:
    """``witness-state.json``: per witness (policy name) and origin, the size and root it
    last cosigned, when, and the last failure. Each change is written durably."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def read(self) -> dict[str, dict[str, dict[str, Any]]]:
        """witness name → origin → record (``size``, ``root``, ``cosigned_at``,
        ``last_attempt``, ``last_error``, ``failures``)."""
        try:
            doc = orjson.loads(self.path.read_bytes())
            return {str(w): {str(o): dict(r) for o, r in logs.items()}
                    for w, logs in doc["witnesses"].items()}
        except FileNotFoundError:
            return {}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError,
                ValueError):
            return {}  # rebuilt by the next submissions: witnesses answer 409 with their size

    def record(self, witness: str, origin: str) -> dict[str, Any]:
        return dict(self.read().get(witness, {}).get(origin, {}))

    def update(self, witness: str, origin: str, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into the record of (``witness``, ``origin``), durably."""
        with self._lock:
            doc = self.read()
            rec = doc.setdefault(witness, {}).setdefault(origin, {})
            rec.update(changes)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, orjson.dumps(
                {"format": STATE_FORMAT, "witnesses": doc},
                option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
            return dict(rec)


__all__ = ["MAX_ANSWER", "STATE_FORMAT", "WitnessState", "add_checkpoint_body",
           "cosignatures_in", "parse_size_answer", "witness_status"]
