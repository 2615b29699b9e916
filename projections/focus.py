"""FOCUS exports: a project's calls as rows of the FinOps FOCUS 1.2 cost and usage format
(docs/formats.md has the column mapping), one row per call (``kind = usage``), in ``seq``
order, streamed like every export (``projections.exports``: a window of seqs per query,
bounded memory).

The costs are the ledger's exact nano-USD: decimal text with 9 places in CSV, the nearest
double in Parquet (what FOCUS tools and the FOCUS validator read as a Decimal column;
``round(value * 1e9)`` gives back the nanos exactly below 2^53 nanos, 9,007,199 USD, a
row). Each row carries the event's leaf hash and the first receipt that certifies it, so
a FinOps tool's row can be checked against that receipt's proof.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa

from projections.exports import EXPORT_WINDOW, MAX_EXPORT_ROWS, export_batches
from projections.receipts import query
from projections.snapshot import Snapshot

FOCUS_VERSION = "1.2"
FOCUS_FORMATS = {"focus-csv": "csv", "focus-parquet": "parquet"}  # format -> file format
CALLS = "kind = 'usage'"
MEMBERS_TABLE = "focus_members"

_NANO = "0.000000001::DECIMAL(18,9)"


def _cost(exact: bool) -> str:
    """The call's cost in USD (an unpriced call costs 0 here; ``x_CostSource`` says so)."""
    if exact:  # DECIMAL(18,0) × DECIMAL(18,9): exact, printed with 9 places
        return f"CAST(coalesce(cost_nanos, 0)::DECIMAL(18,0) * {_NANO} AS VARCHAR)"
    return "coalesce(cost_nanos, 0) / 1e9"


def _when(expr: str, exact: bool) -> str:
    """A UTC instant: ISO 8601 ``YYYY-MM-DDTHH:mm:ssZ`` text in CSV, a timestamp in Parquet."""
    return f"strftime(({expr})::TIMESTAMP, '%Y-%m-%dT%H:%M:%SZ')" if exact else expr


def _quantity(exact: bool) -> str:
    tokens = "(input_tokens + output_tokens)"
    return f"CAST({tokens}::DECIMAL(20,1) AS VARCHAR)" if exact else f"{tokens}::DOUBLE"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def focus_columns(tenant: str, *, exact: bool) -> str:
    """The SQL select list of a FOCUS row over the stored event columns; ``exact``: CSV
    (decimal and date/time text), else Parquet (doubles and UTC timestamps)."""
    cost = _cost(exact)
    month = "date_trunc('month', ts)"
    second = "date_trunc('second', ts)"
    quantity = _quantity(exact)
    receipt = (f"(SELECT min_by(m.receipt_id, m.receipt_seq) FROM {MEMBERS_TABLE} m "
               "WHERE seq BETWEEN m.seq_lo AND m.seq_hi)")
    columns = {
        "BilledCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
        "ContractedCost": cost,
        "BillingCurrency": "'USD'",
        "BillingAccountId": _text(tenant),
        "BillingAccountName": _text(tenant),
        "BillingPeriodStart": _when(month, exact),
        "BillingPeriodEnd": _when(f"{month} + INTERVAL 1 MONTH", exact),
        "ChargePeriodStart": _when(second, exact),
        "ChargePeriodEnd": _when(f"{second} + INTERVAL 1 SECOND", exact),
        "ChargeCategory": "'Usage'",
        "ChargeClass": "NULL::VARCHAR",
        "ChargeFrequency": "'Usage-Based'",
        "ChargeDescription": ("provider || ' ' || model || ': ' || input_tokens || "
                              "' input + ' || output_tokens || ' output tokens'"),
        "ServiceCategory": "'AI and Machine Learning'",
        "ServiceSubcategory": "'Generative AI'",
        "ServiceName": "provider",
        "ProviderName": "provider",
        "PublisherName": "provider",
        "InvoiceIssuerName": "provider",
        "ConsumedQuantity": quantity,
        "ConsumedUnit": "'Tokens'",
        "PricingQuantity": quantity,
        "PricingUnit": "'Tokens'",
        "PricingCategory": "'Standard'",
        "SkuId": "provider || '/' || model",
        "SkuPriceId": "coalesce(price_id, cost_source || ':' || provider || '/' || model)",
        "Tags": "metadata",
        "x_EventId": "event_id",
        "x_Alias": "nullif(alias, '')",
        "x_InputTokens": "input_tokens",
        "x_OutputTokens": "output_tokens",
        "x_CachedInputTokens": "cached_input_tokens",
        "x_CostSource": "cost_source",
        "x_ReceiptId": receipt,
        "x_LeafHash": "lower(hex(leaf_hash))",
    }
    return ", ".join(f'{sql} AS "{name}"' for name, sql in columns.items())


def certifying_runs(snapshot: Snapshot, tenant: str) -> pa.Table:
    """Every receipt's runs of certified event seqs: ``receipt_id, receipt_seq, seq_lo,
    seq_hi`` (a run a row, so a handful of rows per receipt)."""
    table = query(snapshot, tenant, "SELECT receipt_id, receipt_seq, seq_lo, seq_hi "
                  "FROM {members}", arrow=True)
    return table.combine_chunks() if table.num_rows else table


def focus_batches(snapshot: Snapshot, tenant: str, *, format: str,
                  start: datetime | None = None, end: datetime | None = None,
                  limit: int = MAX_EXPORT_ROWS, window: int = EXPORT_WINDOW,
                  where: dict[str, str] | None = None) -> Iterator[pa.RecordBatch]:
    """The tenant's calls (start <= ts < end, metadata matching ``where``) as FOCUS rows
    for ``format`` (a key of ``FOCUS_FORMATS``), a batch at a time; the first batch
    carries the schema."""
    return export_batches(snapshot, tenant, start=start, end=end, limit=limit, window=window,
                          where=where,
                          columns=focus_columns(tenant, exact=FOCUS_FORMATS[format] == "csv"),
                          kinds=CALLS, tables={MEMBERS_TABLE: certifying_runs(snapshot, tenant)})
