"""A project's price overrides (``ledger.model.price_overrides``, ``ledger.core.prices``):
the row in force at an event's ``ts`` prices it to the nano-dollar, a discount applies to
the packaged price, the ``price_id`` names the exact row by its content hash, the batch
path prices exactly as the per-event path, bad rows are refused with nothing changed,
and a project without overrides is priced exactly as before."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import orjson
import pytest

from ledger import Ledger
from ledger.errors import ConfigError, InvalidRequestError
from ledger.model.batch import prepare_batch
from ledger.model.event import ts_to_us
from ledger.model.price_overrides import (
    OverridePricer,
    OverrideTable,
    parse_row,
    parse_rows,
)
from ledger.model.pricing import GENAI_PRICES_VERSION, PriceBook

BOOK = PriceBook()
JAN = datetime(2026, 1, 15, tzinfo=UTC)
JUL = datetime(2026, 7, 15, tzinfo=UTC)
ROWS = [
    {"provider": "openai", "model": "gpt-4o", "since": "2026-01-01",
     "input": "2.00", "output": "8.00"},
    {"provider": "openai", "model": "gpt-4o", "since": "2026-06-01",
     "input": "1.5", "cached_input": "0.75", "output": "6", "request": "0.000001"},
    {"provider": "openai", "model": "gpt-4o-mini*", "discount": "15"},
    {"provider": "anthropic", "model": "*", "discount": "12.5"},
]


def pricer(rows: list[dict[str, str]] = ROWS, project: str = "acme") -> OverridePricer:
    return OverridePricer(BOOK, OverrideTable(project, parse_rows(rows)))


def usd_nanos(usd: Decimal) -> int:
    return int((usd * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_the_row_in_force_at_the_call_prices_it_to_the_nano_dollar() -> None:
    """Before the change date the first row's rates apply, from it the second's; the
    price_id names the row by its hash and its effective date."""
    p = pricer()
    first, second = parse_row(ROWS[0]), parse_row(ROWS[1])
    # 1,000,003 input (200,001 cached), 77,777 output
    jan = p.price("openai", "gpt-4o", 1_000_003, 77_777, 200_001, 0, 0, JAN)
    want = (Decimal(1_000_003) * Decimal("2") + Decimal(77_777) * Decimal("8")) / 10**6
    assert jan is not None and jan.cost_nanos == usd_nanos(want) == 2_622_222_000
    assert jan.price_id == f"override/acme/{first.id}/openai/gpt-4o;since=2026-01-01"
    jul = p.price("openai", "gpt-4o", 1_000_003, 77_777, 200_001, 0, 0, JUL)
    want = (Decimal(800_002) * Decimal("1.5") + Decimal(200_001) * Decimal("0.75")
            + Decimal(77_777) * 6) / 10**6 + Decimal("0.000001")
    assert jul is not None and jul.cost_nanos == usd_nanos(want) == 1_816_666_750
    assert jul.price_id == f"override/acme/{second.id}/openai/gpt-4o;since=2026-06-01"
    # the change is at 00:00 UTC of the day
    edge = datetime(2026, 6, 1, tzinfo=UTC)
    before = p.price("openai", "gpt-4o", 10, 1, 0, 0, 0, ts_to_us(edge) - 1)
    at = p.price("openai", "gpt-4o", 10, 1, 0, 0, 0, edge)
    assert before is not None and first.id in before.price_id
    assert at is not None and second.id in at.price_id


def test_before_the_first_row_the_packaged_price_applies_unchanged() -> None:
    early = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    got = pricer().price("openai", "gpt-4o", 1000, 100, 0, 0, 0, early)
    assert got == BOOK.price("openai", "gpt-4o", 1000, 100, 0, 0, 0, early)
    assert got is not None and got.price_id == f"genai-prices/{GENAI_PRICES_VERSION}/openai/gpt-4o"


def test_a_discount_applies_to_the_packaged_price() -> None:
    """15% off gpt-4o-mini* (a glob), 12.5% off every anthropic model: the packaged
    nano-USD cost × (100 − P)/100, rounded half to even; the id says so."""
    p = pricer()
    for provider, model, pct, row in (("openai", "gpt-4o-mini", "15", ROWS[2]),
                                      ("anthropic", "claude-3-5-haiku-latest", "12.5",
                                       ROWS[3])):
        base = BOOK.price(provider, model, 12_345, 678, 1_000, 0, 0, JUL)
        got = p.price(provider, model, 12_345, 678, 1_000, 0, 0, JUL)
        assert base is not None and got is not None
        assert got.cost_nanos == usd_nanos(Decimal(base.cost_nanos) / 10**9
                                           * (100 - Decimal(pct)) / 100)
        assert got.price_id == (f"{base.price_id};discount={pct}%;override=acme/"
                                f"{parse_row(row).id}")
    # a model genai-prices does not know stays unpriced under a discount
    assert p.price("anthropic", "no-such-model", 1, 1, 0, 0, 0, JUL) is None


def test_the_most_specific_series_in_force_wins() -> None:
    rows = [{"provider": "*", "model": "*", "input": "9", "output": "9"},
            {"provider": "openai", "model": "*", "input": "5", "output": "5"},
            {"provider": "openai", "model": "gpt-4*", "input": "4", "output": "4"},
            {"provider": "openai", "model": "gpt-4o*", "input": "3", "output": "3"},
            {"provider": "openai", "model": "gpt-4o", "since": "2026-06-01",
             "input": "1", "output": "1"}]
    p = pricer(rows)

    def rate(provider: str, model: str, at: datetime) -> int:
        got = p.price(provider, model, 10**6, 0, 0, 0, 0, at)
        assert got is not None
        return got.cost_nanos // 10**9

    assert rate("openai", "gpt-4o", JUL) == 1  # exact name
    assert rate("OpenAI", "gpt-4o", JAN) == 3  # its series is not in force yet: next glob
    assert rate("openai", "gpt-4-turbo", JUL) == 4
    assert rate("openai", "o3", JUL) == 5
    assert rate("mistral", "anything", JUL) == 9


def test_the_row_id_is_a_hash_of_the_content() -> None:
    a = parse_row({"provider": "OpenAI", "model": "gpt-4o", "input": "2.50", "output": "10"})
    same = parse_row({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": 10})
    edited = parse_row({"provider": "openai", "model": "gpt-4o", "input": "2.5",
                        "output": "10.000000001"})
    assert a.id == same.id and len(a.id) == 16
    assert edited.id != a.id


@pytest.mark.parametrize(("rows", "words"), [
    ([{"provider": "openai", "model": "m", "input": "-1", "output": "1"}], "negative"),
    ([{"provider": "openai", "model": "m", "input": 2.5, "output": "1"}], "inexact"),
    ([{"provider": "openai", "model": "m", "input": "0.0000000000001", "output": "1"}],
     "more than 12 decimal places"),
    ([{"provider": "openai", "model": "m", "input": "1", "output": "1", "colour": "red"}],
     "unknown fields 'colour'"),
    ([{"provider": "openai", "model": "m", "input": "1"}], "both input and output"),
    ([{"provider": "openai", "model": "m"}], "give rates"),
    ([{"provider": "openai", "model": "m", "discount": "101"}], "at most 100"),
    ([{"provider": "openai", "model": "m", "since": "2026-02-30", "discount": "1"}],
     "since must be a date"),
    ([{"provider": "openai", "model": "m", "since": "2026-01-01", "discount": "1"},
      {"provider": "OPENAI", "model": "m", "since": "2026-01-01", "input": "1",
       "output": "1"}], "rows[0] and rows[1] overlap"),
    ("not a list", "must be a list"),
])
def test_bad_rows_are_refused_naming_the_problem(rows: object, words: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_rows(rows)
    assert words in str(info.value)


def test_the_batch_path_prices_as_the_per_event_path() -> None:
    """Columns (``price_columns``) and one-by-one (``price``) agree on every event, for
    override rows, discounts, packaged fallbacks, unknown models and refused counts."""
    rng = random.Random(7)
    p = pricer()
    models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic",
              "claude-3-5-haiku-latest"), ("google", "gemini-2.5-pro"), ("x", "unknown")]
    events = []
    for n in range(400):
        provider, model = rng.choice(models)
        inp = rng.randrange(0, 300_000)
        cached = rng.randrange(0, inp + 2)  # sometimes more than input: refused
        out = rng.randrange(0, 5000)
        month = rng.randrange(1, 13)
        events.append({"event_id": f"e{n}", "provider": provider, "model": model,
                       "input_tokens": inp, "cached_input_tokens": cached,
                       "output_tokens": out, "ts": f"2026-{month:02d}-03T04:05:06Z"})
    batch = prepare_batch(events, tenant="acme", received_us=0, pricer=p)
    one_by_one = [prepare_batch([e], tenant="acme", received_us=0, pricer=p)
                  for e in events]
    assert batch.cost_nanos == [b.cost_nanos[0] for b in one_by_one]
    assert batch.price_id == [b.price_id[0] for b in one_by_one]
    assert batch.leaf_hash == [b.leaf_hash[0] for b in one_by_one]
    assert any(pid and pid.startswith("override/") for pid in batch.price_id)
    assert any(pid and ";discount=15%" in pid for pid in batch.price_id)
    assert "unpriced" in batch.cost_source


def test_a_project_without_overrides_is_priced_as_before(tmp_path: Path) -> None:
    with Ledger(tmp_path / "d") as led:
        assert led.prices.pricer_for("acme") is led.pricer
        ack = led.append({"provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
                          "output_tokens": 100}, tenant="acme")
        assert led.get("acme", ack.event_id).price_id == (
            f"genai-prices/{GENAI_PRICES_VERSION}/openai/gpt-4o")
        assert not led.layout.prices.exists()


def test_overrides_price_new_events_only_and_a_client_cost_stays(tmp_path: Path) -> None:
    call = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
            "output_tokens": 100, "ts": "2026-03-01T00:00:00Z"}
    with Ledger(tmp_path / "d") as led:
        before = led.append({**call, "event_id": "before"}, tenant="acme")
        led.prices.set("acme", parse_rows(ROWS[:1]))
        after = led.append({**call, "event_id": "after"}, tenant="acme")
        sent = led.append({**call, "event_id": "sent", "cost": "0.5"}, tenant="acme")
        other = led.append({**call, "event_id": "other"}, tenant="other")
        assert before.cost_nanos == 3_500_000  # packaged, not repriced
        assert after.cost_nanos == 2_800_000
        assert sent.cost_nanos == 500_000_000
        assert other.cost_nanos == 3_500_000  # another project's prices are its own
        assert led.get("acme", "after").price_id.startswith("override/acme/")
        assert led.get("acme", "sent").price_id is None
    with Ledger(tmp_path / "d") as led:  # read back from the file after a restart
        again = led.append({**call, "event_id": "again"}, tenant="acme")
        assert again.cost_nanos == 2_800_000


def test_a_refused_change_changes_nothing(tmp_path: Path) -> None:
    with Ledger(tmp_path / "d") as led:
        led.prices.set("acme", parse_rows(ROWS))
        path = led.layout.price_file("acme")
        stored = path.read_bytes()
        with pytest.raises(InvalidRequestError):
            led.prices.set("acme", parse_rows([{"provider": "openai", "model": "gpt-4o",
                                                "since": "2026-01-01"}]))
        assert path.read_bytes() == stored
        assert led.prices.table("acme")[0] == 1


def test_a_tampered_file_is_not_trusted(tmp_path: Path) -> None:
    with Ledger(tmp_path / "d") as led:
        led.prices.set("acme", parse_rows(ROWS[:1]))
        path = led.layout.price_file("acme")
    data = orjson.loads(path.read_bytes())
    data["rows"][0]["input"] = "0.01"  # the id no longer matches
    path.write_bytes(orjson.dumps(data))
    with Ledger(tmp_path / "d") as led, pytest.raises(ConfigError, match="does not match"):
        led.append({"provider": "openai", "model": "gpt-4o", "input_tokens": 1,
                    "output_tokens": 1}, tenant="acme")
