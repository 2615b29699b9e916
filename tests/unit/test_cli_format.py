"""How the CLI shows costs and counts to people: every significant digit of a cost (a
small one is never $0.0000), exact, and words in the singular for one."""

from __future__ import annotations

import pytest

from ledger.cli.context import plural, usd


@pytest.mark.parametrize(("nanos", "shown"), [
    (0, "$0.0000"),
    (1, "$0.000000001"),
    (7_500, "$0.0000075"),
    (7_500_000, "$0.0075"),
    (1_500_000_000, "$1.5000"),
    (15_500_360_000, "$15.50036"),
    (17_450_000_001, "$17.450000001"),
    (-2_500_000, "-$0.0025"),
])
def test_a_cost_shows_its_significant_digits(nanos: int, shown: str) -> None:
    assert usd(nanos) == shown


def test_places_is_a_minimum() -> None:
    assert usd(7_500_000, 6) == "$0.007500"
    assert usd(123, 6) == "$0.000000123"


@pytest.mark.parametrize(("n", "word", "shown"), [
    (0, "call", "0 calls"), (1, "call", "1 call"), (2, "conversation", "2 conversations"),
    (1_000, "call", "1,000 calls")])
def test_plurals(n: int, word: str, shown: str) -> None:
    assert plural(n, word) == shown
