"""Receipts through the embedded API: selection modes, validation, summaries, listings,
overlaps, concurrency, and the users' guide patterns (docs/formats.md)."""

from __future__ import annotations

import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import NothingToCertifyError
from ledger.receipts.issuance import ReceiptNotFoundError, ReceiptRequestError, Receipts
from tests.conftest import usage


def call(day: int, hour: int = 12, **overrides: Any) -> dict[str, Any]:
    return usage(ts=f"2025-10-{day:02d}T{hour:02d}:00:00Z", **overrides)


@pytest.fixture
def receipts(ledger: Ledger) -> Receipts:
    return Receipts(ledger)


def state(ledger: Ledger, receipts: Receipts, tenant: str = "default") -> tuple:
    return (ledger.size(tenant), receipts.list(tenant)["total"],
            sorted(p.name for p in (ledger.path / "checkpoints").glob("*")))


# -- selection modes -----------------------------------------------------------------------
def test_since_last_certifies_every_uncertified_event(ledger: Ledger, receipts: Receipts):
    ledger.append_many([call(d) for d in range(1, 6)])
    result = receipts.generate(since_last_receipt=True)
    assert result["certified_count"] == 5
    assert result["receipt"]["scope"] == {"mode": "since_last"}
    assert receipts.uncertified()["total"] == 0


def test_since_last_skips_events_certified_by_an_earlier_receipt(ledger, receipts):
    ledger.append_many([call(1), call(2)])
    receipts.generate(since_last_receipt=True)
    ledger.append_many([call(3), call(4), call(5)])
    assert receipts.generate(since_last_receipt=True)["certified_count"] == 3


def test_conversation_mode_certifies_that_conversations_events(ledger, receipts):
    ledger.append_many([call(1, conversation_id="c1"), call(2, conversation_id="c2"),
                        call(3, conversation_id="c1")])
    result = receipts.generate(conversation_id="c1", description="Conversation receipt")
    assert result["certified_count"] == 2
    assert result["receipt"]["scope"] == {"mode": "conversation", "conversation_id": "c1"}


def test_date_only_end_includes_the_whole_end_day(ledger, receipts):
    ledger.append_many([call(1, 0), call(31, 23), call(30, 9)])
    ledger.append(usage(ts="2025-11-01T00:00:00Z"))
    result = receipts.generate(start_date="2025-10-01", end_date="2025-10-31")
    assert result["certified_count"] == 3
    assert result["receipt"]["scope"]["end_date"] == "2025-11-01T00:00:00.000000Z"


def test_datetime_end_is_exclusive_and_naive_datetimes_are_utc(ledger, receipts):
    ledger.append_many([call(1, 10), call(1, 11)])
    p = receipts.preview(start_date=datetime(2025, 10, 1, 10), end_date=datetime(2025, 10, 1, 11))
    assert p["total_logs"] == 1


def test_date_objects_are_whole_days(ledger, receipts):
    ledger.append_many([call(1), call(2), call(3)])
    assert receipts.preview(start_date=date(2025, 10, 1),
                            end_date=date(2025, 10, 2))["total_logs"] == 2


def test_explicit_log_ids_certify_exactly_those_events(ledger, receipts):
    acks = ledger.append_many([call(d) for d in range(1, 6)])
    ids = [acks[1].event_id, acks[3].event_id]
    result = receipts.generate(log_ids=ids)
    assert result["certified_count"] == 2
    logs = receipts.logs("default", result["receipt"]["receipt_id"])["logs"]
    assert [log["id"] for log in logs] == ids
    assert len(result["receipt"]["scope"]["log_ids_sha256"]) == 64


def test_a_paired_usage_log_id_resolves_to_its_conversation_event(ledger, receipts):
    conv = ledger.append(usage(kind="conversation", conversation_id="conv-1",
                               ts="2025-10-01T10:00:00Z"))
    paired = ledger.append(usage(event_id="usage-1", id_at_origin="conv-1"))
    assert paired.event_id == conv.event_id
    result = receipts.generate(log_ids=["usage-1"])
    assert result["certified_count"] == 1
    assert receipts.logs("default", result["receipt"]["receipt_id"])["logs"][0]["id"] == \
        conv.event_id


# -- bad requests: a clear error, nothing written --------------------------------------------
@pytest.mark.parametrize(("request_fields", "message"), [
    ({}, "give exactly one of"),
    ({"since_last_receipt": True, "conversation_id": "c1"}, "exactly one selection mode"),
    ({"start_date": "2025-10-05", "end_date": "2025-10-01"}, "must be before end_date"),
    ({"start_date": "2025-10-05"}, "needs both start_date and end_date"),
    ({"log_ids": ["nope-1", "nope-2"]}, "nope-1, nope-2"),
    ({"start_date": "01/10/2025", "end_date": "2025-10-31"}, "is not a date"),
])
def test_bad_request_is_a_clear_error_and_writes_nothing(ledger, receipts, request_fields,
                                                         message):
    ledger.append_many([call(1), call(2)])
    before = state(ledger, receipts)
    with pytest.raises(ReceiptRequestError, match=message):
        receipts.generate(**request_fields)
    with pytest.raises(ReceiptRequestError, match=message):
        receipts.preview(**request_fields)
    assert state(ledger, receipts) == before


@pytest.mark.parametrize("request_fields", [
    {"conversation_id": "no-such-conversation"},
    {"start_date": "2024-01-01", "end_date": "2024-01-31"},
])
def test_an_empty_selection_previews_as_zeros_and_generate_refuses_it_by_code(
        ledger, receipts, request_fields):
    """A selection with no logs is a quiet day: preview answers zero totals (count 0,
    cost 0, no breakdowns, no period); generate refuses with ``NothingToCertifyError``
    (a ``ReceiptRequestError``, code ``nothing_to_certify``); nothing is written."""
    ledger.append_many([call(1), call(2)])
    before = state(ledger, receipts)
    p = receipts.preview(**request_fields)
    assert (p["total_logs"], p["total_cost"], p["total_cost_nanos"], p["total_tokens"],
            p["unpriced_logs"]) == (0, 0.0, 0, 0, 0)
    assert p["by_model"] == {} and p["start_date"] is None and p["end_date"] is None
    with pytest.raises(NothingToCertifyError, match="nothing to certify") as info:
        receipts.generate(**request_fields)
    assert isinstance(info.value, ReceiptRequestError)
    assert info.value.code == "nothing_to_certify" and info.value.status == 400
    assert state(ledger, receipts) == before


def test_a_project_with_no_logs_is_named_as_such(ledger, receipts):
    """A mistyped project has no logs: the refusal says so, not "already certified"."""
    ledger.append(call(1))
    with pytest.raises(NothingToCertifyError) as info:
        receipts.generate("nosuchproject", since_last_receipt=True)
    assert "project 'nosuchproject' has no logs" in str(info.value)
    assert "already certified" not in str(info.value)
    assert receipts.preview("nosuchproject", since_last_receipt=True)["total_logs"] == 0


def test_since_last_with_nothing_uncertified_is_an_empty_set_error(ledger, receipts):
    ledger.append(call(1))
    receipts.generate(since_last_receipt=True)
    before = state(ledger, receipts)
    with pytest.raises(ReceiptRequestError, match="already certified"):
        receipts.generate(since_last_receipt=True)
    assert state(ledger, receipts) == before


def test_a_total_beyond_exact_json_integers_is_refused(ledger, receipts):
    ledger.append_many([call(1, cost="5000000"), call(2, cost="5000000")])
    before = state(ledger, receipts)
    with pytest.raises(ReceiptRequestError, match="smaller set"):
        receipts.generate(since_last_receipt=True)
    assert state(ledger, receipts) == before


def test_unknown_receipt_is_not_found(ledger, receipts):
    with pytest.raises(ReceiptNotFoundError, match="no receipt"):
        receipts.get("default", "rcpt_" + "0" * 32)


def test_paging_limits_are_checked(ledger, receipts):
    with pytest.raises(ReceiptRequestError, match="limit"):
        receipts.uncertified(limit=0)
    with pytest.raises(ReceiptRequestError, match="offset"):
        receipts.list(offset=-1)


# -- the receipt's content -----------------------------------------------------------------
def test_receipt_has_every_field_of_the_design(ledger, receipts):
    ledger.append_many([call(1, model="gpt-4o", alias="deep", conversation_id="a"),
                        call(2, provider="anthropic", model="claude", conversation_id="b")])
    r = receipts.generate(since_last_receipt=True, description="d", tags=["x", "y"])["receipt"]
    for name in ("receipt_id", "receipt_type", "timestamp", "tenant", "description", "tags",
                 "scope", "certified_count", "merkle_root", "hash_alg", "leaf_format",
                 "alias", "provider", "model", "profile", "lock_digest", "prompt_tokens",
                 "completion_tokens", "total_tokens", "input_cost", "output_cost",
                 "total_cost", "batch_summary", "log_checkpoint", "key_id", "signature"):
        assert name in r, name
    assert r["receipt_id"].startswith("rcpt_") and len(r["receipt_id"]) == 37
    assert r["receipt_type"] == "batch" and r["model"] == "batch:2 calls"
    assert r["hash_alg"] == "rfc9162-sha256" and r["leaf_format"] == 1
    assert r["signature"].startswith("ed25519:") and "=" not in r["signature"]
    assert r["timestamp"].endswith("Z")
    s = r["batch_summary"]
    assert set(s) >= {"total_calls", "total_conversations", "total_tokens", "total_cost",
                      "start_date", "end_date", "by_model", "by_alias", "by_provider",
                      "by_date"}
    assert s["by_model"]["gpt-4o"]["calls"] == 1
    assert s["by_provider"] == {
        "anthropic": {"calls": 1, "tokens": 1500, "cost": 0.00036, "cost_nanos": 360000,
                      "unpriced_calls": 0},
        "openai": {"calls": 1, "tokens": 1500, "cost": 0.00036, "cost_nanos": 360000,
                   "unpriced_calls": 0}}
    assert set(s["by_date"]) == {"2025-10-01", "2025-10-02"}
    assert r["total_cost_nanos"] == 720_000 and r["total_cost"] == 0.00072


def test_single_receipt_names_the_calls_model(ledger, receipts):
    ledger.append(call(1, model="gpt-4o", alias="deep"))
    r = receipts.generate(since_last_receipt=True)["receipt"]
    assert (r["receipt_type"], r["model"], r["alias"], r["provider"]) == (
        "single", "gpt-4o", "deep", "openai")


def test_log_checkpoint_is_the_log_just_before_the_receipt(ledger, receipts):
    ledger.append_many([call(1), call(2)])
    root_before = ledger.root()
    r = receipts.generate(since_last_receipt=True)["receipt"]
    assert r["log_checkpoint"] == {"origin": "llmring-ledger.local/default", "size": 2,
                                   "root": root_before.hex()}
    assert receipts.checkpoints.at_size("llmring-ledger.local/default", 2) is not None


def test_receipt_is_an_entry_of_the_tenants_log(ledger, receipts):
    ledger.append_many([call(1), call(2)])
    receipts.generate(since_last_receipt=True)
    assert ledger.size() == 3
    assert ledger.receipt_seqs("default") == [2]
    ledger.append(call(3))
    assert ledger.append(call(4)).seq == 4


def test_receipt_entries_are_not_events(ledger, receipts):
    ledger.append_many([call(1), call(2)])
    receipts.generate(since_last_receipt=True)
    ledger.append_many([call(3), call(4)])
    assert ledger.count() == 4
    assert [e.seq for e in ledger.events(limit=10)] == [0, 1, 3, 4]
    assert [e.seq for e in ledger.events(limit=2, offset=2)] == [3, 4]
    assert [e.seq for e in ledger.events(limit=3, order="-seq")] == [4, 3, 1]


def test_receipt_entries_are_not_counted_in_rollups(ledger, receipts):
    from projections.rollups import rollup

    ledger.append_many([call(1), call(2)])
    receipts.generate(since_last_receipt=True)
    rows = rollup(ledger.snapshot(), "default", by=[])
    assert rows[0].calls == 2 and rows[0].cost_nanos == 720_000


def test_preview_matches_what_generate_certifies(ledger, receipts):
    ledger.append_many([call(d, model=m) for d in (1, 2) for m in ("a", "b", "b")])
    p = receipts.preview(start_date="2025-10-01", end_date="2025-10-31")
    r = receipts.generate(start_date="2025-10-01", end_date="2025-10-31")["receipt"]
    assert p["total_logs"] == r["certified_count"] == 6
    assert p["by_model"] == r["batch_summary"]["by_model"]
    assert p["total_cost"] == r["total_cost"]


# -- overlaps and concurrency --------------------------------------------------------------
def test_monthly_receipt_overlaps_daily_receipts(ledger, receipts):
    ledger.append_many([call(d, model="m1" if d % 2 else "m2") for d in range(1, 11)])
    for day in range(1, 11):
        receipts.generate(start_date=f"2025-10-{day:02d}", end_date=f"2025-10-{day:02d}")
    monthly = receipts.generate(start_date="2025-10-01", end_date="2025-10-31",
                                description="October billing", tags=["billing", "monthly"])
    assert monthly["certified_count"] == 10
    assert monthly["receipt"]["batch_summary"]["by_model"]["m1"]["calls"] == 5
    assert receipts.list()["total"] == 11


def test_concurrent_since_last_generations_never_certify_an_event_twice(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        rc = Receipts(led)
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            n = 0
            while not stop.is_set():
                led.append_many([call(1 + n % 28) for _ in range(5)])
                n += 1

        def issuer() -> None:
            for _ in range(6):
                try:
                    rc.generate(since_last_receipt=True)
                except ReceiptRequestError:
                    continue  # another thread certified everything first: expected
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

        led.append_many([call(1) for _ in range(5)])  # something to certify from the start
        w = threading.Thread(target=writer)
        w.start()
        issuers = [threading.Thread(target=issuer) for _ in range(4)]
        for t in issuers:
            t.start()
        for t in issuers:
            t.join()
        stop.set()
        w.join()
        assert not errors
        seen: set[str] = set()
        listed = rc.list(limit=1000)["receipts"]
        assert listed
        for r in listed:
            ids = [log["id"] for log in rc.logs("default", r["receipt_id"], limit=1000)["logs"]]
            assert not seen & set(ids)
            seen |= set(ids)
        rc.generate(since_last_receipt=True)
        assert rc.uncertified()["total"] == 0


# -- listings ------------------------------------------------------------------------------
def test_uncertified_pages_in_seq_order_with_the_total(ledger, receipts):
    acks = ledger.append_many([call(1 + i % 20) for i in range(30)])
    receipts.generate(log_ids=[a.event_id for a in acks[5:10]])
    page = receipts.uncertified(limit=4, offset=3)
    assert page["total"] == 25
    assert [log["id"] for log in page["logs"]] == [a.event_id for a in
                                                  (acks[3], acks[4], acks[10], acks[11])]
    assert set(page["logs"][0]) >= {"id", "type", "alias", "provider", "model",
                                    "input_tokens", "output_tokens", "cost", "cost_source",
                                    "timestamp"}


def test_list_is_newest_first_and_get_returns_the_signed_receipt(ledger, receipts):
    ledger.append(call(1))
    first = receipts.generate(since_last_receipt=True)["receipt"]
    ledger.append(call(2))
    second = receipts.generate(since_last_receipt=True)["receipt"]
    page = receipts.list(limit=1)
    assert page["total"] == 2 and page["receipts"] == [second]
    assert receipts.list(limit=1, offset=1)["receipts"] == [first]
    assert receipts.get("default", first["receipt_id"]) == first


def test_receipt_logs_page_through_the_certified_events(ledger, receipts):
    acks = ledger.append_many([call(1 + i % 9) for i in range(12)])
    rid = receipts.generate(since_last_receipt=True)["receipt"]["receipt_id"]
    page = receipts.logs("default", rid, limit=5, offset=10)
    assert page["total"] == 12 and page["receipt_id"] == rid
    assert [log["id"] for log in page["logs"]] == [acks[10].event_id, acks[11].event_id]


def test_tenants_receipts_are_separate(ledger, receipts):
    ledger.append(call(1), tenant="a")
    ledger.append(call(1), tenant="b")
    ra = receipts.generate("a", since_last_receipt=True)["receipt"]
    assert receipts.uncertified("b")["total"] == 1
    with pytest.raises(ReceiptNotFoundError):
        receipts.get("b", ra["receipt_id"])


# -- survives reopening ---------------------------------------------------------------------
def test_receipts_and_membership_survive_seal_and_reopen(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        led.append_many([call(d) for d in range(1, 4)])
        rid = Receipts(led).generate(since_last_receipt=True)["receipt"]["receipt_id"]
        led.append(call(5))
    with Ledger(ledger_dir, pricer=None) as led:
        rc = Receipts(led)
        assert led.size() == 5
        assert rc.logs("default", rid)["total"] == 3
        assert rc.uncertified()["total"] == 1
        assert led.append(call(6)).seq == 5


# -- the guide's patterns ------------------------------------------------------------------
def test_guide_pattern_daily_since_last_batch_and_uncertified_cost(ledger, receipts):
    ledger.append_many([call(1, cost="0.25"), call(1, cost="0.5")])
    uncert = receipts.uncertified()
    assert uncert["total"] == 2
    assert sum(log.get("cost", 0) for log in uncert["logs"]) == 0.75
    assert uncert["total_cost"] == "0.750000000" and uncert["total_cost_nanos"] == 750_000_000
    assert uncert["unpriced_logs"] == 0
    result = receipts.generate(since_last_receipt=True, description="Daily batch "
                               "certification", tags=["daily", "compliance"])
    assert f"{result['receipt']['total_cost']:.2f}" == "0.75"
    assert result["receipt"]["batch_summary"]["by_model"]["gpt-4o-mini"]["calls"] == 2


def test_guide_pattern_preview_before_generate(ledger, receipts):
    ledger.append_many([call(3, cost="2.5"), call(4, cost="1.0")])
    preview = receipts.preview(start_date=datetime(2025, 10, 1), end_date=datetime(2025, 10, 31))
    assert preview["total_logs"] == 2 and preview["total_cost"] == 3.5
    budget = 10
    assert preview["total_cost"] < budget
    result = receipts.generate(start_date=datetime(2025, 10, 1), end_date=datetime(2025, 10, 31),
                               description="October billing")
    assert result["certified_count"] == 2
