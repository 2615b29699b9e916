"""FOCUS rows (``projections.focus``) are read a window of seqs at a time like every
export: across windows, sealed segments and the unsealed tail, every call is one row in
log order (receipt entries, which take seqs too, are not calls), and each row names the
first receipt that certifies it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from ledger.api import operations as ops
from ledger.api.service import LedgerService
from ledger.api.transport import LocalTransport
from projections.focus import focus_batches


def _call(n: int) -> dict[str, object]:
    return {"event_id": f"e{n}", "ts": f"2025-06-{1 + n % 28:02d}T12:00:00Z",
            "provider": "openai", "model": "gpt-4o-mini", "input_tokens": n,
            "output_tokens": 1, "cost": f"0.{n:09d}"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LedgerService]:
    svc = LedgerService(tmp_path / "data")
    try:
        yield svc
    finally:
        svc.close()


def _table(svc: LedgerService, fmt: str = "focus-parquet", **kw: object) -> pa.Table:
    return pa.Table.from_batches(list(focus_batches(svc.ledger.snapshot(), "acme",
                                                    format=fmt, **kw)))  # type: ignore[arg-type]


def test_an_empty_project_has_the_columns_and_no_rows(service: LedgerService) -> None:
    table = _table(service)
    assert table.num_rows == 0 and table.column_names[0] == "BilledCost"
    assert table.column_names[-2:] == ["x_ReceiptId", "x_LeafHash"]


def test_rows_across_windows_segments_and_tail_name_their_first_receipt(
        service: LedgerService) -> None:
    api = LocalTransport(service, "acme")
    api.call(ops.LOG_BATCH, events=[_call(n) for n in range(20)])
    first = api.call(ops.GENERATE_RECEIPT, log_ids=[f"e{n}" for n in range(3, 12)])
    service.ledger.flush()  # these rows sealed into segments, the next ones in the tail
    api.call(ops.LOG_BATCH, events=[_call(n) for n in range(20, 30)])
    second = api.call(ops.GENERATE_RECEIPT, since_last_receipt=True)
    ids = [first["receipt"]["receipt_id"], second["receipt"]["receipt_id"]]
    whole = _table(service)
    for window in (4, 7, 1000):
        table = _table(service, window=window)
        assert table.equals(whole)
    rows = whole.to_pylist()
    assert [r["x_EventId"] for r in rows] == [f"e{n}" for n in range(30)]
    certified_by = [r["x_ReceiptId"] for r in rows]
    # e3..e11 by the first receipt (also covered by none other); the rest by the second
    assert certified_by == [ids[1]] * 3 + [ids[0]] * 9 + [ids[1]] * 18
    assert sum(round(r["BilledCost"] * 1e9) for r in rows) == sum(range(30))
    csv_rows = _table(service, "focus-csv", window=5).to_pylist()
    assert [r["BilledCost"] for r in csv_rows[:3]] == ["0.000000000", "0.000000001",
                                                       "0.000000002"]
