"""Exact money for the ledger: USD amounts as integer nano-USD.

This module owns the one representation of money the ledger stores and signs:
``cost_nanos``, an ``int`` equal to USD × 10⁹ (docs/formats.md). It converts amounts that
arrive from outside (JSON numbers, numeric strings, ``Decimal``) into nanos *exactly*,
rejecting anything that cannot be represented without rounding, and converts nanos
back for display (``float`` for APIs that show ``cost``, ``Decimal`` when exactness
matters, and a formatted ``"$0.007500"`` string).

Nothing here rounds silently on the way in. The only rounding is in ``format_usd``
(display only, round-half-even); callers that need to round an exact price to nanos
(e.g. ``ledger.model.pricing``) use ``decimal_to_nanos`` and say so.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = [
    "MAX_COST_NANOS",
    "MAX_USD",
    "NANOS_PER_USD",
    "decimal_to_nanos",
    "format_usd",
    "nanos_to_decimal",
    "nanos_to_usd",
    "round_half_even_div",
    "usd_to_nanos",
]

NANOS_PER_USD = 1_000_000_000
"""Nano-USD in one US dollar."""

MAX_USD = 10**12
"""Largest amount accepted by ``usd_to_nanos`` (one trillion USD); larger is a data error."""

MAX_COST_NANOS = 2**53 - 1
"""Largest cost of one call in nano-USD (about 9 million USD): JSON's largest safe integer,
like every integer of an event, and within the ``int64`` of the stored rows."""

_NANO_PLACES = 9
_MAX_NANOS = MAX_USD * NANOS_PER_USD

# Plain decimal notation with an optional exponent: "12", "0.0075", ".5", "1e-3", "-2".
# ASCII digits only; no underscores, no hex, no "nan"/"inf" spellings (Decimal() would
# accept those).
_NUMBER_RE = re.compile(
    r"(?P<mantissa>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:[eE](?P<exponent>[+-]?[0-9]+))?")
# An exponent this long (|e| >= 10^18) is past what Decimal represents, and past what the
# digits of any request could bring back within MAX_USD and 9 decimal places.
_HUGE_EXPONENT_DIGITS = 18


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def usd_to_nanos(value: str | int | float | Decimal) -> int:
    """Convert a USD amount to integer nano-USD, exactly.

    Accepted inputs:

    * ``int`` — whole dollars.
    * ``float`` — converted through its shortest ``repr`` text (``0.1`` → ``"0.1"`` →
      ``100_000_000``), never by float multiplication.
    * ``str`` — a decimal number, optionally with an exponent and surrounding
      whitespace: ``"0.0075"``, ``"1e-3"``, ``".5"``.
    * ``Decimal`` — used as is.

    Raises ``ValueError`` (naming the value) for: booleans, other types, strings that
    are not numbers, NaN or infinities, negative amounts, amounts larger than
    ``MAX_USD``, and amounts that need more than 9 decimal places — those are not
    representable in nanos, so they are refused rather than rounded. Extra trailing
    zeros are fine (``"0.1000000000000"`` is exactly 100_000_000 nanos).
    """
    if isinstance(value, bool):
        raise ValueError(f"USD amount must be a number, not a boolean: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"USD amount must not be negative: {value!r}")
        if value > MAX_USD:
            raise ValueError(f"USD amount {value!r} is larger than the maximum {MAX_USD} USD")
        return value * NANOS_PER_USD
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"USD amount must be finite: {value!r}")
        amount = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"USD amount must be finite: {value!r}")
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        match = _NUMBER_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"USD amount is not a decimal number: {_show(value)}")
        exponent = (match["exponent"] or "0").lstrip("+-").lstrip("0")
        if len(exponent) > _HUGE_EXPONENT_DIGITS:
            if Decimal(match["mantissa"]).is_zero():
                return 0
            if match["mantissa"].startswith("-"):
                raise ValueError(f"USD amount must not be negative: {_show(value)}")
            if match["exponent"].startswith("-"):
                raise ValueError(_too_precise(value))
            raise ValueError(_too_large(value))
        amount = Decimal(text)
    else:
        raise ValueError(
            f"USD amount must be a str, int, float or Decimal, not {type(value).__name__}: "
            f"{_show(value)}"
        )
    return _decimal_amount_to_nanos(amount, value)


def _too_large(original: object) -> str:
    return f"USD amount {_show(original)} is larger than the maximum {MAX_USD} USD"


def _too_precise(original: object) -> str:
    return (f"USD amount {_show(original)} has too many decimal places: "
            "amounts must have at most 9 decimal places (nano-USD)")


def _decimal_amount_to_nanos(amount: Decimal, original: object) -> int:
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by the caller
    if not any(digits):
        return 0  # also "-0" and "0e-999999"
    if sign:
        raise ValueError(f"USD amount must not be negative: {_show(original)}")
    # Magnitude first, so a huge exponent never builds a huge integer.
    if amount.adjusted() > 12:
        raise ValueError(_too_large(original))
    # Drop trailing zeros of the coefficient; they carry no value. What is left has at
    # most 22 digits once the places are checked: a small integer.
    kept = len(digits)
    while digits[kept - 1] == 0:
        kept -= 1
    shift = exponent + (len(digits) - kept) + _NANO_PLACES
    if shift < 0:
        raise ValueError(_too_precise(original))
    nanos = int("".join(map(str, digits[:kept]))) * 10**shift
    if nanos > _MAX_NANOS:
        raise ValueError(_too_large(original))
    return nanos


def decimal_to_nanos(amount: Decimal) -> int:
    """Round an exact ``Decimal`` USD amount to the nearest nano-USD, ties to even.

    This is the one place where money is rounded on purpose: prices computed from
    per-token rates can have more than 9 decimal places (e.g. 1 token at $0.075/MTok =
    $0.000000075 is exact, but 1 token at $0.0375/MTok = $0.0000000375 is not). Banker's
    rounding (ROUND_HALF_EVEN) is unbiased over many events. Raises ``ValueError`` for
    NaN or infinities.
    """
    if not amount.is_finite():
        raise ValueError(f"amount must be finite: {amount!r}")
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + _NANO_PLACES
    if shift >= 0:
        nanos = coefficient * 10**shift
    else:
        nanos = round_half_even_div(coefficient, 10**-shift)
    return -nanos if sign else nanos


def round_half_even_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to an integer, ties to even (denominator > 0)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def _check_nanos(nanos: int) -> None:
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise TypeError(f"nanos must be an int, not {type(nanos).__name__}: {_show(nanos)}")


def nanos_to_usd(nanos: int) -> float:
    """Nano-USD as a float in USD (the nearest float; for display in APIs only).

    For amounts below $1,000,000 the float's ``repr`` is exactly the decimal amount,
    so ``usd_to_nanos(nanos_to_usd(n)) == n``.
    """
    _check_nanos(nanos)
    return nanos / NANOS_PER_USD  # int / int is correctly rounded


def nanos_to_decimal(nanos: int) -> Decimal:
    """Nano-USD as an exact ``Decimal`` in USD, 9 decimal places (7500000 → ``0.007500000``)."""
    _check_nanos(nanos)
    return Decimal(f"{nanos}e-9")


def format_usd(nanos: int, places: int = 6) -> str:
    """Format nano-USD as a dollar string, e.g. ``format_usd(7_500_000) == "$0.007500"``.

    ``places`` (0-9) decimal places are shown; extra precision is rounded half-even.
    Negative amounts (e.g. differences) render as ``"-$1.50"``.
    """
    _check_nanos(nanos)
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= _NANO_PLACES:
        raise ValueError(f"places must be an int from 0 to 9, got {places!r}")
    units = round_half_even_div(abs(nanos), 10 ** (_NANO_PLACES - places))
    sign = "-" if nanos < 0 and units else ""
    whole, fraction = divmod(units, 10**places)
    if places == 0:
        return f"{sign}${whole}"
    return f"{sign}${whole}.{fraction:0{places}d}"
