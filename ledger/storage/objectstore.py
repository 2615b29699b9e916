"""Where a data directory's segment files live: its storage URI and the ``pyarrow.fs``
filesystem that reaches it.

A data directory keeps its segments (events, pairs, receipts, membership) either in
itself (no storage URI) or on S3-compatible object storage under ``s3://bucket/prefix``,
at the same relative paths (``events/tenant=<t>/date=<d>/…``). The URI is fixed in
``config.json`` (key ``storage``) when the directory is first used; a command may name it
again (``--storage``), and a different one is refused before anything is written. The
manifest, journal, index, trees, keys and checkpoints always stay in the data directory
(they need append and fsync; docs/decisions.md); each manifest record is also an object
(``ledger.storage.manifest_objects``).

The endpoint and credentials come from the usual AWS variables: ``AWS_ENDPOINT_URL_S3``
or ``AWS_ENDPOINT_URL`` (pyarrow's ``S3FileSystem`` ignores both, so they are passed as
``endpoint_override`` here), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (else the
AWS default chain), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import ObjectStoreError, StorageUriError
from ledger.lazy import lazy
from ledger.storage.layout import DataDir

pafs = lazy("pyarrow.fs")

SCHEMES = ("s3",)
CONNECT_TIMEOUT = 5.0  # seconds: an unreachable endpoint is reported, not waited on
REQUEST_TIMEOUT = 60.0
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:(/|$)")  # 2+ letters: not a drive


def looks_like_uri(text: str) -> bool:
    """Whether ``text`` (a ``--data`` value) names a URI (``s3://…``, ``s3:``) rather than
    a local directory."""
    return bool(_URI_RE.match(text))


@dataclass(frozen=True)
class ObjectStore:
    """An opened storage URI: the filesystem and the ``bucket/prefix`` segment paths go
    under."""

    uri: str
    filesystem: pafs.FileSystem
    base: str  # "bucket" or "bucket/prefix", no slash at either end

    def path(self, relative: str) -> str:
        """The filesystem path of a segment path relative to the data directory."""
        return f"{self.base}/{relative}"


def normalize(uri: str) -> tuple[str, str, str]:
    """``(canonical URI, bucket, prefix)`` of a storage URI, or ``StorageUriError``."""
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() not in SCHEMES:
        raise StorageUriError(
            f"storage URI {uri!r}: unsupported scheme {parts.scheme or '(none)'!r}; use "
            "s3://bucket/prefix (S3-compatible object storage), or no --storage to keep "
            "segments in the data directory")
    if parts.query or parts.fragment or parts.username or parts.password or parts.port:
        raise StorageUriError(
            f"storage URI {uri!r}: give only s3://bucket/prefix; the endpoint and "
            "credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY")
    bucket = parts.netloc
    if not _BUCKET_RE.fullmatch(bucket):
        raise StorageUriError(f"storage URI {uri!r}: {bucket!r} is not a bucket name "
                              "(3-63 lowercase letters, digits, '.' and '-')")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise StorageUriError(f"storage URI {uri!r}: the prefix may not hold '.' or '..'")
    prefix = "/".join(segments)
    return (f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"), bucket, prefix


def _endpoint() -> tuple[str | None, str]:
    """``(host[:port], scheme)`` of the configured endpoint, if any."""
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return None, "https"
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StorageUriError(f"AWS_ENDPOINT_URL {url!r} is not an http(s) URL")
    return parts.netloc, parts.scheme


def connect(uri: str) -> ObjectStore:
    """Open ``uri`` and check that its bucket can be reached (``ObjectStoreError`` if
    not): nothing is written."""
    canonical, bucket, prefix = normalize(uri)
    endpoint, scheme = _endpoint()
    options: dict[str, object] = {
        "scheme": scheme, "connect_timeout": CONNECT_TIMEOUT,
        "request_timeout": REQUEST_TIMEOUT, "allow_bucket_creation": False,
        "allow_bucket_deletion": False,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2)}
    if endpoint:
        options["endpoint_override"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        options.update(access_key=key, secret_key=secret,
                       session_token=os.environ.get("AWS_SESSION_TOKEN"))
    try:
        filesystem = pafs.S3FileSystem(**options)  # type: ignore[arg-type]
        info = filesystem.get_file_info(bucket)
    except (OSError, ValueError) as exc:
        raise ObjectStoreError(f"cannot reach {canonical} "
                               f"({endpoint or 'AWS S3'}): {exc}") from None
    if info.type != pafs.FileType.Directory:
        raise ObjectStoreError(f"cannot use {canonical}: bucket {bucket!r} does not exist "
                               f"at {endpoint or 'AWS S3'} (create it first)")
    return ObjectStore(canonical, filesystem, f"{bucket}/{prefix}" if prefix else bucket)


def s3_client() -> Any:
    """A boto3 S3 client for what ``pyarrow.fs`` cannot do (conditional puts), from the
    same AWS variables (endpoint ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL``; path-style addressing when an endpoint is given, as
    S3-compatible servers expect)."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=REQUEST_TIMEOUT,
                    retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"} if endpoint else None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.session.Session().client("s3", endpoint_url=endpoint or None,
                                          region_name=region or "us-east-1", config=config)


def configured(layout: DataDir) -> str | None:
    """The storage URI fixed in the directory's ``config.json``, if any (read only)."""
    from ledger.storage.config import read_config

    config = read_config(layout)
    return None if config is None else config.get("storage")


def open_storage(layout: DataDir, uri: str | None = None, *,
                 record: bool = True) -> ObjectStore | None:
    """The object store a data directory's segments live on (None: the directory itself).

    ``uri`` (``--storage``): must equal the one ``config.json`` fixed; on a directory that
    has none yet and holds no ledger it is checked, then fixed there (with ``record``).
    Any refusal (``StorageUriError``, ``ObjectStoreError``) leaves the directory as it
    was."""
    from ledger.storage.config import fix_storage

    fixed = configured(layout)
    if uri is None:
        return connect(fixed) if fixed else None
    canonical, _, _ = normalize(uri)
    if fixed is not None and fixed != canonical:
        raise StorageUriError(
            f"{layout.root} keeps its segments in {fixed}, not {canonical}: the storage "
            "of a data directory is fixed when it is first used (drop --storage, or give "
            "the URI in its config.json)")
    if fixed is None and layout.holds_ledger():
        raise StorageUriError(
            f"{layout.root} already keeps its segments in the directory itself; "
            f"--storage {canonical} can only be given to a new data directory")
    store = connect(canonical)
    if fixed is None and record:
        fix_storage(layout, canonical)
    return store


__all__ = ["SCHEMES", "ObjectStore", "configured", "connect", "looks_like_uri", "normalize",
           "open_storage", "s3_client"]
