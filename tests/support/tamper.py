"""Tampering a sealed segment the way an attacker who also fixes the manifest would: the
file replaced and its project's manifest made to agree (its SHA-256 updated, the chain
re-linked), so only recomputing what the rows hash to can find it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq


def rewrite_segment(path: Path, segment: Path, table: pa.Table) -> None:
    """Write ``table`` over ``segment`` (a file of data directory ``path``) and make its
    project's manifest agree."""
    pq.write_table(table, segment, compression="zstd")
    rel = str(segment.relative_to(path))
    digest = hashlib.sha256(segment.read_bytes()).hexdigest()
    tenant = rel.split("/")[1].removeprefix("tenant=")
    manifest = path / "projects" / tenant / "manifest.jsonl"
    records = [orjson.loads(x) for x in manifest.read_bytes().splitlines()]
    prev = None
    for r in records:
        for seg in r["add"]:
            if seg["path"] == rel:
                seg["sha256"] = digest
        if prev is not None:
            r["prev"] = prev
        prev = hashlib.sha256(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)).hexdigest()
    manifest.write_bytes(
        b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records))
