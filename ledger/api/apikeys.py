"""API keys: who may call the server, and for which project.

A key is ``llr_`` + 32 random bytes in base64url (256 bits of entropy). It is shown once,
when created; the store keeps only its SHA-256 (hex), which is enough to authenticate it
because the key is high-entropy (no salt or slow hash is needed). Each key belongs to
exactly one project (tenant); the server takes the tenant from the key, never from a
request body.

The store is ``<data>/api-keys.json`` (mode 0600), replaced atomically on every change,
with ``<data>/api-keys.lock`` serializing writers. It is separate from the ledger's data
and lock, so ``llmring keys create`` works while ``llmring serve`` holds the directory;
the server re-reads the file when its modification time, size or inode changes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from ledger.errors import ApiKeyError, NotWritableError
from ledger.model.tenant import check_tenant
from ledger.storage.durable import open_private, private_dir, write_atomic
from ledger.storage.layout import DataDir
from ledger.tlog.signing import now_text

LOCK_FILE = "api-keys.lock"
FORMAT = "llmring-api-keys/v1"
PREFIX = "llr_"
KEY_BYTES = 32
MAX_KEY_TEXT = 200
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key: never the key itself, only its hash and a short display prefix."""

    key_id: str
    project: str
    sha256: str
    prefix: str
    name: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "project": self.project, "sha256": self.sha256,
                "prefix": self.prefix, "name": self.name, "created_at": self.created_at,
                "revoked_at": self.revoked_at}

    def public(self) -> dict[str, Any]:
        """What ``keys list`` shows (no hash)."""
        return {"key_id": self.key_id, "project": self.project, "prefix": self.prefix,
                "name": self.name, "created_at": self.created_at,
                "revoked_at": self.revoked_at,
                "status": "active" if self.active else "revoked"}

    @classmethod
    def from_json(cls, obj: Any) -> ApiKey:
        return cls(key_id=str(obj["key_id"]), project=str(obj["project"]),
                   sha256=str(obj["sha256"]), prefix=str(obj["prefix"]),
                   name=str(obj.get("name") or ""), created_at=str(obj["created_at"]),
                   revoked_at=obj.get("revoked_at"))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode()
    return PREFIX + raw


class ApiKeyStore:
    """The API keys of one data directory."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(data_dir)
        self.path = DataDir(self.directory).api_keys
        self._mutex = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, ApiKey] = {}

    # -- reading -------------------------------------------------------------------------
    def _read(self) -> list[ApiKey]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = orjson.loads(raw)
            return [ApiKey.from_json(k) for k in doc["keys"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ApiKeyError(f"{self.path} is damaged ({exc}); restore it from a backup, "
                              "or move it away and create new keys with `llmring keys "
                              "create`") from None

    def keys(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""
        return self._read()

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._mutex:
            keys = self._read()
            self._by_hash = {k.sha256: k for k in keys}
            self._stamp = stamp

    def authenticate(self, key: str | None) -> ApiKey | None:
        """The active key matching ``key``, or None (unknown, revoked or malformed).
        The file is re-read whenever it changed, so new and revoked keys take effect on
        the next request."""
        if not key or len(key) > MAX_KEY_TEXT or not key.isascii():
            return None
        self._refresh()
        digest = hash_key(key)
        found = self._by_hash.get(digest)
        if found is None or not found.active:
            return None
        # The dict lookup already matched; compare again in constant time for form's sake.
        return found if hmac.compare_digest(found.sha256, digest) else None

    # -- changing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[ApiKey]]:
        """The keys, read under the store's lock; a store that cannot be written is
        refused (``NotWritableError``) before anything changes."""
        try:
            private_dir(self.directory)
            fd = open_private(self.directory / LOCK_FILE, os.O_RDWR)
        except OSError as exc:
            raise self._refusal(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read()
        except OSError as exc:
            raise self._refusal(exc) from exc
        finally:
            os.close(fd)

    def _refusal(self, exc: OSError) -> Exception:
        return NotWritableError.of(exc, self.directory) or exc

    def _save(self, keys: list[ApiKey]) -> None:
        doc = {"format": FORMAT, "keys": [k.to_json() for k in keys]}
        write_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")

    def create(self, project: str, name: str = "") -> tuple[str, ApiKey]:
        """Create a key for ``project``; return ``(the key, its record)``. The key itself
        is not stored: show it to the user now."""
        check_tenant(project)
        if len(name) > MAX_NAME:
            raise ApiKeyError(f"the key name is longer than {MAX_NAME} characters")
        key = new_key()
        with self._locked() as keys:
            taken = {k.key_id for k in keys}
            while True:
                key_id = "key_" + secrets.token_hex(6)
                if key_id not in taken:
                    break
            record = ApiKey(key_id=key_id, project=project, sha256=hash_key(key),
                            prefix=key[:len(PREFIX) + 6], name=name, created_at=now_text())
            self._save([*keys, record])
        return key, record

    def revoke(self, key_id_or_key: str) -> ApiKey:
        """Revoke a key, named by its id (``key_…``) or by the key itself. Revoking a
        revoked key returns it unchanged."""
        with self._locked() as keys:
            digest = hash_key(key_id_or_key)
            for i, k in enumerate(keys):
                if k.key_id == key_id_or_key or k.sha256 == digest:
                    if not k.active:
                        return k
                    keys[i] = replace(k, revoked_at=now_text())
                    self._save(keys)
                    return keys[i]
        raise ApiKeyError(f"no API key {key_id_or_key!r}; `llmring keys list` shows the "
                          "key ids")


__all__ = ["ApiKey", "ApiKeyError", "ApiKeyStore", "hash_key", "new_key"]
