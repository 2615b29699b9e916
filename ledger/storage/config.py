"""The data directory's ``config.json``: settings fixed when the directory is first
used. Today it holds the ledger origin (``{"origin": "llmring-ledger.local"}``), the name
of the ledger's signing keys and the first part of every log's checkpoint origin
(``<origin>/<project>``, docs/formats.md).

The file is created on first use with ``LLMRING_LEDGER_ORIGIN`` if that is set, else
``llmring-ledger.local``; afterwards the file decides (changing the origin changes key
ids and checkpoint origins, so it is not something an environment variable should do
silently)."""

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

# A signed-note key name (no spaces, no '+') that is also a safe first checkpoint line.
_ORIGIN_RE = re.compile(r"[^\s+\x00-\x1f\x7f]{1,200}")


def check_origin(origin: str) -> str:
    """Return ``origin`` if it can name signing keys and checkpoints, else raise."""
    if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
        raise ConfigError(
            f"invalid ledger origin {origin!r}: use 1-200 characters without spaces, '+' or "
            "control characters, ideally a schema-less URL such as 'ledger.example.com'")
    return origin


def load_config(data_dir: DataDir | str | os.PathLike[str]) -> dict[str, Any]:
    """The directory's configuration (the directory given by its ``DataDir`` or its path),
    creating ``config.json`` (and the directory) on first use."""
    layout = data_dir if isinstance(data_dir, DataDir) else DataDir(data_dir)
    path = layout.config
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        origin = check_origin(os.environ.get(ORIGIN_ENV) or DEFAULT_ORIGIN)
        config = {"origin": origin}
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
    return config


def ledger_origin(data_dir: DataDir | str | os.PathLike[str]) -> str:
    """The ledger origin of ``data_dir`` (the name of its signing keys)."""
    return str(load_config(data_dir)["origin"])
