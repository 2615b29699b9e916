"""Storage URIs (``ledger.storage.objectstore``): what is accepted and in which canonical
form, what ``--data`` refuses as a URI, and where the endpoint comes from. (The store
itself is tested against a real S3 server in tests/integration/test_object_storage.py.)"""

from __future__ import annotations

import pytest

from ledger.errors import ObjectStoreError, StorageUriError
from ledger.storage import objectstore


@pytest.mark.parametrize(("uri", "canonical"), [
    ("s3://bucket", "s3://bucket"),
    ("s3://bucket/", "s3://bucket"),
    ("s3://my.bucket-1/a/b/", "s3://my.bucket-1/a/b"),
    ("S3://bucket//a//b", "s3://bucket/a/b"),
])
def test_storage_uris_have_one_canonical_form(uri: str, canonical: str) -> None:
    assert objectstore.normalize(uri)[0] == canonical


@pytest.mark.parametrize("uri", [
    "gs://bucket/p", "file:///tmp/x", "/local/path", "s3://", "s3://Upper/p", "s3://ab/p",
    "s3://bucket/p?region=x", "s3://key:secret@bucket/p", "s3://bucket:9000/p",
    "s3://bucket/a/../b",
])
def test_bad_storage_uris_are_refused(uri: str) -> None:
    with pytest.raises(StorageUriError):
        objectstore.normalize(uri)


@pytest.mark.parametrize(("text", "uri"), [
    ("s3://bucket/p", True), ("s3:", True), ("s3:/bucket", True), ("file:///x", True),
    ("./data", False), ("data", False), ("/srv/ledger", False), ("C:/ledger", False),
    ("./s3:", False), ("my:dir", False),
])
def test_data_values_that_look_like_uris(text: str, uri: bool) -> None:
    assert objectstore.looks_like_uri(text) is uri


def test_an_endpoint_that_is_not_a_url_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "ftp://host")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with pytest.raises(StorageUriError, match="AWS_ENDPOINT_URL"):
        objectstore.connect("s3://bucket/p")


def test_the_s3_endpoint_variable_wins_and_an_unreachable_one_is_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL_S3 is used over AWS_ENDPOINT_URL; nothing listens there, so the
    connection is refused, reported with the endpoint's name."""
    from tests.support.serverproc import free_port

    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "ftp://ignored")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(ObjectStoreError, match=f"127.0.0.1:{port}"):
        objectstore.connect("s3://bucket/p")
