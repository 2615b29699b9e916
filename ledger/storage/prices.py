"""The stored price overrides of a project (docs/formats.md, "Price overrides").

``prices/tenant=<project>.json`` (``PriceFile``) holds the project's override rows
(``ledger.model.price_overrides``), replaced atomically on every change (0600), with a
version that counts the changes. Only the process holding the data directory's lock
changes it (``llmring serve``, or an embedded command); it is read when a project's
first event of the process is priced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ledger.errors import ConfigError, InvalidRequestError
from ledger.model.price_overrides import OverrideRow, parse_rows
from ledger.storage.durable import private_dir, write_atomic

PRICES_FORMAT = "llmring-prices/v1"


class PriceFile:
    """One project's override file: ``load`` (no file: no rows, version 0), ``save``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[int, list[OverrideRow]]:
        """The file's version and its rows (``ConfigError`` if it cannot be trusted)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return 0, []
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != PRICES_FORMAT:
            raise ConfigError(f"{self.path} is not a {PRICES_FORMAT} file")
        version, stored = data.get("version"), data.get("rows")
        if type(version) is not int or not isinstance(stored, list):
            raise ConfigError(f"{self.path}: malformed (version and rows expected)")
        try:
            rows = parse_rows([{k: v for k, v in row.items() if k != "id"}
                               if isinstance(row, dict) else row for row in stored])
        except InvalidRequestError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None
        for row, obj in zip(rows, stored, strict=True):
            if obj.get("id") != row.id:
                raise ConfigError(f"{self.path}: row {obj.get('id')!r} does not match its "
                                  f"content (its id is {row.id})")
        return version, rows

    def save(self, version: int, rows: list[OverrideRow]) -> None:
        data: dict[str, Any] = {"format": PRICES_FORMAT, "version": version,
                                "rows": [{"id": row.id, **row.to_json()} for row in rows]}
        private_dir(self.path.parent)
        write_atomic(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
