"""Conversation content: the messages and response of a logged conversation, stored apart
from its event (docs/formats.md).

The event commits to the content by ``content_sha256`` = SHA-256 of the RFC 8785 JSON of
``{"messages": …, "response": …}``. The content is written durably, once its event is
accepted and before the caller is answered (so a refused request stores nothing; an
identical retry writes it again if a crash came in between), to
``<data>/content/tenant=<project>/<first 2 hex>/<sha256>.json``, so it may later be
deleted under a retention policy while every proof stays valid. Identical content of
one project is stored once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import rfc8785

from ledger.errors import ContentError
from ledger.model.tenant import check_tenant
from ledger.storage.durable import private_dir, write_atomic
from ledger.storage.layout import DataDir

MAX_CONTENT_BYTES = 4 * 1024 * 1024


def canonical_content(messages: Any, response: Any) -> bytes:
    """The RFC 8785 bytes of ``{"messages": messages, "response": response}``."""
    try:
        data = rfc8785.dumps({"messages": messages, "response": response})
    except (rfc8785.CanonicalizationError, TypeError, ValueError, OverflowError) as exc:
        raise ContentError(f"messages and response must be plain JSON ({exc})") from None
    if len(data) > MAX_CONTENT_BYTES:
        raise ContentError(f"messages and response are {len(data):,} bytes of JSON; at most "
                           f"{MAX_CONTENT_BYTES:,} are stored per call")
    return data


def content_sha256(messages: Any, response: Any) -> str:
    return hashlib.sha256(canonical_content(messages, response)).hexdigest()


class ContentStore:
    """Content files of one data directory."""

    def __init__(self, layout: DataDir) -> None:
        self.layout = layout
        self.directory = layout.content

    def path(self, tenant: str, digest: str) -> Path:
        check_tenant(tenant)
        return self.layout.content_file(tenant, digest)

    def put(self, tenant: str, messages: Any, response: Any) -> str:
        """Store the content durably; return its ``content_sha256``."""
        data = canonical_content(messages, response)
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(tenant, digest)
        if not path.exists():
            private_dir(path.parent)
            write_atomic(path, data)
        return digest

    def get(self, tenant: str, digest: str) -> bytes | None:
        """The stored canonical content, or None (never stored, or deleted)."""
        try:
            return self.path(tenant, digest).read_bytes()
        except FileNotFoundError:
            return None


__all__ = ["ContentError", "ContentStore", "canonical_content", "content_sha256"]
