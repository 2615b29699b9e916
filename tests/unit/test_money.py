"""Exact money: USD amounts as integer nano-USD (ledger.model.money)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.model.money import (
    MAX_USD,
    NANOS_PER_USD,
    decimal_to_nanos,
    format_usd,
    nanos_to_decimal,
    nanos_to_usd,
    usd_to_nanos,
)

# ---------------------------------------------------------------- usd_to_nanos accepts


def test_one_usd_is_a_billion_nanos() -> None:
    assert NANOS_PER_USD == 1_000_000_000


def test_float_converts_through_its_decimal_text_not_float_multiplication() -> None:
    # As floats, 1.005 * 1e9 == 1004999999.9999999 and 0.000123 * 1e9 == 123000.00000000001.
    assert usd_to_nanos(0.1) == 100_000_000
    assert usd_to_nanos(1.005) == 1_005_000_000
    assert usd_to_nanos(0.000123) == 123_000


def test_decimal_string_converts_exactly() -> None:
    assert usd_to_nanos("0.0075") == 7_500_000


def test_exponent_string_converts_exactly() -> None:
    assert usd_to_nanos("1e-3") == 1_000_000
    assert usd_to_nanos("2.5E+2") == 250_000_000_000


def test_string_with_surrounding_whitespace_is_accepted() -> None:
    assert usd_to_nanos(" 0.5\n") == 500_000_000


def test_integer_is_whole_dollars() -> None:
    assert usd_to_nanos(3) == 3_000_000_000


def test_decimal_converts_exactly() -> None:
    assert usd_to_nanos(Decimal("0.000000001")) == 1


def test_zero_converts_to_zero_nanos() -> None:
    assert usd_to_nanos(0) == 0
    assert usd_to_nanos("0.000") == 0
    assert usd_to_nanos(-0.0) == 0


def test_trailing_zeros_beyond_nine_places_are_exact_and_accepted() -> None:
    assert usd_to_nanos("0.100000000000") == 100_000_000


def test_tiny_float_in_exponent_notation_converts_exactly() -> None:
    assert usd_to_nanos(1e-9) == 1  # repr(1e-9) == "1e-09"


def test_maximum_amount_is_accepted() -> None:
    assert usd_to_nanos(MAX_USD) == MAX_USD * NANOS_PER_USD
    assert usd_to_nanos(str(MAX_USD)) == MAX_USD * NANOS_PER_USD


# ---------------------------------------------------------------- usd_to_nanos rejects


@pytest.mark.parametrize("value", [-1, -0.5, "-0.0075", Decimal("-1e-9")])
def test_negative_amount_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="negative"):
        usd_to_nanos(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")]
)
def test_nan_and_infinity_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="finite"):
        usd_to_nanos(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False])
def test_boolean_is_rejected(value: bool) -> None:
    with pytest.raises(ValueError, match="boolean"):
        usd_to_nanos(value)


@pytest.mark.parametrize(
    "value", ["", "abc", "1,5", "0x10", "1_000", "nan", "Infinity", "$1", "1e"]
)
def test_non_numeric_string_is_rejected_naming_the_value(value: str) -> None:
    with pytest.raises(ValueError, match="not a decimal number") as excinfo:
        usd_to_nanos(value)
    assert repr(value) in str(excinfo.value)


@pytest.mark.parametrize("value", [None, [1], {"usd": 1}, b"1"])
def test_unsupported_type_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="must be a str, int, float or Decimal"):
        usd_to_nanos(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0.0000000001", 1e-10, Decimal("1.0000000005"), "1e-10"])
def test_more_than_nine_decimal_places_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match=r"at most 9 decimal places \(nano-USD\)"):
        usd_to_nanos(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [MAX_USD + 1, "1000000000000.000000001", 1e13, "1e999999999"])
def test_absurdly_large_amount_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="larger than the maximum"):
        usd_to_nanos(value)  # type: ignore[arg-type]


def test_huge_negative_exponent_is_rejected_quickly() -> None:
    with pytest.raises(ValueError, match="at most 9 decimal places"):
        usd_to_nanos("1e-999999999")


# ---------------------------------------------------------------- nanos out


def test_nanos_to_decimal_is_exact_with_nine_places() -> None:
    assert nanos_to_decimal(7_500_000) == Decimal("0.0075")
    assert str(nanos_to_decimal(7_500_000)) == "0.007500000"


def test_nanos_to_usd_gives_the_float_shown_by_apis() -> None:
    assert nanos_to_usd(7_500_000) == 0.0075
    assert nanos_to_usd(100_000_000) == 0.1


def test_format_usd_shows_six_places_by_default() -> None:
    assert format_usd(7_500_000) == "$0.007500"


def test_format_usd_rounds_half_even_at_the_requested_places() -> None:
    assert format_usd(2_500_000_000, places=0) == "$2"
    assert format_usd(3_500_000_000, places=0) == "$4"
    assert format_usd(15_000_000, places=2) == "$0.02"
    assert format_usd(25_000_000, places=2) == "$0.02"


def test_format_usd_shows_all_nine_places() -> None:
    assert format_usd(1_234_567_891, places=9) == "$1.234567891"


def test_format_usd_shows_negative_differences_with_a_leading_minus() -> None:
    assert format_usd(-1_500_000_000, places=2) == "-$1.50"
    assert format_usd(-1, places=2) == "$0.00"


def test_format_usd_rejects_places_outside_zero_to_nine() -> None:
    with pytest.raises(ValueError, match="places"):
        format_usd(1, places=10)


@pytest.mark.parametrize("value", [1.0, True, "1", Decimal(1)])
def test_nanos_must_be_an_int(value: object) -> None:
    with pytest.raises(TypeError, match="nanos must be an int"):
        nanos_to_decimal(value)  # type: ignore[arg-type]


def test_decimal_to_nanos_rounds_half_even() -> None:
    assert decimal_to_nanos(Decimal("0.0000000375")) == 38  # 37.5 → 38 (even)
    assert decimal_to_nanos(Decimal("0.0000000365")) == 36  # 36.5 → 36 (even)
    assert decimal_to_nanos(Decimal("0.00000003651")) == 37


# ---------------------------------------------------------------- properties

usd_decimals = st.decimals(
    min_value=0, max_value=MAX_USD, places=9, allow_nan=False, allow_infinity=False
)


@given(usd_decimals)
def test_any_amount_with_at_most_nine_places_converts_exactly(amount: Decimal) -> None:
    assert usd_to_nanos(str(amount)) == amount * 10**9


@given(usd_decimals)
def test_nanos_to_decimal_inverts_usd_to_nanos(amount: Decimal) -> None:
    assert nanos_to_decimal(usd_to_nanos(str(amount))) == amount


@given(usd_decimals)
def test_decimal_and_its_text_convert_alike(amount: Decimal) -> None:
    assert usd_to_nanos(amount) == usd_to_nanos(str(amount))


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_float_cost_shown_by_apis_converts_back_exactly_below_a_million_usd(nanos: int) -> None:
    assert usd_to_nanos(nanos_to_usd(nanos)) == nanos


@given(st.integers(min_value=0, max_value=MAX_USD * NANOS_PER_USD))
def test_nanos_to_usd_is_the_nearest_float_to_the_exact_amount(nanos: int) -> None:
    assert nanos_to_usd(nanos) == float(nanos_to_decimal(nanos))


@pytest.mark.parametrize(("text", "words"), [
    ("1e99999999999999999999", "larger than the maximum"),
    ("1E+99999999999999999999999999", "larger than the maximum"),
    ("-1e99999999999999999999", "must not be negative"),
    ("1e-99999999999999999999", "too many decimal places"),
    ("1" + "0" * 5000, "larger than the maximum"),
    ("0." + "0" * 5000 + "1", "too many decimal places"),
    ("١٢", "not a decimal number"),
])
def test_text_beyond_any_decimal_is_refused_with_words(text: str, words: str) -> None:
    """An exponent past what ``Decimal`` holds, or thousands of digits, is a clear
    ``ValueError`` (a 4xx at the API), never ``decimal.InvalidOperation``."""
    with pytest.raises(ValueError, match=words):
        usd_to_nanos(text)


def test_zero_with_any_exponent_is_zero() -> None:
    assert usd_to_nanos("0e99999999999999999999") == 0
    assert usd_to_nanos("0.000e-99999999999999999999") == 0
    assert usd_to_nanos("1." + "0" * 10_000) == NANOS_PER_USD
