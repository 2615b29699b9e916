"""The manifest: the hash-chained commit log of segment files.

``manifest.jsonl`` holds one record a line, each the RFC 8785 JSON of an object with

* ``n``     its position (0-based),
* ``prev``  the SHA-256 (hex) of the previous line's bytes, 64 zeros for the first,
* ``op``    ``"seal"`` (journal files up to ``journal`` became the segments in ``add``)
            or ``"compact"`` (the segments in ``remove`` were merged into ``add``),
* ``at``    when (RFC 3339 UTC),
* ``add`` / ``remove``  segment descriptions: ``path`` (relative to the data directory),
            ``sha256`` of the file, ``rows``, ``bytes``, ``tenant``, ``date``, ``kind``
            (``events``, ``pairs``, ``receipts`` or ``membership``), ``seq_min`` and ``seq_max``.

A segment exists only once a record naming it is durably appended (one ``write`` of one
line, then fsync). Readers use the live set the records add up to, never a directory
listing. A torn last line (a crash mid-append) is not a record and is cut off on open;
any other break of the chain is tampering, reported by ``llmring ledger verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ledger.errors import ManifestError
from ledger.model.event import canonical_json
from ledger.storage.durable import open_private

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Segment:
    path: str
    sha256: str
    rows: int
    bytes: int
    tenant: str
    date: str
    kind: str
    seq_min: int
    seq_max: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "sha256": self.sha256, "rows": self.rows, "bytes": self.bytes,
            "tenant": self.tenant, "date": self.date, "kind": self.kind,
            "seq_min": self.seq_min, "seq_max": self.seq_max,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(**{k: d[k] for k in cls.__slots__})


@dataclass(slots=True)
class ManifestState:
    """What the records add up to."""

    records: list[dict[str, Any]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    live: dict[str, Segment] = field(default_factory=dict)
    sealed_journal: int = 0  # journal files numbered <= this are sealed

    @property
    def head(self) -> str:
        return self.hashes[-1] if self.hashes else GENESIS

    def apply(self, record: dict[str, Any]) -> None:
        for d in record.get("remove", []):
            self.live.pop(d["path"], None)
        for d in record.get("add", []):
            seg = Segment.from_dict(d)
            self.live[seg.path] = seg
        if record.get("op") == "seal":
            self.sealed_journal = max(self.sealed_journal, int(record["journal"]))

    def segments(self, tenant: str | None = None, kind: str = "events") -> list[Segment]:
        return [s for s in self.live.values()
                if s.kind == kind and (tenant is None or s.tenant == tenant)]

    def tenant_rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.live.values():
            if s.kind in ("events", "receipts"):  # both are entries of the tenant's log
                out[s.tenant] = out.get(s.tenant, 0) + s.rows
        return out


@dataclass(frozen=True, slots=True)
class ChainProblem:
    line: int
    message: str


def read_lines(path: Path) -> tuple[list[bytes], bool]:
    """The complete lines of the manifest, and whether a torn last line follows them."""
    if not path.exists():
        return [], False
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    return lines[:-1], torn


def check_chain(lines: list[bytes]) -> tuple[ManifestState, list[ChainProblem]]:
    """Walk the chain; apply every record that parses. Problems name the line (1-based)."""
    state = ManifestState()
    problems: list[ChainProblem] = []
    prev = GENESIS
    for i, line in enumerate(lines):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(ChainProblem(i + 1, "manifest line is not valid JSON"))
            prev = hashlib.sha256(line).hexdigest()
            continue
        if not isinstance(record, dict):
            problems.append(ChainProblem(i + 1, "manifest line is not a JSON object"))
            prev = hashlib.sha256(line).hexdigest()
            continue
        if record.get("n") != i:
            problems.append(
                ChainProblem(i + 1, f"record number is {record.get('n')}, expected {i}"))
        if record.get("prev") != prev:
            problems.append(ChainProblem(
                i + 1, "hash chain broken: 'prev' does not match the previous line's SHA-256"))
        if canonical_json(record, reference=True) != line:
            problems.append(ChainProblem(i + 1, "record is not in canonical (RFC 8785) form"))
        prev = hashlib.sha256(line).hexdigest()
        state.records.append(record)
        state.hashes.append(prev)
        try:
            state.apply(record)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(ChainProblem(i + 1, f"malformed record: {exc}"))
    return state, problems


class Manifest:
    """The writer's handle on ``manifest.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lines, torn = read_lines(path)
        if torn:  # a crash mid-append: the partial line never committed anything
            good = sum(len(line) + 1 for line in lines)
            with open(path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
        self.state, problems = check_chain(lines)
        if problems:
            first = problems[0]
            raise ManifestError(
                f"{path} line {first.line}: {first.message}. The data directory was altered; "
                "run `llmring ledger verify` for the full report")
        self._fd = open_private(path, os.O_WRONLY | os.O_APPEND)

    def append(self, op: str, at: str, *, add: Iterable[Segment] = (),
               remove: Iterable[Segment] = (), journal: int | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "n": len(self.state.records),
            "prev": self.state.head,
            "op": op,
            "at": at,
            "add": [s.as_dict() for s in add],
            "remove": [s.as_dict() for s in remove],
        }
        if journal is not None:
            record["journal"] = journal
        line = canonical_json(record, reference=True)
        end = os.fstat(self._fd).st_size
        try:
            view = memoryview(line + b"\n")
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:  # (a full disk) the record is not committed: no part of it stays
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise
        self.state.records.append(record)
        self.state.hashes.append(hashlib.sha256(line).hexdigest())
        self.state.apply(record)
        return record

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
