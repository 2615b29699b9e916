"""Which prices each project's events are priced with: the packaged price book, or the
project's overrides over it (``ledger.model.price_overrides``), kept in step with the
stored override files (``ledger.storage.prices``).

``pricer_for(tenant)`` is called once per prepared batch: a dict lookup. A project's
file is read at its first batch; a project without overrides gets the packaged book
itself, so its events are priced exactly as before. Changing a project's rows
(``set``/``remove``) writes the file durably, then swaps in a new pricer: later batches
use the new rows; stored events are never repriced."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ledger.errors import InvalidRequestError, NotFoundError
from ledger.model.price_overrides import (
    OverridePricer,
    OverrideRow,
    OverrideTable,
    check_overlaps,
)
from ledger.storage.layout import DataDir
from ledger.storage.prices import PriceFile


class ProjectPrices:
    """The override rows of every project of one open data directory."""

    def __init__(self, layout: DataDir, base: Any) -> None:
        self.layout = layout
        self.base = base
        self._pricers: dict[str, Any] = {}
        self._tables: dict[str, tuple[int, OverrideTable]] = {}
        self._lock = threading.Lock()

    def pricer_for(self, tenant: str) -> Any:
        """The pricer of ``tenant``'s events (None when the ledger prices nothing)."""
        pricer = self._pricers.get(tenant)
        if pricer is None:
            if self.base is None:
                return None
            _, table = self.table(tenant)
            pricer = OverridePricer(self.base, table) if table.rows else self.base
            self._pricers[tenant] = pricer
        return pricer

    def table(self, tenant: str) -> tuple[int, OverrideTable]:
        """The project's file version and rows."""
        found = self._tables.get(tenant)
        if found is None:
            version, rows = PriceFile(self.layout.price_file(tenant)).load()
            found = self._tables[tenant] = (version, OverrideTable(tenant, rows))
        return found

    def set(self, tenant: str, rows: Sequence[OverrideRow], *, replace: bool = False
            ) -> tuple[int, list[OverrideRow]]:
        """Add ``rows`` (each replacing a stored row of the same provider, model and
        ``since``), or with ``replace`` make them the whole table. Answers the new
        version and the stored rows replaced or (with ``replace``) removed."""
        with self._lock:
            version, table = self.table(tenant)
            keys = {row.key() for row in rows}
            kept = [] if replace else [r for r in table.rows if r.key() not in keys]
            dropped = [r for r in table.rows if replace or r.key() in keys]
            new = sorted([*kept, *rows], key=_order)
            check_overlaps(new)
            return self._save(tenant, version + 1, new), dropped

    def remove(self, tenant: str, row_ids: Sequence[str]) -> tuple[int, list[OverrideRow]]:
        """Remove the rows with these ids (``NotFoundError`` if one is not there)."""
        with self._lock:
            version, table = self.table(tenant)
            wanted = set(row_ids)
            if not wanted:
                raise InvalidRequestError("name at least one price row id to remove")
            present = {row.id for row in table.rows}
            missing = sorted(wanted - present)
            if missing:
                raise NotFoundError(f"no price row {', '.join(missing)} in project {tenant}")
            removed = [row for row in table.rows if row.id in wanted]
            kept = [row for row in table.rows if row.id not in wanted]
            return self._save(tenant, version + 1, kept), removed

    def _save(self, tenant: str, version: int, rows: list[OverrideRow]) -> int:
        PriceFile(self.layout.price_file(tenant)).save(version, rows)
        self._tables[tenant] = (version, OverrideTable(tenant, rows))
        self._pricers.pop(tenant, None)
        return version


def _order(row: OverrideRow) -> tuple[str, str, str]:
    return (row.provider, row.model, "" if row.since is None else row.since.isoformat())
