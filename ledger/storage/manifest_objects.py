"""A project's manifest records on object storage: one object per record, each written
once with a conditional put.

With a storage URI (``s3://bucket/prefix``) record ``n`` of project ``t``'s manifest is
also the object ``<prefix>/projects/<t>/manifest/<n, 12 digits>.json`` holding exactly
that record's line (its canonical JSON, no newline). The object is written before the
local line, with ``If-None-Match: *``, so it is the commit point: of two processes that
both try to write record ``n`` of one project (two machines sharing the bucket, each
believing it owns the project) only one can, and the other gets ``ManifestForkError``
before anything of its seal is committed. Opening a project brings the local
``manifest.jsonl`` level with the bucket (records a crash left only in the bucket are
appended locally; records written before the directory had objects are uploaded), and
refuses a bucket whose records differ from the local ones.

Conditional puts are not in ``pyarrow.fs``: the objects are written through boto3, with
the same endpoint and credentials (the AWS variables) as the segments.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ledger.errors import ManifestForkError, ObjectStoreError
from ledger.storage.objectstore import ObjectStore, normalize, s3_client

DIGITS = 12


@dataclass
class ManifestObjects:
    """The objects of one project's manifest records."""

    bucket: str
    folder: str  # "<prefix>/projects/<t>/manifest" (no slash at either end)
    client: Any

    @classmethod
    def of(cls, storage: ObjectStore, tenant: str) -> ManifestObjects:
        _, bucket, prefix = normalize(storage.uri)
        folder = "/".join(p for p in (prefix, "projects", tenant, "manifest") if p)
        return cls(bucket, folder, s3_client())

    def key(self, n: int) -> str:
        return f"{self.folder}/{n:0{DIGITS}d}.json"

    def where(self, n: int) -> str:
        return f"s3://{self.bucket}/{self.key(n)}"

    def get(self, n: int) -> bytes | None:
        """Record ``n``'s line as stored (None: no such object)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.key(n))
            return bytes(reply["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise ObjectStoreError(f"cannot read {self.where(n)}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"cannot read {self.where(n)}: {exc}") from None

    def put(self, n: int, line: bytes) -> None:
        """Write record ``n`` unless an object holds it already: the same bytes (a retried
        put that had succeeded) are fine, any other is ``ManifestForkError``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(n), Body=line,
                                   IfNoneMatch="*", ContentType="application/json")
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict") and \
                    status not in (409, 412):
                raise ObjectStoreError(f"cannot write {self.where(n)}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"cannot write {self.where(n)}: {exc}") from None
        theirs = self.get(n)
        if theirs == line:
            return
        raise ManifestForkError(
            f"record {n} of this project's manifest was written by another process "
            f"({self.where(n)}): this process does not own the project; nothing of its "
            "change was committed", where=self.where(n), ours=line.decode(errors="replace"),
            theirs=None if theirs is None else theirs.decode(errors="replace"))

    def after(self, n: int) -> Iterator[tuple[int, bytes]]:
        """The records from ``n`` on, in order, up to the first missing one."""
        while (line := self.get(n)) is not None:
            yield n, line
            n += 1


__all__ = ["DIGITS", "ManifestObjects"]
