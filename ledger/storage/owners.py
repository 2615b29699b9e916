"""The ownership map (``owners.json``): which server owns which project of a data
directory shared by several ``llmring serve --owns … --url …`` processes, and the URL the
others send that project's clients to (421, docs/http-api.md).

The map is advice for routing; the authority is each project's lock
(``projects/<t>/LOCK``), which only its owner holds, so no project is ever written by two
processes. It is updated atomically (``write_atomic``) under ``owners.lock``.

With segments on object storage the map is the shared storage's: the object
``<prefix>/owners.json`` of the bucket (the same JSON), read by every server of every
machine on that bucket and changed by read-modify-write with conditional puts
(``If-Match`` its ETag, ``If-None-Match: *`` to create it), retried on a lost race; there
the manifest records' conditional puts (``ledger.storage.manifest_objects``) are what
keep two machines from both writing a project.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from ledger.errors import ObjectStoreError
from ledger.storage.durable import open_private, write_atomic
from ledger.storage.layout import DataDir
from ledger.storage.objectstore import ObjectStore, normalize, s3_client

RACE_RETRIES = 20  # lost conditional puts in a row before giving up


def _parse(data: bytes) -> dict[str, dict[str, Any]]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    projects = value.get("projects") if isinstance(value, dict) else None
    return {k: v for k, v in (projects or {}).items()
            if isinstance(v, dict) and isinstance(v.get("url"), str)}


def _dump(owned: dict[str, dict[str, Any]]) -> bytes:
    return orjson.dumps({"projects": owned},
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


class Owners:
    """The ownership map of one data directory (or of its object storage)."""

    def __init__(self, layout: DataDir, storage: ObjectStore | None = None) -> None:
        self.layout = layout
        self._bucket = self._key = ""
        self._client: Any = None
        if storage is not None:
            _, self._bucket, prefix = normalize(storage.uri)
            self._key = f"{prefix}/owners.json" if prefix else "owners.json"

    @property
    def where(self) -> str:
        return f"s3://{self._bucket}/{self._key}" if self._key else str(self.layout.owners)

    def read(self) -> dict[str, dict[str, Any]]:
        """project → ``{"url", "pid"}`` of its recorded owner (empty without a map)."""
        if self._key:
            return _parse(self._get()[0] or b"{}")
        try:
            return _parse(self.layout.owners.read_bytes())
        except FileNotFoundError:
            return {}

    def url_of(self, project: str) -> str | None:
        """The URL of the server recorded as the project's owner (None: none recorded)."""
        found = self.read().get(project)
        return None if found is None else str(found["url"])

    def record(self, projects: Sequence[str], url: str) -> None:
        """Record this process (at ``url``) as the owner of ``projects``."""
        def change(owned: dict[str, dict[str, Any]]) -> None:
            for project in projects:
                owned[project] = {"url": url, "pid": os.getpid()}
        self._change(change)

    def forget(self, projects: Sequence[str], url: str | None = None) -> None:
        """Remove this process's records of ``projects`` (when it stops): those naming
        its pid, and its ``url`` where the map is the bucket's (other machines' pids)."""
        def change(owned: dict[str, dict[str, Any]]) -> None:
            for project in projects:
                found = owned.get(project, {})
                if found.get("pid") == os.getpid() and (url is None or
                                                        found.get("url") == url):
                    del owned[project]
        self._change(change)

    def _change(self, change: Any) -> None:
        with self._locked():
            if not self._key:
                owned = self.read()
                change(owned)
                write_atomic(self.layout.owners, _dump(owned))
                return
            for _ in range(RACE_RETRIES):
                data, etag = self._get()
                owned = _parse(data or b"{}")
                change(owned)
                if self._put(_dump(owned), etag):
                    return
            raise ObjectStoreError(f"cannot update {self.where}: {RACE_RETRIES} conditional "
                                   "puts in a row lost to other writers")

    def _s3(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def _get(self) -> tuple[bytes | None, str | None]:
        """The map object's bytes and ETag (None, None: no object)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self._s3().get_object(Bucket=self._bucket, Key=self._key)
            return bytes(reply["Body"].read()), str(reply["ETag"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise ObjectStoreError(f"cannot read {self.where}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"cannot read {self.where}: {exc}") from None

    def _put(self, data: bytes, etag: str | None) -> bool:
        """Write the map unless it changed since ``etag`` was read (False: it did)."""
        from botocore.exceptions import BotoCoreError, ClientError

        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self._s3().put_object(Bucket=self._bucket, Key=self._key, Body=data,
                                  ContentType="application/json", **condition)
            return True
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412):
                return False
            raise ObjectStoreError(f"cannot write {self.where}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"cannot write {self.where}: {exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = open_private(self.layout.owners_lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


__all__ = ["Owners"]
