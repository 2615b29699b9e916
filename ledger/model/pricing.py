"""Price table: the cost of an LLM call that arrived without one.

This module owns pricing from the maintained ``genai-prices`` package. Given a call's
provider, model, token counts and time, ``PriceBook.price`` returns the exact cost in
nano-USD and a ``price_id`` naming the price row used, or ``None`` when the model is
unknown (the caller then records the event as ``cost_source="unpriced"``, never $0).

Data source
    Only the price snapshot packaged with the installed ``genai-prices`` version is
    used (``genai_prices.data``). Nothing here touches the network: genai-prices can
    fetch newer prices in a background thread (``UpdatePrices``), but we never start
    it, and even if something else in the process does, a ``PriceBook`` keeps reading
    the packaged snapshot, so ``price_id``'s version label is always true.

Token mapping (our event fields → ``genai_prices.Usage``)
    ==========================  ==============================  =====================
    event field                 genai-prices usage key          meaning in both
    ==========================  ==============================  =====================
    ``input_tokens``            ``input_tokens``                *all* input tokens,
                                                                including cache reads
                                                                and cache writes
    ``cached_input_tokens``     ``cache_read_tokens``           part of input_tokens
    ``cache_write_tokens``      ``cache_write_tokens``          part of input_tokens
    ``output_tokens``           ``output_tokens``               *all* output tokens,
                                                                including reasoning
    ``reasoning_tokens``        ``output_reasoning_tokens``     part of output_tokens
    ==========================  ==============================  =====================

    genai-prices models usage as a hierarchy of units: ``cache_read_tokens`` and
    ``cache_write_tokens`` are *descendants* of ``input_tokens`` and
    ``output_reasoning_tokens`` of ``output_tokens``. It charges each priced unit for
    its "leaf" count, i.e. ``input_tokens - cache_read_tokens - cache_write_tokens`` at
    the input rate, cache reads at the cache-read rate, and so on (see
    ``genai_prices.decompose.compute_leaf_values``; its own Anthropic extractor adds
    cache reads and writes *into* ``input_tokens`` to get this shape, and its OpenAI
    extractor passes ``prompt_tokens``, which already includes ``cached_tokens``).
    That is exactly the OpenAI convention our events use, so the fields map one to
    one; passing the uncached count as ``input_tokens`` would undercharge.

    Reasoning tokens are already included in ``output_tokens`` for the providers we
    know (OpenAI ``completion_tokens``, Anthropic ``output_tokens``), so they are *not*
    added again. Passing them as ``output_reasoning_tokens`` changes nothing for models
    that price reasoning like other output (nearly all); the few that price it
    separately (Perplexity deep-research) get the right rate. Where a provider's raw
    API reports them separately (Gemini ``thoughtsTokenCount``, Perplexity
    ``reasoning_tokens``), whoever builds the event must add them into
    ``output_tokens``.

    Consequently ``price`` refuses (``ValueError``) usage where
    ``cached_input_tokens + cache_write_tokens > input_tokens`` or
    ``reasoning_tokens > output_tokens``: such counts cannot follow the convention and
    any price for them would be wrong. It also refuses counts whose cost would exceed
    ``MAX_COST_NANOS`` (about 9 million USD for one call), which no stored event can hold.
    The ledger records such calls ``unpriced``.

    Cache writes are priced at the model's generic ``cache_write`` rate (the 5-minute
    rate for Anthropic); our events do not say which cache TTL was used. Request
    context variants (batch, flex/priority service tiers, regional routes) are not
    applied: standard prices only. Per-request fees (``requests_kcount``) are charged
    once per call, as genai-prices does.

Time
    The price row is chosen by genai-prices' own rules for the call's timestamp
    ``at`` (UTC; naive datetimes are taken as UTC): rows with a start date apply from
    that UTC date, time-of-day rows (off-peak discounts) by UTC time of day. Tiered
    prices switch by total input tokens, all tokens at the tier rate ("cliff").

Rounding
    genai-prices computes the call's total as an exact ``Decimal`` in USD. It is
    converted to nano-USD by rounding the *total* (not each component) to the nearest
    nano, ties to even (ROUND_HALF_EVEN). ``cost_nanos`` therefore equals
    ``round_half_even(calc_price(...).total_price * 10**9)``.

price_id
    ``genai-prices/<package version>/<provider id>/<model id>`` followed by zero or
    more ``;``-separated qualifiers that pin down the row:

    * ``;via=<provider id>`` — the row belongs to another provider's model list
      (e.g. Azure serving OpenAI models at OpenAI prices);
    * ``;base`` / ``;since=YYYY-MM-DD`` / ``;utc=HH:MM-HH:MM`` — which of a model's
      dated or time-of-day price rows applied (absent when the model has one row);
    * ``;input_tokens>N`` — the call crossed the tier starting above N input tokens.

    Example: ``genai-prices/0.2.3/google/gemini-2.5-pro;input_tokens>200000``.

    A project's price overrides (``ledger.model.price_overrides``) are applied before
    this table and have ids of their own, naming the row by a hash of its content:

    * ``override/<project>/<row id>/<provider>/<model pattern>[;since=YYYY-MM-DD]``
      ``[;discount=<P>%]`` — the row's own rates (and discount) priced the call;
    * ``<packaged price_id>;discount=<P>%;override=<project>/<row id>`` — this table's
      row priced it, then the override row's discount was applied.

    A project without overrides is priced by this book alone: its ids are as above.

Speed
    ``genai_prices.calc_price`` costs ~65 µs per call, nearly all of it in
    ``ModelPrice.calc_price`` (unit registry walk, validation, ``Usage`` object). The
    price book caches, per (provider, model) string pair, the resolved model (and
    unknown models as negative entries), and per price row a compiled integer
    formula: within one tier band the total is affine in the five counts, so its
    coefficients are measured from genai-prices itself with a handful of probe calls,
    scaled to integers, and checked against genai-prices at several more usages before
    use. A row that fails that check (a future genai-prices with non-linear pricing)
    falls back to calling genai-prices per event. An already-seen model costs ~1-2.5 µs
    (dated/time-of-day rows add genai-prices' own row selection, ~1 µs); the first call
    for a model costs ~1-2 ms (lookup, probes, checks).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from ledger.model.money import MAX_COST_NANOS, decimal_to_nanos, round_half_even_div

if TYPE_CHECKING:  # genai-prices (its data is large) is imported on the first lookup
    from genai_prices import Usage
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice, Provider

__all__ = ["GENAI_PRICES_VERSION", "Price", "PriceBook", "check_counts", "is_packaged_book"]

logger = logging.getLogger(__name__)

GENAI_PRICES_VERSION: Final[str] = metadata.version("genai-prices")
"""Version of the installed genai-prices package, whose packaged snapshot is used."""

_SOURCE: Final[str] = f"genai-prices/{GENAI_PRICES_VERSION}"


@dataclass(frozen=True, slots=True)
class Price:
    """The cost of one call and the price row it came from."""

    cost_nanos: int
    """Cost in nano-USD (USD × 10⁹), rounded half-even from genai-prices' exact total."""
    price_id: str
    """Stable, readable name of the price row applied (see the module docstring)."""


def _types() -> ModuleType:
    """``genai_prices.types``, imported on first use."""
    import genai_prices.types

    return genai_prices.types


def _packaged_snapshot() -> DataSnapshot:
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


def _usage(
    input_tokens: int,
    cached_input_tokens: int,
    cache_write_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
) -> Usage:
    """Our counts as a genai-prices ``Usage`` (the mapping in the module docstring)."""
    from genai_prices import Usage

    return Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cached_input_tokens,
        cache_write_tokens=cache_write_tokens,
        output_tokens=output_tokens,
        output_reasoning_tokens=reasoning_tokens,
    )


# --------------------------------------------------------------------------- compiled rows

_Counts = tuple[int, int, int, int, int]  # input, cached, cache_write, output, reasoning


def _scale_exponent(usd: Decimal) -> int:
    """Smallest k >= 0 such that ``usd`` × 10⁹ × 10ᵏ is an integer."""
    _, digits, exponent = usd.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    if coefficient == 0:
        return 0
    while coefficient % 10 == 0:
        coefficient //= 10
        exponent += 1
    return max(0, -(exponent + 9))


def _scaled_int(usd: Decimal, k: int) -> int:
    """``usd`` × 10⁹ × 10ᵏ as an exact int (k from ``_scale_exponent``)."""
    sign, digits, exponent = usd.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + 9 + k
    if shift >= 0:
        value = coefficient * 10**shift
    else:
        value, remainder = divmod(coefficient, 10**-shift)
        assert remainder == 0, "scale exponent too small"
    return -value if sign else value


class _Row:
    """One genai-prices price row compiled to integer arithmetic.

    For tier band ``b`` (input tokens in ``(thresholds[b-1], thresholds[b]]``) the
    cost in units of 10⁻ᵏ nano-USD is ``c0 + c·counts``; ``cost_nanos`` is that divided
    by ``scale`` = 10ᵏ, rounded half-even. ``exact`` is False when the formula did not
    reproduce genai-prices; then every event is priced by genai-prices directly.
    """

    __slots__ = ("bands", "exact", "ids", "model_price", "scale", "thresholds")

    def __init__(self, model_price: ModelPrice, price_id: str) -> None:
        self.model_price = model_price
        self.thresholds: list[int] = sorted(
            {
                tier.start
                for value in vars(model_price).values()
                if isinstance(value, _types().TieredPrices)
                for tier in value.tiers
            }
        )
        self.ids: tuple[str, ...] = (
            price_id,
            *(f"{price_id};input_tokens>{start}" for start in self.thresholds),
        )
        self.bands: tuple[tuple[int, ...], ...] = ()
        self.scale = 1
        self.exact = False
        try:
            self._compile()
        except (ArithmeticError, ValueError, AssertionError) as exc:  # pragma: no cover
            logger.warning("price row %s: compiling failed (%s); using genai-prices", price_id, exc)
            return
        if not self.exact:  # pragma: no cover - only with a non-linear future genai-prices
            logger.warning("price row %s: compiled formula differs; using genai-prices", price_id)

    def _total(self, counts: _Counts) -> Decimal:
        """genai-prices' exact total in USD for our counts."""
        result = self.model_price.calc_price(_usage(*counts))
        return result["total_price"]

    def _band_range(self, band: int) -> tuple[int, int | None]:
        """Smallest and largest input_tokens in ``band`` (None: unbounded)."""
        low = self.thresholds[band - 1] + 1 if band else 0
        high = self.thresholds[band] if band < len(self.thresholds) else None
        return low, high

    def _compile(self) -> None:
        raw_bands: list[tuple[Decimal, ...]] = []
        with localcontext(prec=80):
            for band in range(len(self.thresholds) + 1):
                low, high = self._band_range(band)
                # Probe at a point `a` of the band; need a >= 1 to probe cache tokens and
                # a + 1 in the band to probe the input rate.
                a = max(low, 1) if high is None or max(low, 1) <= high else low
                f0 = self._total((a, 0, 0, 0, 0))
                c_in = self._total((a + 1, 0, 0, 0, 0)) - f0 if high is None or a < high else 0
                c_cached = self._total((a, 1, 0, 0, 0)) - f0 if a >= 1 else Decimal(0)
                c_write = self._total((a, 0, 1, 0, 0)) - f0 if a >= 1 else Decimal(0)
                f_out = self._total((a, 0, 0, 1, 0))
                c_out = f_out - f0
                c_reasoning = self._total((a, 0, 0, 1, 1)) - f_out
                c0 = f0 - c_in * a
                raw_bands.append(
                    (Decimal(c0), Decimal(c_in), c_cached, c_write, c_out, c_reasoning)
                )
            k = max(_scale_exponent(c) for band in raw_bands for c in band)
        self.scale = 10**k
        self.bands = tuple(tuple(_scaled_int(c, k) for c in band) for band in raw_bands)
        self.exact = all(
            self._formula(counts) == decimal_to_nanos(self._total(counts))
            for counts in self._check_points()
        )

    def _check_points(self) -> list[_Counts]:
        """Usages, in every band, at which the formula must equal genai-prices."""
        points: list[_Counts] = []
        for band in range(len(self.thresholds) + 1):
            low, high = self._band_range(band)
            top = high if high is not None else max(low, 1) + 987_654_321
            for n in {low, top, (low + top) // 2}:
                points.append((n, 0, 0, 0, 0))
                points.append((n, n // 3, n // 5, 7_919, 2_003))
                points.append((n, n // 7, 0, 123_457, 0))
                points.append((n, 0, n // 2, 1, 1))
        return points

    def _formula(self, counts: _Counts) -> int:
        input_tokens, cached, write, output, reasoning = counts
        band = bisect_left(self.thresholds, input_tokens) if self.thresholds else 0
        c0, c_in, c_cached, c_write, c_out, c_reasoning = self.bands[band]
        scaled = (
            c0
            + c_in * input_tokens
            + c_cached * cached
            + c_write * write
            + c_out * output
            + c_reasoning * reasoning
        )
        return scaled if self.scale == 1 else round_half_even_div(scaled, self.scale)

    def price(
        self, input_tokens: int, cached: int, write: int, output: int, reasoning: int
    ) -> Price | None:
        thresholds = self.thresholds
        band = bisect_left(thresholds, input_tokens) if thresholds else 0
        if not self.exact:
            return self._price_slowly(input_tokens, cached, write, output, reasoning, band)
        c0, c_in, c_cached, c_write, c_out, c_reasoning = self.bands[band]
        scaled = (
            c0
            + c_in * input_tokens
            + c_cached * cached
            + c_write * write
            + c_out * output
            + c_reasoning * reasoning
        )
        scale = self.scale
        if scale != 1:
            scaled = round_half_even_div(scaled, scale)
        return Price(scaled, self.ids[band])

    def _price_slowly(
        self, input_tokens: int, cached: int, write: int, output: int, reasoning: int, band: int
    ) -> Price | None:
        """Price by calling genai-prices (rows whose compiled formula is not trusted)."""
        try:
            total = self._total((input_tokens, cached, write, output, reasoning))
        except ValueError as exc:  # pragma: no cover - broken price data in the package
            logger.warning("price row %s cannot price this call (%s)", self.ids[0], exc)
            return None
        return Price(decimal_to_nanos(total), self.ids[band])


class _Model:
    """A resolved (provider, model) pair and its compiled price rows."""

    __slots__ = ("base_id", "info", "rows", "static")

    def __init__(self, provider: Provider, info: ModelInfo, owner: Provider | None) -> None:
        self.info = info
        base = f"{_SOURCE}/{provider.id}/{info.id}"
        if owner is not None and owner.id != provider.id:
            base += f";via={owner.id}"
        self.base_id = base
        self.rows: dict[int, _Row] = {}
        self.static: _Row | None = (
            _Row(info.prices, base) if isinstance(info.prices, _types().ModelPrice) else None
        )

    def row(self, model_price: ModelPrice) -> _Row:
        row = self.rows.get(id(model_price))
        if row is None:
            row = self.rows[id(model_price)] = _Row(
                model_price, self.base_id + _row_marker(self.info, model_price)
            )
        return row


def _utc_hhmm(value: time) -> str:
    if value.tzinfo is not None:
        value = datetime.combine(date(2000, 1, 1), value).astimezone(UTC).time()
    text = value.strftime("%H:%M")
    return text + value.strftime(":%S") if value.second else text


def _row_marker(info: ModelInfo, model_price: ModelPrice) -> str:
    """The ``;...`` qualifier naming which of a model's conditional rows this is."""
    if isinstance(info.prices, _types().ModelPrice):
        return ""
    for conditional in info.prices:
        if conditional.prices is model_price:
            constraint = conditional.constraint
            if constraint is None:
                return ";base"
            if isinstance(constraint, _types().StartDateConstraint):
                return f";since={constraint.start_date.isoformat()}"
            if isinstance(constraint, _types().TimeOfDateConstraint):
                start, end = _utc_hhmm(constraint.start_time), _utc_hhmm(constraint.end_time)
                return f";utc={start}-{end}"
            return f";row={type(constraint).__name__}"  # pragma: no cover - future kinds
    return ";variant"  # pragma: no cover - get_prices() only returns listed rows here


def _owner(snapshot: DataSnapshot, provider: Provider, info: ModelInfo) -> Provider | None:
    """The provider whose model list holds ``info`` (differs for fallback providers)."""
    if any(model is info for model in provider.models):
        return provider
    for candidate in snapshot.providers:
        if any(model is info for model in candidate.models):
            return candidate
    return None  # pragma: no cover


_MISSING: Final = object()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def by_model(provider: Sequence[str], model: Sequence[str],
             positions: Iterable[int]) -> dict[tuple[str, str], list[int]]:
    """The ``positions`` of a batch's calls grouped by their (provider, model), in order:
    one price lookup serves each group."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i in positions:
        key = (provider[i], model[i])
        group = groups.get(key)
        if group is None:
            groups[key] = [i]
        else:
            group.append(i)
    return groups


def is_packaged_book(pricer: object) -> bool:
    """Whether ``pricer`` is this module's ``PriceBook`` itself (not a subclass, which may
    price differently): it prices many calls at a time (``price_columns``), taking the
    time of a call in microseconds."""
    return type(pricer) is PriceBook


def check_counts(input_tokens: int, output_tokens: int, cached_input_tokens: int,
                 cache_write_tokens: int, reasoning_tokens: int) -> None:
    """Refuse (``ValueError``) counts no price applies to (see "Token mapping")."""
    if (
        input_tokens
        | output_tokens
        | cached_input_tokens
        | cache_write_tokens
        | reasoning_tokens
    ) < 0:
        raise ValueError(
            "token counts must not be negative: "
            f"input={input_tokens}, output={output_tokens}, cached={cached_input_tokens}, "
            f"cache_write={cache_write_tokens}, reasoning={reasoning_tokens}"
        )
    if cached_input_tokens + cache_write_tokens > input_tokens:
        raise ValueError(
            f"cached_input_tokens ({cached_input_tokens}) + cache_write_tokens "
            f"({cache_write_tokens}) exceed input_tokens ({input_tokens}); input_tokens "
            "must be the total input including cached and cache-write tokens"
        )
    if reasoning_tokens > output_tokens:
        raise ValueError(
            f"reasoning_tokens ({reasoning_tokens}) exceed output_tokens ({output_tokens}); "
            "output_tokens must include reasoning tokens"
        )


class PriceBook:
    """Prices calls from the packaged genai-prices snapshot, with caches for speed.

    One instance can be shared by all ingestion threads (the caches are plain dicts;
    a race only compiles a row twice). ``max_models`` bounds the cache of
    (provider, model) strings, which come from clients: when it is full, the cache
    and genai-prices' own lookup caches are dropped and rebuilt on demand.
    """

    def __init__(self, *, max_models: int = 10_000) -> None:
        self.source = _SOURCE
        """``"genai-prices/<version>"``: the price table this book reads."""
        self._max_models = max_models
        self._snapshot: DataSnapshot | None = None  # read on the first lookup
        self._models: dict[tuple[str, str], _Model | None] = {}

    def price(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
        at: datetime | int,
    ) -> Price | None:
        """Price one call, or return None if genai-prices does not know the model.

        ``provider`` may be empty or a loose name ("openai", "anthropic", "google",
        "gemini", "vertex"...). A provider genai-prices does not recognise is ignored
        and the model is looked up by name alone; a recognised provider is trusted, so
        a model it does not list is unknown (None). Token counts follow the mapping in
        the module docstring; ``at`` is the time of the call (a datetime, or microseconds
        since the epoch, UTC) and selects dated or time-of-day prices. Raises
        ``ValueError`` for negative counts, cached plus cache-write tokens above
        ``input_tokens``, reasoning above ``output_tokens``, or a cost above
        ``MAX_COST_NANOS``.
        """
        check_counts(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
                     reasoning_tokens)
        entry = self._models.get((provider, model), _MISSING)
        if entry is _MISSING:
            entry = self._resolve(provider, model)
        if entry is None:
            return None
        assert isinstance(entry, _Model)
        row = entry.static
        if row is None:  # prices that depend on the time (most do not: no datetime made)
            if isinstance(at, int):
                at = _EPOCH + timedelta(microseconds=at)
            row = entry.row(entry.info.get_prices(at))
        priced = row.price(
            input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens
        )
        if priced is not None and priced.cost_nanos > MAX_COST_NANOS:
            raise ValueError(
                f"these token counts cost {priced.cost_nanos} nano-USD at {priced.price_id}, "
                f"more than one call may cost ({MAX_COST_NANOS} nano-USD)"
            )
        return priced

    def price_columns(
        self,
        provider: Sequence[str],
        model: Sequence[str],
        input_tokens: Sequence[int],
        output_tokens: Sequence[int],
        cached_input_tokens: Sequence[int],
        cache_write_tokens: Sequence[int],
        reasoning_tokens: Sequence[int],
        at_us: Sequence[int],
        positions: Iterable[int],
        cost_nanos: list[Any],
        price_id: list[Any],
    ) -> None:
        """``price`` for the calls at ``positions`` of these columns (the time of each call
        in microseconds), many at a time: sets ``cost_nanos[i]`` and ``price_id[i]`` of
        each call priced, and ``cost_nanos[i] = None`` for a call ``price`` returns None
        for or refuses (``ValueError``). Calls of one model share one lookup, and the
        compiled formula runs in a loop (the per-call method is not called)."""
        for (prov, name), group in by_model(provider, model, positions).items():
            entry = self._models.get((prov, name), _MISSING)
            if entry is _MISSING:
                entry = self._resolve(prov, name)
            if entry is None:  # a model genai-prices does not know
                for i in group:
                    cost_nanos[i] = None
                continue
            assert isinstance(entry, _Model)
            row = entry.static
            if row is None or not row.exact:  # dated or time-of-day prices
                for i in group:
                    try:
                        priced = self.price(
                            prov, name, input_tokens[i], output_tokens[i],
                            cached_input_tokens[i], cache_write_tokens[i],
                            reasoning_tokens[i], at_us[i])
                    except ValueError:
                        priced = None
                    if priced is None:
                        cost_nanos[i] = None
                    else:
                        cost_nanos[i], price_id[i] = priced.cost_nanos, priced.price_id
                continue
            thresholds, bands, scale, ids = row.thresholds, row.bands, row.scale, row.ids
            for i in group:
                inp, cached, write = input_tokens[i], cached_input_tokens[i], cache_write_tokens[i]
                out, reasoning = output_tokens[i], reasoning_tokens[i]
                if (inp | out | cached | write | reasoning) < 0 or cached + write > inp or (
                        reasoning > out):
                    cost_nanos[i] = None  # what ``price`` refuses
                    continue
                band = bisect_left(thresholds, inp) if thresholds else 0
                c0, c_in, c_cached, c_write, c_out, c_reasoning = bands[band]
                scaled = (c0 + c_in * inp + c_cached * cached + c_write * write + c_out * out
                          + c_reasoning * reasoning)
                if scale != 1:
                    scaled = round_half_even_div(scaled, scale)
                if scaled > MAX_COST_NANOS:
                    cost_nanos[i] = None  # what ``price`` refuses
                    continue
                cost_nanos[i], price_id[i] = scaled, ids[band]

    def describe(self, provider: str, model: str, at: datetime) -> dict[str, Any] | None:
        """The packaged row a call at ``at`` would be priced by (for ``llmring prices
        show``): the model genai-prices resolved, the row's ``price_id`` (without a tier
        qualifier), the day it applies from, and its rates as genai-prices states them
        (USD per million tokens; tiered rates as ``{"base", "tiers"}``); None for a model
        it does not know."""
        entry = self._models.get((provider, model), _MISSING)
        if entry is _MISSING:
            entry = self._resolve(provider, model)
        if entry is None:
            return None
        assert isinstance(entry, _Model)
        model_price = entry.static.model_price if entry.static is not None else (
            entry.info.get_prices(at))
        row = entry.static or entry.row(model_price)
        rates: dict[str, Any] = {}
        for name, value in vars(model_price).items():
            if value is None:
                continue
            if isinstance(value, _types().TieredPrices):
                rates[name] = {"base": str(value.base), "tiers": [
                    {"above_input_tokens": t.start, "rate": str(t.price)}
                    for t in value.tiers]}
            elif isinstance(value, Decimal):
                rates[name] = str(value)
        since = None
        if not isinstance(entry.info.prices, _types().ModelPrice):
            for conditional in entry.info.prices:
                constraint = conditional.constraint
                if conditional.prices is model_price and isinstance(
                        constraint, _types().StartDateConstraint):
                    since = constraint.start_date.isoformat()
        return {"provider": entry.base_id.split("/")[2], "model": entry.info.id,
                "name": entry.info.name, "price_id": row.ids[0], "since": since,
                "rates": rates, "unit": "USD per million tokens (requests_kcount: USD per "
                "thousand requests)"}

    def _resolve(self, provider: str, model: str) -> _Model | None:
        if len(self._models) >= self._max_models or self._snapshot is None:
            self._models.clear()
            self._snapshot = _packaged_snapshot()
        snapshot = self._snapshot
        found: tuple[Provider, ModelInfo] | None = None
        provider_obj: Provider | None = None
        if provider.strip():
            try:
                provider_obj = snapshot.find_provider(None, provider, None)
            except LookupError:
                provider_obj = None  # unknown provider name: match by model alone
        if model.strip():
            try:
                found = snapshot.find_provider_model(model, provider_obj, None, None)
            except LookupError:
                found = None
        entry = None
        if found is not None:
            resolved_provider, info = found
            entry = _Model(resolved_provider, info, _owner(snapshot, resolved_provider, info))
        self._models[(provider, model)] = entry
        return entry
