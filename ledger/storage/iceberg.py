"""The Apache Iceberg table that publishes the live event segments to outside engines.

A data directory with Iceberg publishing on holds a SQL catalog (SQLite,
``iceberg/catalog.sqlite``, the layout's ``iceberg_catalog``) whose table
``ledger.events`` lists exactly the manifest's live event segments: its schema is the
event segment schema plus ``tenant`` and ``date`` (strings, the identity partition
columns; the files hold neither: Iceberg fills them from each file's partition values).
The files carry no Iceberg field ids: the table's name mapping
(``schema.name-mapping.default``) resolves their columns by name. Derived dimension
columns (``meta.<key>``) are not in the table (the ``metadata`` JSON holds the same
values).

The manifest stays the authority. ``IcebergTable.publish`` brings the table level with
the live set the manifest records add up to, in one Iceberg commit (files added and
removed, each project's manifest record count in the table property
``ledger.manifest-records``, a JSON object ``{"<project>": <records>}``: every project's
unit has its own manifest); the sealer calls it after each seal and each compaction
record. A failure is logged, never
raised: the next publish catches up (it diffs the whole live set). ``published_records``
reads how far the table got without importing pyiceberg (one SQLite row and one JSON
file), so a directory that is level costs nothing to check.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from ledger.lazy import lazy
from ledger.model.schema import EVENT_SCHEMA
from ledger.storage.durable import private_dir, tighten
from ledger.storage.layout import DataDir
from ledger.storage.manifest import Segment
from ledger.storage.segments import SegmentStore

if TYPE_CHECKING:
    from pyiceberg.table import Table

pafs = lazy("pyarrow.fs")

CATALOG_NAME = "ledger"
NAMESPACE = "ledger"
TABLE = "events"
IDENTIFIER = f"{NAMESPACE}.{TABLE}"
RECORDS_PROPERTY = "ledger.manifest-records"  # each project's manifest records reflected
KEEP_SNAPSHOTS = 100  # older Iceberg snapshots are expired (their files are not touched)
PARTITION_COLUMNS = ("tenant", "date")
TABLE_SCHEMA: pa.Schema = EVENT_SCHEMA.append(pa.field("tenant", pa.string())).append(
    pa.field("date", pa.string()))
_log = logging.getLogger("ledger")


@dataclass(frozen=True, slots=True)
class Published:
    """What the table's current snapshot lists: file locations, and the manifest
    records it reflects (per project)."""

    files: frozenset[str]
    records: dict[str, int]


def parse_records(text: str | None) -> dict[str, int]:
    """The per-project record counts of ``RECORDS_PROPERTY`` (anything else, such as the
    single count of a table published before projects had their own manifests: none,
    so the next publish catches up)."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int)}


def format_records(records: Mapping[str, int]) -> str:
    """``RECORDS_PROPERTY``'s value: the counts by project name, keys sorted."""
    return orjson.dumps(dict(sorted(records.items()))).decode()


def catalog_properties(layout: DataDir) -> dict[str, str]:
    """The properties of the directory's SQL catalog (pyiceberg ``SqlCatalog``)."""
    return {"uri": f"sqlite:///{layout.iceberg_catalog}",
            "warehouse": f"file://{layout.iceberg_warehouse}"}


def published_records(layout: DataDir) -> dict[str, int] | None:
    """Each project's manifest records the table reflects (None: no table), read from
    the catalog's SQLite row and the table's metadata file alone."""
    location = metadata_location(layout)
    if location is None:
        return None
    try:
        meta = orjson.loads(Path(_local_path(location)).read_bytes())
        return parse_records(meta.get("properties", {}).get(RECORDS_PROPERTY))
    except (OSError, ValueError, AttributeError):
        return {"": -1}  # unreadable: never level, so a publish rewrites it


def metadata_location(layout: DataDir) -> str | None:
    """The current metadata file of ``ledger.events`` in the catalog (None: none)."""
    path = layout.iceberg_catalog
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND "
                "table_namespace = ? AND table_name = ?",
                (CATALOG_NAME, NAMESPACE, TABLE)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _local_path(location: str) -> str:
    return location.removeprefix("file://")


class IcebergTable:
    """The writer's handle on the directory's Iceberg table (created on first publish)."""

    def __init__(self, layout: DataDir, store: SegmentStore) -> None:
        self.layout = layout
        self.store = store
        self._table: Table | None = None
        self._files: dict[str, Any] | None = None  # location -> DataFile, as committed
        self.commits = 0  # commits made by this handle (/metrics, tests)
        self.failed: BaseException | None = None  # the last publish's failure, if any

    def location(self, relative: str) -> str:
        """The location a segment file is listed under in the table: a URL of the
        store's filesystem (``file:///…`` on a local disk), not percent-encoded: Iceberg
        readers take locations verbatim."""
        fs = self.store.fs
        scheme = "file" if isinstance(fs, pafs.LocalFileSystem) else fs.type_name
        return f"{scheme}://{self.store.abspath(relative)}"

    def publish(self, live: Iterable[Segment], records: Mapping[str, int]) -> bool:
        """Make the table list exactly the live event segments (one commit), recording
        that it reflects ``records`` manifest records of each project. Never raises: a failure is
        logged and kept in ``failed``, and the next publish catches up."""
        try:
            self._publish([s for s in live if s.kind == "events"], records)
        except Exception as exc:  # the manifest is the authority: publishing may lag
            self._table = self._files = None  # reload: the commit may or may not be in
            self.failed = exc
            _log.warning("publishing the Iceberg table failed (the next seal retries): %s",
                         exc)
            return False
        self.failed = None
        return True

    def _publish(self, live: list[Segment], records: Mapping[str, int]) -> None:
        table = self._load()
        files = self._current_files(table)
        want = {self.location(s.path): s for s in live}
        added = [self._data_file(table, want[loc]) for loc in sorted(want.keys() - files)]
        removed = [files[loc] for loc in sorted(files.keys() - want.keys())]
        with table.transaction() as tx:
            if added or removed:
                props = {RECORDS_PROPERTY: format_records(records)}
                update = tx.update_snapshot(snapshot_properties=props)
                producer = update.overwrite() if removed else update.merge_append()
                with producer as p:
                    for f in removed:
                        p.delete_data_file(f)
                    for f in added:
                        p.append_data_file(f)
            tx.set_properties({RECORDS_PROPERTY: format_records(records)})
        for f in removed:
            files.pop(f.file_path)
        for f in added:
            files[f.file_path] = f
        self.commits += 1
        self._expire(table)
        tighten(self.layout.iceberg_warehouse)  # private, as everything in the directory

    def _load(self) -> Table:
        if self._table is not None:
            return self._table
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.exceptions import NoSuchTableError

        private_dir(self.layout.iceberg_warehouse)
        catalog = SqlCatalog(CATALOG_NAME, **catalog_properties(self.layout))
        try:
            self._table = catalog.load_table(IDENTIFIER)
        except NoSuchTableError:
            self._table = self._create(catalog)
        return self._table

    @staticmethod
    def _create(catalog: Any) -> Table:
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.schema import assign_fresh_schema_ids
        from pyiceberg.transforms import IdentityTransform

        catalog.create_namespace_if_not_exists(NAMESPACE)
        schema = assign_fresh_schema_ids(catalog._convert_schema_if_needed(TABLE_SCHEMA))
        spec = PartitionSpec(*(
            PartitionField(source_id=schema.find_field(name).field_id, field_id=1000 + i,
                           transform=IdentityTransform(), name=name)
            for i, name in enumerate(PARTITION_COLUMNS)))
        return catalog.create_table(IDENTIFIER, schema=schema, partition_spec=spec, properties={
            "schema.name-mapping.default": schema.name_mapping.model_dump_json(),
            "write.metadata.delete-after-commit.enabled": "true",
            "write.metadata.previous-versions-max": "20",
            RECORDS_PROPERTY: "{}",
        })

    def _current_files(self, table: Table) -> dict[str, Any]:
        if self._files is None:
            self._files = {f.file_path: f for f in current_data_files(table)}
        return self._files

    def _data_file(self, table: Table, seg: Segment) -> Any:
        """The Iceberg description of a segment file: its partition values (the
        segment's tenant and date), size, and column statistics from its footer."""
        import pyarrow.parquet as pq
        from pyiceberg.io.pyarrow import (
            StatisticsCollector,
            compute_statistics_plan,
            data_file_statistics_from_parquet_metadata,
            match_metrics_mode,
            parquet_path_to_id_mapping,
        )
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
        from pyiceberg.table.metadata import TableMetadata
        from pyiceberg.typedef import Record
        from pyiceberg.types import StringType

        meta: TableMetadata = table.metadata
        schema = meta.schema()
        with self.store.fs.open_input_file(self.store.abspath(seg.path)) as f:
            footer = pq.read_metadata(f)
        plan = compute_statistics_plan(schema, meta.properties)
        mapping = parquet_path_to_id_mapping(schema)
        # Columns the table does not list (derived ``meta.<key>``): no statistics.
        extra = -1
        plan[extra] = StatisticsCollector(extra, StringType(), match_metrics_mode("none"), "")
        for i in range(footer.num_columns):
            path = footer.schema.column(i).path
            mapping.setdefault(path, extra)
        stats = data_file_statistics_from_parquet_metadata(footer, plan, mapping)
        for counts in (stats.column_sizes, stats.value_counts, stats.null_value_counts,
                       stats.nan_value_counts, stats.column_aggregates):
            counts.pop(extra, None)
        data_file = DataFile.from_args(
            content=DataFileContent.DATA, file_path=self.location(seg.path),
            file_format=FileFormat.PARQUET, partition=Record(seg.tenant, seg.date),
            file_size_in_bytes=seg.bytes, sort_order_id=None, equality_ids=None,
            key_metadata=None, **stats.to_serialized_dict())
        data_file.spec_id = meta.default_spec_id
        return data_file

    def _expire(self, table: Table) -> None:
        """Past 1.5 × ``KEEP_SNAPSHOTS`` snapshots, expire all but the last
        ``KEEP_SNAPSHOTS`` and remove the manifest files only they listed (segment files
        are never touched here: the sealer owns them)."""
        snapshots = table.metadata.snapshots
        if len(snapshots) <= KEEP_SNAPSHOTS + KEEP_SNAPSHOTS // 2:
            return
        old = [s.snapshot_id for s in sorted(snapshots, key=lambda s: s.timestamp_ms)
               [:-KEEP_SNAPSHOTS]]
        table.maintenance.expire_snapshots().by_ids(old).commit()
        listed: set[str] = set()
        for snap in table.metadata.snapshots:
            listed.add(_local_path(snap.manifest_list))
            listed.update(_local_path(m.manifest_path) for m in snap.manifests(table.io))
        folder = Path(_local_path(table.metadata_location)).parent
        for path in folder.glob("*.avro"):
            if str(path) not in listed:
                path.unlink(missing_ok=True)


def current_data_files(table: Table) -> list[Any]:
    """The data files of the table's current snapshot."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    out = []
    for manifest in snapshot.manifests(table.io):
        out.extend(e.data_file for e in manifest.fetch_manifest_entry(table.io,
                                                                       discard_deleted=True))
    return out


def read_published(layout: DataDir) -> Published | None:
    """The file set of the table's current snapshot (None: the directory has no table)."""
    if metadata_location(layout) is None:
        return None
    from pyiceberg.catalog.sql import SqlCatalog

    table = SqlCatalog(CATALOG_NAME, **catalog_properties(layout)).load_table(IDENTIFIER)
    return Published(frozenset(f.file_path for f in current_data_files(table)),
                     parse_records(table.metadata.properties.get(RECORDS_PROPERTY)))


__all__ = ["IDENTIFIER", "TABLE_SCHEMA", "IcebergTable", "Published", "catalog_properties",
           "current_data_files", "format_records", "metadata_location", "parse_records",
           "published_records", "read_published"]
