"""Price overrides of a project through the API (docs/http-api.md, "Prices"): set, list
and remove rows (``ledger.core.prices``), and ``show``, which explains the price of a
call, or of a stored event, step by step (``llmring prices show``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from ledger.errors import InvalidRequestError, NotFoundError
from ledger.model.dates import parse_bound
from ledger.model.event import MAX_SAFE_INT, format_ts, ts_to_us
from ledger.model.money import nanos_to_decimal
from ledger.model.price_overrides import (
    OverrideRow,
    OverrideTable,
    packaged_book,
    parse_rows,
)
from ledger.model.pricing import Price, check_counts
from ledger.model.tenant import check_tenant

TOKEN_PARAMS = ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                "output_tokens", "reasoning_tokens")
_MILLION = Decimal(1_000_000)


def row_json(row: OverrideRow) -> dict[str, Any]:
    return {"id": row.id, **row.to_json()}


def _money(nanos: int) -> str:
    return f"{nanos_to_decimal(nanos):f}"


class Prices:
    """The ``prices`` operations of a ``LedgerService`` (``ledger`` is its ``Ledger``)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def list(self, tenant: str) -> dict[str, Any]:
        version, table = self.ledger.prices.table(check_tenant(tenant))
        return {"project": tenant, "version": version,
                "rows": [row_json(r) for r in table.rows]}

    def set(self, tenant: str, rows: Any, replace: Any = False) -> dict[str, Any]:
        check_tenant(tenant)
        if not isinstance(replace, bool):
            raise InvalidRequestError("replace must be true or false")
        parsed = parse_rows(rows)
        if not parsed and not replace:
            raise InvalidRequestError("rows: give at least one price row (or replace: true "
                                      "with no rows to remove them all)")
        version, dropped = self.ledger.prices.set(tenant, parsed, replace=replace)
        return {"project": tenant, "version": version,
                "set": [row_json(r) for r in parsed],
                "replaced": [row_json(r) for r in dropped]}

    def remove(self, tenant: str, row_id: str) -> dict[str, Any]:
        check_tenant(tenant)
        version, removed = self.ledger.prices.remove(tenant, [row_id])
        return {"project": tenant, "version": version,
                "removed": [row_json(r) for r in removed]}

    # -- explaining a price ---------------------------------------------------------------
    def show(self, tenant: str, *, model: str | None = None, provider: str = "",
             at: Any = None, log_id: str | None = None, **counts: Any) -> dict[str, Any]:
        """Which row prices a call (override or packaged), its rates and dates, the
        price_id, and the exact cost of the given counts with the arithmetic; with
        ``log_id``, the same for a stored event, and whether it matches what is stored."""
        check_tenant(tenant)
        stored = None
        if log_id is not None:
            if model is not None or at is not None or any(v is not None
                                                         for v in counts.values()):
                raise InvalidRequestError("give either log_id or a model (with its counts "
                                          "and time), not both")
            event = self.ledger.get(tenant, log_id)
            if event is None:
                raise NotFoundError(f"no log {log_id!r} in this project")
            stored = event
            provider, model = event.provider, event.model
            when = event.ts
            tokens = {name: getattr(event, name) for name in TOKEN_PARAMS}
        else:
            if not isinstance(model, str) or not model:
                raise InvalidRequestError("model: name the model to price (or give log_id)")
            if not isinstance(provider, str):
                raise InvalidRequestError("provider must be text")
            when = _instant(at)
            tokens = {name: _count(name, counts.get(name)) for name in TOKEN_PARAMS}
        try:
            check_counts(tokens["input_tokens"], tokens["output_tokens"],
                         tokens["cached_input_tokens"], tokens["cache_write_tokens"],
                         tokens["reasoning_tokens"])
        except ValueError as exc:
            if stored is None:
                raise InvalidRequestError(str(exc)) from None
        answer = self._explain(tenant, provider, model, when, tokens)
        if stored is not None:
            answer["log"] = _stored(stored, answer)
        return answer

    def _explain(self, tenant: str, provider: str, model: str, when: datetime,
                 tokens: dict[str, int]) -> dict[str, Any]:
        prices = self.ledger.prices
        pricer = prices.pricer_for(tenant)
        version, table = prices.table(tenant)
        book = packaged_book(pricer)
        answer: dict[str, Any] = {
            "project": tenant, "provider": provider, "model": model,
            "at": format_ts(ts_to_us(when)), "usage": tokens, "prices_version": version}
        row = table.row_at(provider, model, when) if table.rows else None
        packaged = book.describe(provider, model, when) if book is not None else None
        answer["override"] = None if row is None else {
            **row_json(row.row),
            "in_force": {"from": None if row.row.since is None else row.row.since.isoformat(),
                         "until": _until(table, provider, model, row)}}
        answer["packaged"] = packaged
        try:
            priced: Price | None = (None if pricer is None else pricer.price(
                provider, model, tokens["input_tokens"], tokens["output_tokens"],
                tokens["cached_input_tokens"], tokens["cache_write_tokens"],
                tokens["reasoning_tokens"], when))
            refused = None
        except ValueError as exc:
            priced, refused = None, str(exc)
        if row is not None and row.coeffs:
            answer["source"] = "override"
        elif row is not None and packaged is not None:
            answer["source"] = "override_discount"
        elif packaged is not None:
            answer["source"] = "packaged"
        else:
            answer["source"] = "unpriced"
        answer["price_id"] = None if priced is None else priced.price_id
        answer["cost_nanos"] = None if priced is None else priced.cost_nanos
        answer["cost"] = None if priced is None else _money(priced.cost_nanos)
        answer["arithmetic"] = _arithmetic(answer, row, book, provider, model, when, tokens,
                                           priced, refused)
        return answer


def _until(table: OverrideTable, provider: str, model: str, row: Any) -> str | None:
    nxt = table.next_start(provider, model, row)
    return None if nxt is None else nxt.isoformat()


def _instant(at: Any) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return parse_bound(at, name="at", error=InvalidRequestError)


def _count(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INT:
        raise InvalidRequestError(f"{name} must be a whole number of tokens from 0 to "
                                  f"{MAX_SAFE_INT}; got {value!r}")
    return value


def _arithmetic(answer: dict[str, Any], row: Any, book: Any, provider: str, model: str,
                when: datetime, tokens: dict[str, int], priced: Price | None,
                refused: str | None) -> list[str]:
    """The cost worked out in words, exact decimals throughout."""
    if refused is not None:
        return [f"not priced: {refused}"]
    inp, cached, write = (tokens["input_tokens"], tokens["cached_input_tokens"],
                          tokens["cache_write_tokens"])
    out = tokens["output_tokens"]
    lines: list[str] = []
    with localcontext(prec=80):
        if row is not None and row.coeffs:
            rates = row.row.effective_rates()
            uncached = inp - cached - write
            parts = [("uncached input", uncached, rates["input"]),
                     ("cached input", cached, rates["cached_input"]),
                     ("cache write", write, rates["cache_write"]),
                     ("output", out, rates["output"])]
            total = Decimal(0)
            for label, n, rate in parts:
                if not n and label != "uncached input":
                    continue
                amount = Decimal(n) * rate / _MILLION
                total += amount
                lines.append(f"{label}: {n} tokens × {rate} USD per million = {amount:f} USD")
            if rates["request"]:
                total += rates["request"]
                lines.append(f"request fee: {rates['request']} USD")
            lines.append(f"total: {total:f} USD")
            if row.row.discount is not None:
                keep = (100 - row.row.discount) / 100
                total *= keep
                lines.append(f"discount {row.row.discount}%: × {keep} = {total:f} USD")
        elif answer["packaged"] is not None and book is not None:
            lines.append(f"priced by genai-prices {book.source.split('/', 1)[1]} (packaged "
                         f"snapshot), row {answer['packaged']['price_id']}")
            if priced is not None:
                base = (priced if row is None else book.price(
                    provider, model, tokens["input_tokens"], tokens["output_tokens"],
                    cached, write, tokens["reasoning_tokens"], when))
                assert base is not None
                lines.append(f"packaged cost: {base.cost_nanos} nano-USD = "
                             f"{_money(base.cost_nanos)} USD (genai-prices' exact total, "
                             "rounded half to even to nano-USD)")
                if row is not None:
                    keep = (100 - row.row.discount) / 100
                    exact = Decimal(base.cost_nanos) * keep
                    lines.append(f"discount {row.row.discount}%: {base.cost_nanos} × {keep} "
                                 f"= {exact:f} nano-USD")
        else:
            return ["not priced: no override row applies and genai-prices does not know "
                    "this model (such an event is recorded cost_source=unpriced)"]
    if priced is not None and (row is not None):
        lines.append(f"rounded half to even to nano-USD: {priced.cost_nanos} nano-USD = "
                     f"{_money(priced.cost_nanos)} USD")
    return lines


def _stored(event: Any, answer: dict[str, Any]) -> dict[str, Any]:
    """What the stored event says, and whether today's prices give the same."""
    info: dict[str, Any] = {"log_id": event.event_id, "cost_source": event.cost_source,
                            "price_id": event.price_id, "cost_nanos": event.cost_nanos,
                            "cost": _money(event.cost_nanos)}
    if event.cost_source != "price_table":
        info["matches"] = None
        info["note"] = (f"the ledger did not price this event (cost_source="
                        f"{event.cost_source}): a cost sent by the client is kept as sent")
        return info
    same_id = event.price_id == answer["price_id"]
    info["matches"] = same_id and event.cost_nanos == answer["cost_nanos"]
    if info["matches"]:
        info["note"] = "recomputed from its tokens and time: the same price_id and cost"
    elif not same_id:
        info["note"] = ("priced by another row than today's prices give: the project's prices "
                        "changed since (stored events are never repriced)")
    else:
        info["note"] = "the same row gives another cost today"
    return info
