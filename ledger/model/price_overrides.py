"""Price overrides: the prices a project actually pays, applied before the packaged table.

A project may hold override rows (``llmring prices set/import``; stored per project by
``ledger.storage.prices``). Each row names a provider (``*``: any) and a model (an exact
name, or an ``fnmatch`` glob such as ``gpt-4o*``, or ``*``: every model of the
provider), an optional effective-from date ``since`` (a UTC day), and either

* **rates** in USD per million tokens as exact decimals: ``input`` and ``output``
  (required together), ``cached_input`` and ``cache_write`` (default: the ``input``
  rate), and ``request``, a fee in USD per call (default 0); or
* a **discount** in percent (0 to 100) on top of the packaged genai-prices price;

or both (the discount then applies to the row's own rates).

Which row applies to a call (provider, model, ``ts``)
    The rows whose provider and model match form *series*, one per (provider, model
    pattern). Series are tried most specific first: a named provider before ``*``, then
    an exact model name before a glob, a glob with more literal characters before one
    with fewer (ties: by pattern text), ``*`` last. In a series, the row in force is the
    one with the latest ``since`` on or before the call's UTC day (a row without
    ``since`` is in force from the beginning); a series with no row in force yet is
    skipped. No row in force: the packaged price applies, unchanged. Provider names are
    compared case-insensitively with the event's ``provider`` as sent; model names and
    globs case-sensitively with its ``model``.

Cost
    Token counts follow ``ledger.model.pricing`` (``input_tokens`` includes cached and
    cache-write tokens, ``output_tokens`` includes reasoning). A rates row costs, in USD,
    ``((input - cached - cache_write) × input + cached × cached_input + cache_write ×
    cache_write_rate + output × output) / 10⁶ + request``, computed exactly and rounded
    once to nano-USD, half to even, after its discount if it has one. A discount row
    costs the packaged price in nano-USD (as ``PriceBook`` gives it) × (100 − discount)
    / 100, rounded half to even to nano-USD; a model the packaged table does not know
    stays unpriced. The same refusals as the packaged table apply (``ValueError``:
    negative counts, cached + cache-write above input, reasoning above output, a cost
    above ``MAX_COST_NANOS``).

Row id and price_id
    A row's id is the first 16 hex digits of the SHA-256 of its canonical JSON (format
    tag, provider, model, since and each rate and the discount as normalised decimal
    text; ``row_id``): editing any value makes another id, so a stored ``price_id``
    cannot be passed off as a later price. ``price_id`` grammar:

    * rates row: ``override/<project>/<row id>/<provider>/<model pattern>``, then
      ``;since=YYYY-MM-DD`` when the row has a date and ``;discount=<P>%`` when it has a
      discount. Example: ``override/acme/3f9c0a1b2c3d4e5f/openai/gpt-4o;since=2026-01-01``.
    * discount row: the packaged ``price_id`` followed by ``;discount=<P>%`` and
      ``;override=<project>/<row id>``. Example:
      ``genai-prices/0.2.3/openai/gpt-4o;discount=15%;override=acme/0a1b2c3d4e5f6a7b``.

    Only events priced by the ledger (sent without a cost) are priced here; a cost sent
    by the client is kept as sent. Changing the overrides never reprices a stored event.

Speed
    The candidate series of each (provider, model) pair are resolved once and cached
    (like the packaged rows); a rates row is compiled to integer coefficients, so an
    event costs a bisect over the series' dates and a few multiplications.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any, Final

import orjson

from ledger.errors import InvalidRequestError
from ledger.model.money import MAX_COST_NANOS, round_half_even_div
from ledger.model.pricing import (
    Price,
    PriceBook,
    by_model,
    check_counts,
    is_packaged_book,
)

__all__ = [
    "MAX_ROWS",
    "ROW_FIELDS",
    "OverridePricer",
    "OverrideRow",
    "OverrideTable",
    "packaged_book",
    "parse_rows",
    "prices_columns",
]

ROW_FORMAT: Final = "llmring-price-row/v1"
RATE_FIELDS: Final = ("input", "cached_input", "cache_write", "output")
ROW_FIELDS: Final = ("provider", "model", "since", *RATE_FIELDS, "request", "discount")
MAX_ROWS: Final = 1000  # per project
MAX_RATE: Final = Decimal(1_000_000)  # USD per million tokens
MAX_FEE: Final = Decimal(1_000)  # USD per request
RATE_PLACES: Final = 12
FEE_PLACES: Final = 9
DISCOUNT_PLACES: Final = 6
_GLOB = re.compile(r"[*?\[]")
_NAME = re.compile(r"[!-~]{1,200}")  # printable ASCII, no spaces
_DECIMAL = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,20})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RATE_UNIT: Final = 10**RATE_PLACES  # rates as integers in 10⁻¹² USD per 10⁶ tokens
_DISCOUNT_UNIT: Final = 100 * 10**DISCOUNT_PLACES  # 100 %
_BEGINNING: Final = -(2**62)
_US_PER_DAY: Final = 86_400_000_000
_EPOCH_DAY: Final = date(1970, 1, 1).toordinal()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _refuse(where: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {message}")


def _decimal(value: Any, where: str, name: str, places: int, limit: Decimal) -> Decimal:
    """An exact, non-negative decimal given as text (or a whole number)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        hint = " (a JSON number with a fraction is inexact)" if isinstance(value, float) else ""
        raise _refuse(where, f"{name} must be a decimal given as text, e.g. \"2.50\"{hint}; "
                      f"got {value!r}")
    text = str(value).strip()
    if text.startswith("-"):
        raise _refuse(where, f"{name} must not be negative; got {value!r}")
    if not _DECIMAL.fullmatch(text):
        raise _refuse(where, f"{name} must be plain decimal text like \"2.50\"; got {value!r}")
    try:
        number = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise _refuse(where, f"{name}: {value!r} is not a decimal") from None
    exponent = number.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > places:
        raise _refuse(where, f"{name} has more than {places} decimal places: {value!r} "
                      "(not exact at the ledger's precision)")
    if number > limit:
        raise _refuse(where, f"{name} must be at most {limit}; got {value!r}")
    return number


def _text(number: Decimal) -> str:
    """Normalised decimal text (``"2.5"``, ``"3"``): the same number, the same text."""
    text = f"{number.normalize():f}"
    return text


def _scaled(number: Decimal, places: int) -> int:
    return int(number.scaleb(places))


@dataclass(frozen=True, slots=True)
class OverrideRow:
    """One override row, checked and normalised (decimals as exact ``Decimal``)."""

    provider: str
    model: str
    since: date | None
    input: Decimal | None
    cached_input: Decimal | None
    cache_write: Decimal | None
    output: Decimal | None
    request: Decimal | None
    discount: Decimal | None

    @property
    def has_rates(self) -> bool:
        return self.input is not None

    def key(self) -> tuple[str, str, date | None]:
        """Two rows with the same key would both apply from the same day: an overlap."""
        return (self.provider, self.model, self.since)

    def to_json(self) -> dict[str, Any]:
        """The row as stored and answered: decimals as normalised text, absent as null."""
        def text(value: Decimal | None) -> str | None:
            return None if value is None else _text(value)
        return {"provider": self.provider, "model": self.model,
                "since": None if self.since is None else self.since.isoformat(),
                "input": text(self.input), "cached_input": text(self.cached_input),
                "cache_write": text(self.cache_write), "output": text(self.output),
                "request": text(self.request), "discount": text(self.discount)}

    @property
    def id(self) -> str:
        """16 hex of the SHA-256 of the row's canonical JSON (see the module docstring)."""
        body = orjson.dumps({"format": ROW_FORMAT, **self.to_json()},
                            option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body).hexdigest()[:16]

    def effective_rates(self) -> dict[str, Decimal]:
        """A rates row's four token rates and request fee, defaults filled in."""
        assert self.input is not None and self.output is not None
        return {"input": self.input,
                "cached_input": self.input if self.cached_input is None else self.cached_input,
                "cache_write": self.input if self.cache_write is None else self.cache_write,
                "output": self.output,
                "request": Decimal(0) if self.request is None else self.request}


def parse_row(obj: Any, where: str = "row") -> OverrideRow:
    """Check one row as given (a JSON object); ``InvalidRequestError`` names the field."""
    if not isinstance(obj, Mapping):
        raise _refuse(where, f"a price row must be an object, not {type(obj).__name__}")
    unknown = sorted(str(k) for k in obj if k not in ROW_FIELDS)
    if unknown:
        raise _refuse(where, f"unknown fields {', '.join(map(repr, unknown))}; a price row "
                      f"has {', '.join(ROW_FIELDS)}")
    provider, model = obj.get("provider"), obj.get("model")
    if not isinstance(provider, str) or not _NAME.fullmatch(provider):
        raise _refuse(where, "provider must be a provider name (e.g. \"openai\") or \"*\" for "
                      f"any provider; got {provider!r}")
    if not isinstance(model, str) or not _NAME.fullmatch(model):
        raise _refuse(where, "model must be a model name, a glob like \"gpt-4o*\", or \"*\" "
                      f"for every model; got {model!r}")
    since_value = obj.get("since")
    since: date | None = None
    if since_value is not None:
        try:
            if not isinstance(since_value, str) or not _DATE.fullmatch(since_value):
                raise ValueError
            since = date.fromisoformat(since_value)
        except ValueError:
            raise _refuse(where, "since must be a date YYYY-MM-DD (UTC) or null; got "
                          f"{since_value!r}") from None

    def rate(name: str) -> Decimal | None:
        value = obj.get(name)
        return None if value is None else _decimal(value, where, name, RATE_PLACES, MAX_RATE)

    rates = {name: rate(name) for name in RATE_FIELDS}
    fee = obj.get("request")
    request = None if fee is None else _decimal(fee, where, "request", FEE_PLACES, MAX_FEE)
    off = obj.get("discount")
    discount = None if off is None else _decimal(off, where, "discount", DISCOUNT_PLACES,
                                                 Decimal(100))
    if (rates["input"] is None) != (rates["output"] is None):
        raise _refuse(where, "give both input and output rates (USD per million tokens), "
                      "or neither (a discount on the packaged price)")
    if rates["input"] is None:
        extra = [n for n in ("cached_input", "cache_write", "request") if obj.get(n) is not None]
        if extra:
            raise _refuse(where, f"{', '.join(extra)} need input and output rates too")
        if discount is None:
            raise _refuse(where, "give rates (input and output, USD per million tokens), a "
                          "discount (percent), or both")
    return OverrideRow(provider=provider.lower(), model=model, since=since,
                       input=rates["input"], cached_input=rates["cached_input"],
                       cache_write=rates["cache_write"], output=rates["output"],
                       request=request, discount=discount)


def check_overlaps(rows: Sequence[OverrideRow], names: Sequence[str] | None = None) -> None:
    """Refuse two rows in force from the same day for the same provider and model."""
    seen: dict[tuple[str, str, date | None], int] = {}
    for i, row in enumerate(rows):
        other = seen.setdefault(row.key(), i)
        if other != i:
            label = names or [f"row {n}" for n in range(len(rows))]
            since = row.since.isoformat() if row.since is not None else "the beginning"
            raise InvalidRequestError(
                f"{label[other]} and {label[i]} overlap: both price provider "
                f"{row.provider!r} model {row.model!r} from {since}")
    if len(rows) > MAX_ROWS:
        raise InvalidRequestError(f"a project may hold at most {MAX_ROWS} price rows; "
                                  f"this would make {len(rows)}")


def parse_rows(objs: Any, where: str = "rows") -> list[OverrideRow]:
    """Check a list of rows as given, each alone and together (no overlaps)."""
    if not isinstance(objs, list | tuple):
        raise _refuse(where, "must be a list of price rows")
    rows = [parse_row(obj, f"{where}[{i}]") for i, obj in enumerate(objs)]
    check_overlaps(rows, [f"{where}[{i}]" for i in range(len(rows))])
    return rows


# -- pricing --------------------------------------------------------------------------------
def day_us(day: date | None) -> int:
    """The first microsecond (since the epoch, UTC) of ``day``; the beginning for None."""
    return _BEGINNING if day is None else (day.toordinal() - _EPOCH_DAY) * _US_PER_DAY


def _at_us(at: datetime | int) -> int:
    if isinstance(at, int):
        return at
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Compiled:
    """A row ready to price: its price_id and integer coefficients."""

    __slots__ = ("coeffs", "fee", "id", "keep", "row", "rows_id")

    def __init__(self, project: str, row: OverrideRow) -> None:
        self.row = row
        self.rows_id = row.id
        # ``keep``: (100 − discount) in units of 10⁻⁶ %; of _DISCOUNT_UNIT.
        self.keep = _DISCOUNT_UNIT - (0 if row.discount is None
                                      else _scaled(row.discount, DISCOUNT_PLACES))
        discount = "" if row.discount is None else f";discount={_text(row.discount)}%"
        if row.has_rates:
            rates = row.effective_rates()
            self.coeffs = tuple(_scaled(rates[n], RATE_PLACES) for n in RATE_FIELDS)
            self.fee = _scaled(rates["request"], FEE_PLACES)  # nano-USD
            since = "" if row.since is None else f";since={row.since.isoformat()}"
            self.id = (f"override/{project}/{self.rows_id}/{row.provider}/{row.model}"
                       f"{since}{discount}")
        else:
            self.coeffs = ()
            self.fee = 0
            self.id = f"{discount};override={project}/{self.rows_id}"  # after the packaged id

    def scaled(self, inp: int, cached: int, write: int, out: int) -> int:
        """A rates row's exact cost in units of 10⁻⁹ nano-USD × _DISCOUNT_UNIT."""
        c_in, c_cached, c_write, c_out = self.coeffs
        # rate per 10⁶ tokens in 10⁻¹² USD = per token 10⁻¹⁸ USD = 10⁻⁹ nano-USD
        total = (c_in * (inp - cached - write) + c_cached * cached + c_write * write
                 + c_out * out + self.fee * 10**9)
        return total * self.keep

    def cost(self, inp: int, cached: int, write: int, out: int) -> int:
        return round_half_even_div(self.scaled(inp, cached, write, out),
                                   10**9 * _DISCOUNT_UNIT)

    def discounted(self, nanos: int) -> int:
        return round_half_even_div(nanos * self.keep, _DISCOUNT_UNIT)


def _precedence(row: OverrideRow) -> tuple[int, int, int, str]:
    """Sort key of a series, most specific first."""
    glob = _GLOB.search(row.model) is not None
    literal = len(_GLOB.sub("", row.model))
    return (row.provider == "*", glob, -literal, row.model)


class _Series:
    __slots__ = ("rows", "starts")

    def __init__(self, rows: list[_Compiled]) -> None:
        rows.sort(key=lambda c: day_us(c.row.since))
        self.rows = rows
        self.starts = [day_us(c.row.since) for c in rows]

    def at(self, at_us: int) -> _Compiled | None:
        k = bisect_right(self.starts, at_us) - 1
        return self.rows[k] if k >= 0 else None


class OverrideTable:
    """A project's override rows, grouped into series and looked up per (provider, model)."""

    def __init__(self, project: str, rows: Iterable[OverrideRow], *,
                 max_models: int = 10_000) -> None:
        self.project = project
        self.rows = list(rows)
        by_key: dict[tuple[str, str], list[_Compiled]] = {}
        for row in self.rows:
            by_key.setdefault((row.provider, row.model), []).append(_Compiled(project, row))
        self._series = sorted(((_precedence(s[0].row), _Series(s)) for s in by_key.values()),
                              key=lambda pair: pair[0])
        self._max_models = max_models
        self._matches: dict[tuple[str, str], tuple[_Series, ...]] = {}

    def series_for(self, provider: str, model: str) -> tuple[_Series, ...]:
        """The series matching a call's provider and model, most specific first (cached)."""
        found = self._matches.get((provider, model))
        if found is None:
            if len(self._matches) >= self._max_models:
                self._matches.clear()
            wanted = provider.strip().lower()
            found = tuple(
                series for _, series in self._series
                if (series.rows[0].row.provider in ("*", wanted))
                and (series.rows[0].row.model == model
                     or fnmatchcase(model, series.rows[0].row.model)))
            self._matches[(provider, model)] = found
        return found

    def row_at(self, provider: str, model: str, at: datetime | int) -> _Compiled | None:
        """The row in force for this call, or None (the packaged price applies)."""
        at_us = _at_us(at)
        for series in self.series_for(provider, model):
            row = series.at(at_us)
            if row is not None:
                return row
        return None

    def next_start(self, provider: str, model: str, compiled: _Compiled) -> date | None:
        """The day the next row of ``compiled``'s series takes over (None: none yet)."""
        for series in self.series_for(provider, model):
            if compiled in series.rows:
                k = series.rows.index(compiled)
                return series.rows[k + 1].row.since if k + 1 < len(series.rows) else None
        return None  # pragma: no cover - compiled comes from this table


class OverridePricer:
    """Prices calls with a project's overrides, falling back to a base price book (the
    packaged ``PriceBook``) for calls no row covers and for discount rows."""

    def __init__(self, base: Any, table: OverrideTable) -> None:
        self.base = base
        self.table = table

    def price(self, provider: str, model: str, input_tokens: int, output_tokens: int,
              cached_input_tokens: int, cache_write_tokens: int, reasoning_tokens: int,
              at: datetime | int) -> Price | None:
        """As ``PriceBook.price``, with the project's rows applied first."""
        check_counts(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
                     reasoning_tokens)
        row = self.table.row_at(provider, model, at)
        if row is not None and row.coeffs:
            nanos = row.cost(input_tokens, cached_input_tokens, cache_write_tokens,
                             output_tokens)
            priced: Price | None = Price(nanos, row.id)
        else:
            base_at: Any = at
            if isinstance(at, int) and not is_packaged_book(self.base):
                base_at = _EPOCH + timedelta(microseconds=at)
            priced = self.base.price(provider, model, input_tokens, output_tokens,
                                     cached_input_tokens, cache_write_tokens,
                                     reasoning_tokens, base_at)
            if priced is not None and row is not None:
                priced = Price(row.discounted(priced.cost_nanos), priced.price_id + row.id)
        if priced is not None and priced.cost_nanos > MAX_COST_NANOS:
            raise ValueError(f"these token counts cost {priced.cost_nanos} nano-USD at "
                             f"{priced.price_id}, more than one call may cost "
                             f"({MAX_COST_NANOS} nano-USD)")
        return priced

    def price_columns(self, provider: Sequence[str], model: Sequence[str],
                      input_tokens: Sequence[int], output_tokens: Sequence[int],
                      cached_input_tokens: Sequence[int], cache_write_tokens: Sequence[int],
                      reasoning_tokens: Sequence[int], at_us: Sequence[int],
                      positions: Iterable[int], cost_nanos: list[Any],
                      price_id: list[Any]) -> None:
        """As ``PriceBook.price_columns``: the calls no row covers, and the calls of
        discount rows, are priced by the base book many at a time."""
        table = self.table
        to_base: list[int] = []
        discounts: dict[int, _Compiled] = {}
        for (prov, name), group in by_model(provider, model, positions).items():
            series = table.series_for(prov, name)
            if not series:  # no row for this model: the packaged price, many at a time
                to_base += group
                continue
            single = series[0] if len(series) == 1 else None
            for i in group:
                t = at_us[i]
                if single is not None:
                    row = single.at(t)
                else:
                    row = None
                    for s in series:
                        row = s.at(t)
                        if row is not None:
                            break
                if row is None:
                    to_base.append(i)
                    continue
                if not row.coeffs:
                    to_base.append(i)
                    discounts[i] = row
                    continue
                inp, cached = input_tokens[i], cached_input_tokens[i]
                write, out, reasoning = cache_write_tokens[i], output_tokens[i], reasoning_tokens[i]
                if (inp | out | cached | write | reasoning) < 0 or cached + write > inp or (
                        reasoning > out):
                    cost_nanos[i] = None  # what ``price`` refuses
                    continue
                nanos = row.cost(inp, cached, write, out)
                if nanos > MAX_COST_NANOS:
                    cost_nanos[i] = None
                    continue
                cost_nanos[i], price_id[i] = nanos, row.id
        if not to_base:
            return
        if is_packaged_book(self.base):
            self.base.price_columns(provider, model, input_tokens, output_tokens,
                                    cached_input_tokens, cache_write_tokens, reasoning_tokens,
                                    at_us, to_base, cost_nanos, price_id)
        else:
            for i in to_base:
                try:
                    priced = self.base.price(
                        provider[i], model[i], input_tokens[i], output_tokens[i],
                        cached_input_tokens[i], cache_write_tokens[i], reasoning_tokens[i],
                        _EPOCH + timedelta(microseconds=at_us[i]))
                except ValueError:
                    priced = None
                if priced is None:
                    cost_nanos[i] = None
                else:
                    cost_nanos[i], price_id[i] = priced.cost_nanos, priced.price_id
        for i, row in discounts.items():
            if cost_nanos[i] is not None:
                cost_nanos[i], price_id[i] = row.discounted(cost_nanos[i]), price_id[i] + row.id


def packaged_book(pricer: Any) -> PriceBook | None:
    """The packaged book under ``pricer`` (itself, or an ``OverridePricer``'s base)."""
    if isinstance(pricer, OverridePricer):
        pricer = pricer.base
    return pricer if is_packaged_book(pricer) else None


def prices_columns(pricer: object) -> bool:
    """Whether ``pricer`` prices many calls at a time (``price_columns``, the time of each
    call in microseconds): the packaged ``PriceBook`` itself, or overrides over it."""
    return type(pricer) is OverridePricer or is_packaged_book(pricer)
