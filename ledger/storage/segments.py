"""Segments: the sealed, immutable Parquet files that hold events.

Events are written to ``events/tenant=<t>/date=<YYYY-MM-DD>/seg-<id>.parquet`` (hive
partitioning, zstd, rows in ``seq`` order, in row groups of ``ROW_GROUP`` rows: every day's
file spans nearly the whole seq range of its tenant, so it is the row groups' tight seq
statistics that let a query for a seq range skip the rest of each file). ``tenant`` and
``date`` live in the path only, so Spark, Trino, Athena, BigQuery
and DuckDB read the tree as-is. Pairings of usage logs with conversation events go to
``pairs/tenant=<t>/pairs-<id>.parquet``.

A segment is written to a temporary name, fsynced, renamed into place and its directory
fsynced (0600, in 0700 folders, as everything under a data directory); it only *exists*
once the manifest names it with its SHA-256. File access goes
through ``pyarrow.fs`` so the same code can target an object store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from ledger.model.dimensions import META_PREFIX
from ledger.model.schema import DICTIONARY_COLUMNS, EVENT_SCHEMA, TS_TYPE
from ledger.storage.durable import fsync_dir, open_private, private_dir
from ledger.storage.layout import DataDir
from ledger.storage.manifest import Segment

ROW_GROUP = 16_384  # rows are in seq order: small groups give tight seq statistics

PAIR_SCHEMA = pa.schema([
    ("event_id", pa.string()),  # the conversation event the usage log was joined to
    ("usage_id", pa.string()),  # the usage log's own event_id, when the caller sent one
    ("digest", pa.binary()),
    ("recorded_at", TS_TYPE),
])



SEGMENT_PREFIXES = ("seg-", "pairs-", "rcpt-", "mem-")  # the names the sealer gives


def temporary_name(name: str) -> str:
    """The name a segment file is written under before its rename: hidden (a leading
    ``.``) from outside engines, which skip names starting with ``.`` or ``_``."""
    return f".{name}.tmp"


def written_here(name: str) -> bool:
    """Whether a file name is one this code writes in a segment folder: a segment
    (``seg-…``, ``pairs-…``, ``rcpt-…``, ``mem-…`` ``.parquet``) or a temporary one (also
    the ``<name>.tmp`` of versions before)."""
    if name.endswith(".tmp"):
        return written_here(name.removeprefix(".").removesuffix(".tmp"))
    return name.endswith(".parquet") and name.startswith(SEGMENT_PREFIXES)


def rows_to_table(rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """An Arrow table (``EVENT_SCHEMA``, from ``ledger.model.schema``) from row tuples in
    ``ROW_FIELDS`` order."""
    if not rows:
        return EVENT_SCHEMA.empty_table()
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(col, type=f.type) for col, f in zip(columns, EVENT_SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


class SegmentStore:
    """Writes and reads segment files under a data directory through ``pyarrow.fs``."""

    def __init__(self, layout: DataDir, filesystem: pafs.FileSystem | None = None) -> None:
        self.layout = layout
        self.root = layout.root
        self.fs = filesystem or pafs.LocalFileSystem()
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def abspath(self, relative: str) -> str:
        return str(self.root / relative)

    def write(self, table: pa.Table, relative_dir: str, name: str, *, tenant: str, date: str,
              kind: str) -> Segment:
        """Write one segment durably; return its description for the manifest."""
        sink = pa.BufferOutputStream()
        # Derived dimension columns (``ledger.storage.dimensions``) hold few distinct
        # values, and a report groups by them: dictionary-encoded like model and alias.
        dictionary = DICTIONARY_COLUMNS + [n for n in table.column_names
                                           if n.startswith(META_PREFIX)]
        pq.write_table(
            table, sink, compression="zstd", row_group_size=ROW_GROUP,
            use_dictionary=dictionary if kind == "events" else True,
            write_statistics=True,
        )
        data = sink.getvalue().to_pybytes()
        relative = f"{relative_dir}/{name}"
        final = self.abspath(relative)
        tmp = self.abspath(f"{relative_dir}/{temporary_name(name)}")  # hidden from readers
        if self._local:
            private_dir(Path(self.abspath(relative_dir)))
            fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except BaseException:  # (a full disk) leave no partial file behind
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            os.close(fd)
            os.replace(tmp, final)
            fsync_dir(Path(final).parent)
        else:  # object stores: a single PUT is atomic
            self.fs.create_dir(self.abspath(relative_dir), recursive=True)
            with self.fs.open_output_stream(final) as out:
                out.write(data)
        seq = table.column("seq") if "seq" in table.column_names else None
        seq_min = int(pc.min(seq).as_py()) if seq is not None and len(table) else -1
        seq_max = int(pc.max(seq).as_py()) if seq is not None and len(table) else -1
        return Segment(
            path=relative, sha256=hashlib.sha256(data).hexdigest(), rows=table.num_rows,
            bytes=len(data), tenant=tenant, date=date, kind=kind, seq_min=seq_min,
            seq_max=seq_max,
        )

    def read(self, segment: Segment, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.abspath(segment.path), columns=columns, filesystem=self.fs)

    def sha256(self, relative: str) -> str:
        h = hashlib.sha256()
        with self.fs.open_input_stream(self.abspath(relative)) as f:
            while chunk := f.read(4 * 1024 * 1024):
                h.update(chunk)
        return h.hexdigest()

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.abspath(relative)).type == pafs.FileType.File

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.abspath(relative))

    def stray_files(self, live: set[str], folders: Sequence[Path] | None = None) -> list[str]:
        """Files under ``folders`` (a project's partitions, ``ProjectDir.segment_folders``;
        by default every segment folder) that no manifest record names (crash leftovers),
        of the names this code writes (``written_here``): nothing else is ever taken for a
        leftover."""
        out = []
        for base in self.layout.segment_folders() if folders is None else folders:
            if not base.exists():
                continue
            selector = pafs.FileSelector(str(base), recursive=True)
            for info in self.fs.get_file_info(selector):
                if info.type != pafs.FileType.File:
                    continue
                rel = os.path.relpath(info.path, self.root)
                if rel not in live and written_here(info.base_name):
                    out.append(rel)
        return out
