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
once the manifest names it with its SHA-256. File access goes through ``pyarrow.fs``:
with a storage URI (``ledger.storage.objectstore``) the same relative paths live under
``s3://bucket/prefix/``, each file written by one PUT (a multipart upload for a large
one), which object storage makes visible only whole: a reader never sees part of a file
under its name, and no temporary name is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ledger.errors import ObjectStoreError
from ledger.lazy import lazy
from ledger.model.dimensions import META_PREFIX
from ledger.model.schema import DICTIONARY_COLUMNS, EVENT_SCHEMA, TS_TYPE
from ledger.storage.durable import fsync_dir, open_private, private_dir
from ledger.storage.layout import SEGMENT_KINDS, DataDir
from ledger.storage.manifest import ManifestState, Segment
from ledger.storage.objectstore import ObjectStore

pc = lazy("pyarrow.compute")
pq = lazy("pyarrow.parquet")
pafs = lazy("pyarrow.fs")

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
    """Writes and reads segment files under a data directory, or under its object store
    (``storage``), through ``pyarrow.fs``."""

    def __init__(self, layout: DataDir, storage: ObjectStore | None = None) -> None:
        self.layout = layout
        self.root = layout.root
        self.storage = storage
        self._fs = storage.filesystem if storage is not None else None
        self._local = storage is None

    @property
    def fs(self) -> pafs.FileSystem:
        """The segments' file system: the object store's, or the local one (made on first
        use: ``pyarrow.fs`` is imported then, not when a directory is opened)."""
        if self._fs is None:
            self._fs = pafs.LocalFileSystem()
        return self._fs

    @property
    def remote(self) -> bool:
        """Whether the segments live on object storage (not in the data directory)."""
        return not self._local

    def abspath(self, relative: str) -> str:
        """The path of a segment file on ``fs`` (absolute; ``bucket/prefix/…`` remote)."""
        if self.storage is not None:
            return self.storage.path(relative)
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
        else:  # object storage: one PUT, visible only once complete (no folders to make)
            with _remote(final, "write"), self.fs.open_output_stream(final) as out:
                out.write(data)
        seq = table.column("seq") if "seq" in table.column_names else None
        seq_min = int(pc.min(seq).as_py()) if seq is not None and len(table) else -1
        seq_max = int(pc.max(seq).as_py()) if seq is not None and len(table) else -1
        return Segment(
            path=relative, sha256=hashlib.sha256(data).hexdigest(), rows=table.num_rows,
            bytes=len(data), tenant=tenant, date=date, kind=kind, seq_min=seq_min,
            seq_max=seq_max,
        )

    def read(self, segment: Segment, columns: list[str] | None = None,
             filters: Any = None) -> pa.Table:
        with _remote(segment.path, "read", self.remote):
            return pq.read_table(self.abspath(segment.path), columns=columns,
                                 filters=filters, filesystem=self.fs)

    def sha256(self, relative: str) -> str:
        h = hashlib.sha256()
        with _remote(relative, "read", self.remote), \
                self.fs.open_input_stream(self.abspath(relative)) as f:
            while chunk := f.read(4 * 1024 * 1024):
                h.update(chunk)
        return h.hexdigest()

    def exists(self, relative: str) -> bool:
        with _remote(relative, "look up", self.remote):
            return self.fs.get_file_info(self.abspath(relative)).type == pafs.FileType.File

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError), _remote(relative, "delete", self.remote):
            self.fs.delete_file(self.abspath(relative))

    def stray_files(self, state: ManifestState, tenants: set[str],
                    folders: Sequence[Path] | None = None) -> list[str]:
        """Files no manifest record names, to remove at open (crash leftovers).

        In the data directory: such files under ``folders`` (a project's partitions,
        ``ProjectDir.segment_folders``; by default every segment folder), of the names this
        code writes (``written_here``): nothing else is ever taken for a leftover. On
        object storage, which another data directory may share: only under the partitions
        of ``tenants`` (the projects this unit writes), and only files its own manifest
        retired (replaced by a compaction). Writes there leave no temporary names; the
        files of a seal cut short by a crash before its manifest record keep their names
        (no reader sees them: readers go by the manifest) since nothing proves that no
        other directory wrote them."""
        live = set(state.live)
        if self._local:
            return [rel for rel in self._listing(self.layout.segment_folders()
                                                 if folders is None else folders)
                    if rel not in live and written_here(os.path.basename(rel))]
        retired = {d["path"] for record in state.records for d in record.get("remove", ())}
        if not retired - live:
            return []
        remote = [f"{kind}/tenant={tenant}" for kind in SEGMENT_KINDS for tenant in tenants]
        return [rel for rel in self._listing(remote)
                if rel in retired and rel not in live]

    def _listing(self, folders: Sequence[str | Path]) -> list[str]:
        """The files under ``folders`` (relative to the data directory), relative."""
        out = []
        for folder in folders:
            base = str(folder) if self._local else self.abspath(str(folder))
            if self._local and not Path(base).exists():
                continue
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            with _remote(str(folder), "list", self.remote):
                infos = self.fs.get_file_info(selector)
            for info in infos:
                if info.type != pafs.FileType.File:
                    continue
                if self._local:
                    out.append(os.path.relpath(info.path, self.root))
                else:
                    assert self.storage is not None
                    out.append(info.path[len(self.storage.base) + 1:])
        return out


@contextlib.contextmanager
def _remote(what: str, action: str, remote: bool = True) -> Any:
    """On object storage, a failed request is an ``ObjectStoreError`` naming the file (a
    missing file stays ``FileNotFoundError``)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not remote:
            raise
        raise ObjectStoreError(f"object storage: cannot {action} {what}: {exc}") from exc
