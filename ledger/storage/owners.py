"""The ownership map (``owners.json``): which server owns which project of a data
directory shared by several ``llmring serve --owns … --url …`` processes, and the URL the
others send that project's clients to (421, docs/http-api.md).

The map is advice for routing; the authority is each project's lock
(``projects/<t>/LOCK``), which only its owner holds, so no project is ever written by two
processes. It is updated atomically (``write_atomic``) under ``owners.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from ledger.storage.durable import open_private, write_atomic
from ledger.storage.layout import DataDir


class Owners:
    """The ownership map of one data directory."""

    def __init__(self, layout: DataDir) -> None:
        self.layout = layout

    def read(self) -> dict[str, dict[str, Any]]:
        """project → ``{"url", "pid"}`` of its recorded owner (empty without a map)."""
        try:
            data = orjson.loads(self.layout.owners.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        projects = data.get("projects") if isinstance(data, dict) else None
        return {k: v for k, v in (projects or {}).items()
                if isinstance(v, dict) and isinstance(v.get("url"), str)}

    def url_of(self, project: str) -> str | None:
        """The URL of the server recorded as the project's owner (None: none recorded)."""
        found = self.read().get(project)
        return None if found is None else str(found["url"])

    def record(self, projects: Sequence[str], url: str) -> None:
        """Record this process (at ``url``) as the owner of ``projects``."""
        with self._locked():
            owned = self.read()
            for project in projects:
                owned[project] = {"url": url, "pid": os.getpid()}
            self._write(owned)

    def forget(self, projects: Sequence[str]) -> None:
        """Remove this process's records of ``projects`` (when it stops)."""
        with self._locked():
            owned = self.read()
            for project in projects:
                if owned.get(project, {}).get("pid") == os.getpid():
                    del owned[project]
            self._write(owned)

    def _write(self, owned: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.layout.owners, orjson.dumps(
            {"projects": owned}, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = open_private(self.layout.owners_lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


__all__ = ["Owners"]
