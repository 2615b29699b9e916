"""Declared dimensions (docs/formats.md): the metadata keys each project reports by
often, kept in ``dimensions.json`` (``{"format": "llmring-dimensions/v1", "projects":
{"<project>": ["customer", "team"]}}``, replaced atomically on change, 0600), and the
derived columns that carry their values in the project's event segments.

When a segment is written (sealed or compacted) each key its project declares at that
moment becomes a string column ``meta.<key>`` holding the key's value
(``ledger.model.dimensions``: computed by the very SQL a query would use on the JSON), so a
report reads the column instead of parsing every event's metadata. The event columns,
the event bytes and every hash are unchanged; segments of a project that declares
nothing are written exactly as before. A project stays listed (with ``[]``) once it has
declared anything, which tells readers its segments may carry such columns.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from ledger.errors import ConfigError
from ledger.model.dimensions import MAX_DECLARED, check_key, column_name, extract_sql
from ledger.model.schema import EVENT_SCHEMA
from ledger.storage.durable import private_dir, write_atomic
from ledger.storage.layout import DataDir

DIMENSIONS_FORMAT = "llmring-dimensions/v1"


class DeclaredDimensions:
    """The ``dimensions.json`` of a data directory (read again when it changed)."""

    def __init__(self, layout: DataDir) -> None:
        self.path = layout.dimensions
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._projects: dict[str, list[str]] = {}

    def projects(self) -> dict[str, list[str]]:
        """Every project that ever declared dimensions, with its keys now."""
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._projects = None, {}
                return {}
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._projects = self._read()
                self._stamp = stamp
            return {k: list(v) for k, v in self._projects.items()}

    def keys(self, project: str) -> list[str]:
        return self.projects().get(project, [])

    def set(self, project: str, keys: Sequence[str]) -> list[str]:
        """Declare ``keys`` (validated, deduplicated, in the given order) for ``project``;
        ``[]`` declares none. Segments written from now on carry their columns."""
        if isinstance(keys, str) or not isinstance(keys, Sequence):
            raise ValueError("keys must be a list of metadata keys")
        clean = list(dict.fromkeys(check_key(k) for k in keys))
        if len(clean) > MAX_DECLARED:
            raise ValueError(f"at most {MAX_DECLARED} declared dimensions per project")
        with self._lock:
            projects = self._read() if self.path.exists() else {}
            projects[project] = clean
            data = {"format": DIMENSIONS_FORMAT, "projects": dict(sorted(projects.items()))}
            private_dir(self.path.parent)
            write_atomic(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            self._stamp = None
        return clean

    def _read(self) -> dict[str, list[str]]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{self.path} is not valid JSON ({exc})") from None
        projects = data.get("projects") if isinstance(data, dict) else None
        if (not isinstance(data, dict) or data.get("format") != DIMENSIONS_FORMAT
                or not isinstance(projects, dict)
                or not all(isinstance(v, list) and all(isinstance(k, str) for k in v)
                           for v in projects.values())):
            raise ConfigError(f'{self.path} must be {{"format": "{DIMENSIONS_FORMAT}", '
                              '"projects": {"<project>": ["<key>", …]}}')
        return projects


def with_dimensions(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``table`` (event columns only) with a ``meta.<key>`` string column per key."""
    if not keys:
        return table
    import duckdb  # only for projects with dimensions: an idle server does without

    con = duckdb.connect(":memory:")
    try:
        con.register("segment_rows", table.select(["metadata"]))
        select = ", ".join(f"{extract_sql(k)} AS k{i}" for i, k in enumerate(keys))
        derived = con.sql(f"SELECT {select} FROM segment_rows").to_arrow_table()
    finally:
        con.close()
    out = table
    for i, key in enumerate(keys):
        out = out.append_column(pa.field(column_name(key), pa.string()),
                                derived.column(f"k{i}").cast(pa.string()))
    return out


def event_columns(table: pa.Table) -> pa.Table:
    """``table`` without any derived column (what a compaction re-derives)."""
    return table.select(EVENT_SCHEMA.names)


def derived_columns(table: pa.Table | Any) -> list[str]:
    """The keys of the derived columns of a segment's table or schema."""
    names = table.column_names if isinstance(table, pa.Table) else table.names
    return [n[len("meta."):] for n in names if n.startswith("meta.")]
