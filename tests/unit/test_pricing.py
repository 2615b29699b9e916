"""Pricing calls that arrived without a cost, from genai-prices (ledger.model.pricing)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import genai_prices
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data import providers as packaged_providers
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot
from genai_prices.types import ModelPrice, StartDateConstraint

from ledger.model.pricing import GENAI_PRICES_VERSION, Price, PriceBook

AT = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def book() -> PriceBook:
    return PriceBook()


def genai_total(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    at: datetime = AT,
) -> Decimal:
    """genai-prices' own exact USD total for a call, uncached, with the documented mapping."""
    usage = Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=output_tokens,
        output_reasoning_tokens=reasoning,
    )
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=at).total_price


def to_nanos(usd: Decimal) -> int:
    return int((usd * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def row_of(provider: str, model: str, at: datetime = AT) -> ModelPrice:
    return calc_price(
        Usage(input_tokens=0), model, provider_id=provider, genai_request_timestamp=at
    ).model_price


def price(book: PriceBook, provider: str, model: str, *counts: int, at: datetime = AT) -> Price:
    """``book.price`` for a model the test knows is priced."""
    result = book.price(provider, model, *counts, at)  # type: ignore[arg-type]
    assert result is not None
    return result


# ---------------------------------------------------------------- known and unknown models


def test_known_model_costs_genai_prices_decimal_total_times_1e9_exactly(book: PriceBook) -> None:
    result = price(book, "openai", "gpt-4o", 1_234, 567, 0, 0, 0)
    total = genai_total("openai", "gpt-4o", 1_234, 567)
    assert result.cost_nanos == total * 10**9  # exact: no rounding was needed


def test_total_with_more_than_nine_places_is_rounded_half_even_to_nanos(book: PriceBook) -> None:
    # command-r7b input costs $0.0375/MTok: 37.5 nano-USD per token.
    assert genai_total("cohere", "command-r7b", 1, 0) * 10**9 == Decimal("37.5")
    assert price(book, "cohere", "command-r7b", 1, 0, 0, 0, 0).cost_nanos == 38  # 37.5 → 38
    assert price(book, "cohere", "command-r7b", 3, 0, 0, 0, 0).cost_nanos == 112  # 112.5 → 112


def test_unknown_model_is_unpriced(book: PriceBook) -> None:
    assert book.price("openai", "no-such-model-xyz", 1_000, 100, 0, 0, 0, AT) is None


def test_unknown_model_is_looked_up_in_genai_prices_only_once(
    book: PriceBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    original = DataSnapshot.find_provider_model

    def counting(self: DataSnapshot, *args: object) -> object:
        nonlocal calls
        calls += 1
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(DataSnapshot, "find_provider_model", counting)
    for _ in range(3):
        assert book.price("", "my-private-finetune", 10, 10, 0, 0, 0, AT) is None
    assert calls == 1


def test_zero_tokens_of_a_known_model_cost_zero_and_are_still_priced(book: PriceBook) -> None:
    assert price(book, "openai", "gpt-4o", 0, 0, 0, 0, 0).cost_nanos == 0


# ---------------------------------------------------------------- token mapping


def test_cached_input_tokens_are_charged_at_the_cache_read_rate(book: PriceBook) -> None:
    row = row_of("openai", "gpt-4o")
    assert row.cache_read_mtok < row.input_mtok
    result = price(book, "openai", "gpt-4o", 10_000, 1_000, 4_000, 0, 0)
    expected_usd = (
        6_000 * row.input_mtok + 4_000 * row.cache_read_mtok + 1_000 * row.output_mtok
    ) / 1_000_000
    assert result.cost_nanos == to_nanos(expected_usd)


def test_cache_write_tokens_are_charged_at_the_cache_write_rate(book: PriceBook) -> None:
    row = row_of("anthropic", "claude-3-5-sonnet")
    result = price(book, "anthropic", "claude-3-5-sonnet", 10_000, 100, 2_000, 3_000, 0)
    expected_usd = (
        5_000 * row.input_mtok
        + 2_000 * row.cache_read_mtok
        + 3_000 * row.cache_write_mtok
        + 100 * row.output_mtok
    ) / 1_000_000
    assert result.cost_nanos == to_nanos(expected_usd)


def test_reasoning_tokens_are_part_of_output_tokens_not_charged_again(book: PriceBook) -> None:
    without = price(book, "openai", "o3-mini", 1_000, 2_000, 0, 0, 0)
    with_reasoning = price(book, "openai", "o3-mini", 1_000, 2_000, 0, 0, 1_500)
    assert with_reasoning.cost_nanos == without.cost_nanos


def test_reasoning_tokens_use_a_separate_reasoning_rate_where_the_row_has_one(
    book: PriceBook,
) -> None:
    model = "sonar-deep-research"
    assert row_of("perplexity", model).output_reasoning_mtok is not None
    result = price(book, "perplexity", model, 1_000, 2_000, 0, 0, 1_500)
    assert result.cost_nanos == to_nanos(
        genai_total("perplexity", model, 1_000, 2_000, 0, 0, 1_500)
    )
    assert result.cost_nanos != price(book, "perplexity", model, 1_000, 2_000, 0, 0, 0).cost_nanos


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ((100, 10, 80, 30, 0), "exceed input_tokens"),
        ((100, 10, 0, 0, 11), "exceed output_tokens"),
        ((-1, 10, 0, 0, 0), "must not be negative"),
    ],
)
def test_counts_that_break_the_total_includes_parts_convention_are_rejected(
    book: PriceBook, counts: tuple[int, int, int, int, int], message: str
) -> None:
    input_tokens, output_tokens, cached, cache_write, reasoning = counts
    with pytest.raises(ValueError, match=message):
        book.price(
            "openai", "gpt-4o", input_tokens, output_tokens, cached, cache_write, reasoning, AT
        )


def test_counts_that_would_cost_more_than_one_call_may_are_rejected(book: PriceBook) -> None:
    with pytest.raises(ValueError, match="more than one call may cost"):
        book.price("openai", "gpt-4o", 2**53 - 1, 0, 0, 0, 0, AT)


def test_pricing_columns_equals_pricing_each_call(book: PriceBook) -> None:
    calls = [("openai", "gpt-4o", 1_000, 200, 100, 0, 0),
             ("anthropic", "claude-opus-4-6", 300_000, 1_000, 100, 50, 0),  # a tier
             ("deepseek", "deepseek-chat", 10, 5, 0, 0, 0),  # time-of-day prices
             ("acme", "unknown-model", 10, 5, 0, 0, 0),
             ("openai", "gpt-4o", 10, 5, 20, 0, 0),  # cached above input: refused
             ("openai", "gpt-4o", 2**53 - 1, 0, 0, 0, 0),  # costs too much: refused
             ("openai", "gpt-4o", 7, 3, 0, 0, 0)]
    at_us = [1_756_728_000_000_000 + k * 3_600_000_000 for k in range(len(calls))]
    provider, model, inp, out, cached, write, reasoning = (
        list(c) for c in zip(*calls, strict=True))
    cost, price_id = [0] * len(calls), [None] * len(calls)
    book.price_columns(provider, model, inp, out, cached, write, reasoning, at_us,
                       range(len(calls)), cost, price_id)
    for k, (p, m, *counts) in enumerate(calls):
        try:
            one = book.price(p, m, *counts, at_us[k])  # type: ignore[arg-type]
        except ValueError:
            one = None
        assert (cost[k], price_id[k] if cost[k] is not None else None) == (
            (one.cost_nanos, one.price_id) if one else (None, None)), calls[k]


# ---------------------------------------------------------------- price_id


def test_price_id_names_package_version_provider_and_model(book: PriceBook) -> None:
    result = price(book, "openai", "gpt-4o", 1_000, 100, 0, 0, 0)
    assert result.price_id == f"genai-prices/{genai_prices.__version__}/openai/gpt-4o"


def test_price_id_names_the_matched_model_not_the_string_sent(book: PriceBook) -> None:
    result = price(book, "anthropic", "claude-3-5-sonnet-20241022", 1_000, 100, 0, 0, 0)
    assert result.price_id.endswith("/anthropic/claude-3-5-sonnet")


def test_price_id_marks_the_input_tier_a_call_crossed(book: PriceBook) -> None:
    small = price(book, "google", "gemini-2.5-pro", 200_000, 100, 0, 0, 0)
    large = price(book, "google", "gemini-2.5-pro", 200_001, 100, 0, 0, 0)
    assert small.price_id == f"genai-prices/{GENAI_PRICES_VERSION}/google/gemini-2.5-pro"
    assert large.price_id == small.price_id + ";input_tokens>200000"
    assert large.cost_nanos == to_nanos(genai_total("google", "gemini-2.5-pro", 200_001, 100))


def test_price_id_names_the_provider_whose_rows_were_borrowed(book: PriceBook) -> None:
    result = price(book, "azure", "gpt-4o", 1_000, 100, 0, 0, 0)
    assert result.price_id == f"genai-prices/{GENAI_PRICES_VERSION}/azure/gpt-4o;via=openai"


# ---------------------------------------------------------------- time


def test_dated_price_rows_apply_from_their_utc_start_date(book: PriceBook) -> None:
    provider, model = "anthropic", "claude-opus-4-6"
    info = calc_price(Usage(input_tokens=0), model, provider_id=provider).model
    assert not isinstance(info.prices, ModelPrice)
    start = next(
        c.constraint.start_date
        for c in info.prices
        if isinstance(c.constraint, StartDateConstraint)
    )
    on = datetime.combine(start, datetime.min.time(), UTC)
    before = on - timedelta(microseconds=1)
    counts = (300_000, 100, 0, 0, 0)  # above the 200k tier the old row charged more
    old, new = (
        price(book, provider, model, *counts, at=before),
        price(book, provider, model, *counts, at=on),
    )
    assert old.cost_nanos == to_nanos(genai_total(provider, model, 300_000, 100, at=before))
    assert new.cost_nanos == to_nanos(genai_total(provider, model, 300_000, 100, at=on))
    assert old.cost_nanos != new.cost_nanos
    assert new.price_id.endswith(f";since={start.isoformat()}")
    assert ";base" in old.price_id


def test_time_of_day_price_rows_follow_the_utc_time_of_the_call(book: PriceBook) -> None:
    peak = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)
    off_peak = datetime(2025, 9, 1, 20, 0, tzinfo=UTC)
    at_peak = price(book, "deepseek", "deepseek-chat", 10_000, 1_000, 0, 0, 0, at=peak)
    at_night = price(book, "deepseek", "deepseek-chat", 10_000, 1_000, 0, 0, 0, at=off_peak)
    assert at_peak.cost_nanos == to_nanos(
        genai_total("deepseek", "deepseek-chat", 10_000, 1_000, at=peak)
    )
    assert at_night.cost_nanos == to_nanos(
        genai_total("deepseek", "deepseek-chat", 10_000, 1_000, at=off_peak)
    )
    assert at_night.cost_nanos < at_peak.cost_nanos
    assert at_peak.price_id.endswith(";utc=00:30-16:30")


def test_the_time_of_a_call_may_be_given_in_microseconds_since_the_epoch(
        book: PriceBook) -> None:
    calls = [("deepseek", "deepseek-chat", datetime(2025, 9, 1, 12, 0, tzinfo=UTC)),
             ("deepseek", "deepseek-chat", datetime(2025, 9, 1, 20, 0, tzinfo=UTC)),
             ("anthropic", "claude-opus-4-6", datetime(2024, 1, 1, tzinfo=UTC)),
             ("anthropic", "claude-opus-4-6", datetime(2026, 6, 1, tzinfo=UTC)),
             ("openai", "gpt-4o", datetime(2025, 3, 1, tzinfo=UTC))]
    for provider, model, at in calls:
        micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        assert book.price(provider, model, 300_000, 1_000, 100, 0, 0, micros) == book.price(
            provider, model, 300_000, 1_000, 100, 0, 0, at)


# ---------------------------------------------------------------- providers


def test_empty_provider_matches_the_model_by_name_alone(book: PriceBook) -> None:
    assert price(book, "", "gpt-4o", 1_000, 100, 0, 0, 0) == price(
        book, "openai", "gpt-4o", 1_000, 100, 0, 0, 0
    )


def test_unrecognised_provider_name_falls_back_to_the_model_name(book: PriceBook) -> None:
    result = price(book, "my-llm-gateway", "claude-3-5-sonnet", 1_000, 100, 0, 0, 0)
    assert result.price_id.endswith("/anthropic/claude-3-5-sonnet")


@pytest.mark.parametrize(("given", "resolved"), [("gemini", "google"), ("Anthropic", "anthropic")])
def test_loose_provider_names_resolve_to_genai_prices_providers(
    book: PriceBook, given: str, resolved: str
) -> None:
    model = "gemini-2.5-flash" if resolved == "google" else "claude-3-5-haiku"
    assert f"/{resolved}/" in price(book, given, model, 1_000, 100, 0, 0, 0).price_id


def test_recognised_provider_does_not_price_another_providers_model(book: PriceBook) -> None:
    assert book.price("openai", "claude-3-5-sonnet", 1_000, 100, 0, 0, 0, AT) is None


def test_bounded_cache_keeps_pricing_correctly_after_it_is_dropped() -> None:
    book = PriceBook(max_models=2)
    models = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4o"]
    results = [price(book, "openai", m, 1_000, 100, 0, 0, 0) for m in models]
    for model, result in zip(models, results, strict=True):
        assert result.cost_nanos == to_nanos(genai_total("openai", model, 1_000, 100))


# ---------------------------------------------------------------- equivalence with genai-prices


SAMPLE_USAGES = [
    # input, output, cached, cache_write, reasoning
    (1_000, 500, 200, 0, 100),
    (300_000, 2_000, 50_000, 10_000, 0),
    (0, 0, 0, 0, 0),
    (1, 1, 0, 0, 0),
    (272_001, 10, 0, 0, 10),
    (128_001, 1, 1, 1, 1),
    (7_777_777, 333_333, 1_111_111, 222_222, 99_999),
]
MAIN_PROVIDERS = {"openai", "anthropic", "google", "deepseek", "perplexity", "x-ai", "mistral"}


def sample_models() -> Iterator[tuple[str, str, list[datetime]]]:
    """Every model of the main providers and every 7th of the others, with call times
    that straddle each of the model's dated price changes."""
    index = 0
    for provider in packaged_providers:
        for info in provider.models:
            index += 1
            if provider.id not in MAIN_PROVIDERS and index % 7:
                continue
            times = [
                datetime(2024, 6, 1, 3, 0, tzinfo=UTC),
                datetime(2025, 9, 1, 20, 0, tzinfo=UTC),
                datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
            ]
            if not isinstance(info.prices, ModelPrice):
                for conditional in info.prices:
                    if isinstance(conditional.constraint, StartDateConstraint):
                        day = datetime.combine(
                            conditional.constraint.start_date, datetime.min.time(), UTC
                        )
                        times += [day - timedelta(microseconds=1), day]
            yield provider.id, info.id, times


def test_cached_pricing_equals_uncached_calc_price_on_a_sample_of_models(book: PriceBook) -> None:
    compared = 0
    for provider, model, times in sample_models():
        for at in times:
            for input_tokens, output_tokens, cached, write, reasoning in SAMPLE_USAGES:
                result = book.price(
                    provider, model, input_tokens, output_tokens, cached, write, reasoning, at
                )
                try:
                    total = genai_total(
                        provider, model, input_tokens, output_tokens, cached, write, reasoning, at
                    )
                except LookupError:  # a few model ids are not matched by their own rules
                    assert result is None, (provider, model)
                    continue
                assert result is not None, (provider, model)
                assert result.cost_nanos == to_nanos(total), (provider, model, at, input_tokens)
                compared += 1
    assert compared > 10_000


# ---------------------------------------------------------------- data source and speed


def test_prices_come_from_the_packaged_snapshot_even_if_auto_update_replaced_it() -> None:
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        result = PriceBook().price("openai", "gpt-4o", 1_000, 100, 0, 0, 0, AT)
    finally:
        set_custom_snapshot(None)
    assert result is not None
    assert result.cost_nanos == to_nanos(genai_total("openai", "gpt-4o", 1_000, 100))


def test_pricing_never_opens_a_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    book = PriceBook()
    for provider, model in [("openai", "gpt-4o"), ("", "claude-3-5-haiku"), ("x", "nope")]:
        book.price(provider, model, 1_000, 100, 0, 0, 0, AT)


def test_seen_models_are_priced_without_calling_genai_prices(
        book: PriceBook, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a model's row is compiled, pricing it again is integer arithmetic: neither
    genai-prices' row pricing nor its model lookup runs (their speed is bench/ingest.py's)."""
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelPrice

    first = book.price("openai", "gpt-4o", 1_000, 500, 200, 0, 0, AT)

    def not_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("genai-prices was called for a model already seen")

    monkeypatch.setattr(ModelPrice, "calc_price", not_again)
    monkeypatch.setattr(DataSnapshot, "find_provider_model", not_again)
    for _ in range(100):
        assert book.price("openai", "gpt-4o", 1_000, 500, 200, 0, 0, AT) == first
