"""The data directory's ``config.json``: settings fixed when the directory is first
used. It holds the ledger origin (``{"origin": "llmring-ledger.local"}``), the name
of the ledger's signing keys and the first part of every log's checkpoint origin
(``<origin>/<project>``, docs/formats.md), and optionally ``"log_key_names": true``:
each log's checkpoints are then signed under a key name equal to the log's origin (as
C2SP tlog-checkpoint recommends) instead of the ledger origin.

The file is created on first use with ``LLMRING_LEDGER_ORIGIN`` if that is set, else
``llmring-ledger.local``, and with ``log_key_names`` if ``LLMRING_LOG_KEY_NAMES=1``;
afterwards the file decides (changing either changes key ids, so it is not something an
environment variable should do silently to an existing directory).

``"storage": "s3://bucket/prefix"`` puts the directory's segment files on object storage
(``ledger.storage.objectstore``); it is fixed with the first use too (``fix_storage``)."""

from __future__ import annotations

import os
import re
from typing import Any

import orjson

from ledger.errors import ConfigError
from ledger.storage.durable import private_dir, write_atomic
from ledger.storage.layout import DataDir

DEFAULT_ORIGIN = "llmring-ledger.local"
ORIGIN_ENV = "LLMRING_LEDGER_ORIGIN"
LOG_KEY_NAMES_ENV = "LLMRING_LOG_KEY_NAMES"

# A signed-note key name (no spaces, no '+') that is also a safe first checkpoint line.
_ORIGIN_RE = re.compile(r"[^\s+\x00-\x1f\x7f]{1,200}")


def check_origin(origin: str) -> str:
    """Return ``origin`` if it can name signing keys and checkpoints, else raise."""
    if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
        raise ConfigError(
            f"invalid ledger origin {origin!r}: use 1-200 characters without spaces, '+' or "
            "control characters, ideally a schema-less URL such as 'ledger.example.com'")
    return origin


def read_config(layout: DataDir) -> dict[str, Any] | None:
    """The directory's configuration, or None before its first use (nothing is created)."""
    if not layout.config.exists():
        return None
    return load_config(layout)


def fix_storage(layout: DataDir, uri: str) -> None:
    """Record the storage URI ``uri`` in ``config.json`` (created as on first use if
    missing); the caller checked that none is recorded yet."""
    config = dict(load_config(layout))
    config["storage"] = uri
    write_atomic(layout.config, orjson.dumps(config, option=orjson.OPT_INDENT_2) + b"\n")


def load_config(data_dir: DataDir | str | os.PathLike[str]) -> dict[str, Any]:
    """The directory's configuration (the directory given by its ``DataDir`` or its path),
    creating ``config.json`` (and the directory) on first use."""
    layout = data_dir if isinstance(data_dir, DataDir) else DataDir(data_dir)
    path = layout.config
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        origin = check_origin(os.environ.get(ORIGIN_ENV) or DEFAULT_ORIGIN)
        config: dict[str, Any] = {"origin": origin}
        if os.environ.get(LOG_KEY_NAMES_ENV, "").strip().lower() in ("1", "true", "yes"):
            config["log_key_names"] = True
        private_dir(path.parent)
        write_atomic(path, orjson.dumps(config, option=orjson.OPT_INDENT_2) + b"\n")
        return config
    try:
        config = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it or restore it "
                          "from a backup") from None
    if not isinstance(config, dict) or "origin" not in config:
        raise ConfigError(f'{path} must be a JSON object with an "origin" member')
    try:
        check_origin(config["origin"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(config.get("log_key_names", False), bool):
        raise ConfigError(f'{path}: "log_key_names" must be true or false')
    if not isinstance(config.get("storage", ""), str):
        raise ConfigError(f'{path}: "storage" must be a URI such as "s3://bucket/prefix"')
    return config


def ledger_origin(data_dir: DataDir | str | os.PathLike[str]) -> str:
    """The ledger origin of ``data_dir`` (the name of its signing keys)."""
    return str(load_config(data_dir)["origin"])


def log_key_names(data_dir: DataDir | str | os.PathLike[str]) -> bool:
    """Whether ``data_dir`` signs each log's checkpoints under the log's origin as key
    name (``"log_key_names": true``); otherwise under the ledger origin."""
    return bool(load_config(data_dir).get("log_key_names", False))
