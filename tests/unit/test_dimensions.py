"""Cost by who: metadata keys as report dimensions and filters, declared dimensions stored
as segment columns, and receipts of a metadata filter (docs/cli.md#metadata-dimensions,
docs/formats.md#declared-dimensions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ledger import Ledger
from ledger.api.service import LedgerService
from ledger.core import audit
from ledger.errors import ReceiptRequestError, RequestError, RollupError
from ledger.model.dimensions import DimensionNameError, value_of
from ledger.model.event import canonical_json
from ledger.model.schema import EVENT_SCHEMA
from ledger.receipts.verification import verify_bundle
from ledger.tlog.signing import encode_signature
from projections.rollups import rollup
from tests.conftest import usage


@contextmanager
def _service(tmp_path: Path) -> Iterator[LedgerService]:
    svc = LedgerService(tmp_path / "d")
    try:
        yield svc
    finally:
        svc.close()


CUSTOMERS = ["acme", "beta", 7, True, None, "acme", {"id": 1}, "beta", "acme"]


def _calls(start: int = 0) -> list[dict[str, Any]]:
    """One call per entry of CUSTOMERS (None: no customer key), costs all different."""
    out = []
    for i, customer in enumerate(CUSTOMERS):
        meta: dict[str, Any] = {"team": "search"}
        if customer is not None:
            meta["customer"] = customer
        out.append(usage(model="gpt-4o" if i % 2 else "gpt-4o-mini",
                         cost=f"0.{start + i + 1:09d}", metadata=meta))
    return out


def _expected(events: list[dict[str, Any]], by: tuple[str, ...]) -> dict[tuple, list[int]]:
    """(calls, cost_nanos) per group, computed from the submitted events in Python."""
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for ev in events:
        key = tuple(ev["model"] if d == "model" else value_of(ev["metadata"], d) for d in by)
        out[key][0] += 1
        out[key][1] += int(ev["cost"].replace("0.", ""))
    return dict(out)


def _got(rows: list[Any], by: tuple[str, ...]) -> dict[tuple, list[int]]:
    return {tuple(r.key[d] for d in by): [r.calls, r.cost_nanos] for r in rows}


def test_any_metadata_key_is_a_dimension_by_its_bare_or_meta_name(tmp_path: Path) -> None:
    """Strings group as themselves, other JSON values as their JSON text, calls without
    the key in one None group; the groups add up to the exact total."""
    events = _calls()
    with Ledger(tmp_path / "d", pricer=None) as led:
        led.append_many(events, tenant="p")
        snap = led.snapshot()
        bare = rollup(snap, "p", ["customer"])
        prefixed = rollup(snap, "p", ["meta.customer"])
        total = rollup(snap, "p", [])[0]
    assert _got(bare, ("customer",)) == _expected(events, ("customer",))
    assert {r.key["customer"] for r in bare} == {"acme", "beta", "7", "true", '{"id":1}', None}
    assert [r.key["meta.customer"] for r in prefixed] == [r.key["customer"] for r in bare]
    assert sum(r.cost_nanos for r in bare) == total.cost_nanos
    assert sum(r.calls for r in bare) == total.calls == len(events)


def test_reports_agree_whatever_shape_the_segments_have(tmp_path: Path) -> None:
    """Calls sealed before the key was declared (no column), after it (a column), still in
    the journal's tail (no column), and after compaction merged them: the same groups."""
    first, second, third = _calls(0), _calls(100), _calls(200)
    with Ledger(tmp_path / "d", pricer=None, auto_seal=False) as led:
        led.append_many(first, tenant="p")
        led.append_many(first[:2], tenant="other")
        led.flush()
        assert led.dimensions.set("p", ["customer", "team"]) == ["customer", "team"]
        led.append_many(second, tenant="p")
        led.append_many(first[2:4], tenant="other")
        led.flush()
        led.append_many(third, tenant="p")  # unsealed
        shapes = sorted(pq.read_schema(f).names[len(EVENT_SCHEMA.names):]
                        for f in led.snapshot().files("p"))
        assert shapes == [[], ["meta.customer", "meta.team"]]
        for f in led.snapshot().files("other"):  # a project declaring nothing: as before
            assert pq.read_schema(f).names == EVENT_SCHEMA.names
        everything = first + second + third
        by = ("customer", "model")
        assert _got(rollup(led.snapshot(), "p", list(by)), by) == _expected(everything, by)
        where = rollup(led.snapshot(), "p", ["model"], where={"customer": "acme"})
        assert sum(r.calls for r in where) == 3 * CUSTOMERS.count("acme")
        led.flush()
        led.compact(tenant="p")
        files = led.snapshot().files("p")
        assert len(files) == 1 and "meta.customer" in pq.read_schema(files[0]).names
        assert _got(rollup(led.snapshot(), "p", list(by)), by) == _expected(everything, by)
    report = audit.verify_directory(tmp_path / "d")
    assert report.problems == []


def test_a_tampered_dimension_column_is_found_by_verify() -> None:
    """``ledger verify`` recomputes each derived column from the metadata."""
    from ledger.storage.dimensions import with_dimensions
    from ledger.storage.segments import rows_to_table

    base = rows_to_table([])
    metadata = pa.array(['{"customer":"acme"}', '{"customer":"beta"}'])
    table = pa.table({n: (metadata if n == "metadata" else pa.nulls(2, base.schema.field(n).type))
                      for n in EVENT_SCHEMA.names})
    good = with_dimensions(table, ["customer"])
    report = audit.AuditReport()
    audit._check_dimensions(good, "seg", report)
    assert report.problems == []
    bad = good.set_column(good.schema.get_field_index("meta.customer"), "meta.customer",
                          pa.array(["acme", "acme"]))
    audit._check_dimensions(bad, "seg", report)
    assert [p.kind for p in report.problems] == ["segment-dimension"]


@pytest.mark.parametrize("name", ["meta.", "", "cust\x00omer", "a\u202eb", "k" * 129,
                                  "meta." + "k" * 129])
def test_a_bad_dimension_name_is_refused(tmp_path: Path, name: str) -> None:
    with Ledger(tmp_path / "d", pricer=None) as led:
        led.append_many(_calls(), tenant="p")
        with pytest.raises(RollupError):
            rollup(led.snapshot(), "p", [name] if name else ["model", name])


def test_declaring_a_bad_key_changes_nothing(tmp_path: Path) -> None:
    with _service(tmp_path) as svc:
        svc.set_dimensions("p", ["customer"])
        for keys in (["ok", ""], ["a,b"], ["x\x07"], [f"k{i}" for i in range(17)], [3]):
            with pytest.raises(RequestError):
                svc.set_dimensions("p", keys)
        assert svc.dimensions("p") == {"project": "p", "dimensions": ["customer"]}
        assert svc.dimensions("q")["dimensions"] == []


def test_an_export_can_be_filtered_by_metadata(tmp_path: Path) -> None:
    with _service(tmp_path) as svc:
        svc.log_batch("p", _calls())
        lines = svc.export("p", format="jsonl", where={"customer": "beta"}).splitlines()
        assert [orjson.loads(orjson.loads(x)["metadata"])["customer"] for x in lines] == \
            ["beta", "beta"]
        assert svc.export("p", where=["customer=7", "team=search"]).count(b"\n") == 1
        focus = svc.export("p", format="focus-csv", where={"customer": "acme"})
        assert len(focus.decode().splitlines()) == 1 + CUSTOMERS.count("acme")
        with pytest.raises(RequestError):
            svc.export("p", where={"customer": 7})


# -- receipts of a metadata filter ------------------------------------------------------------
def _ids_of(svc: LedgerService, receipt_id: str) -> set[str]:
    return {log["id"] for log in svc.receipt_logs("p", receipt_id, limit=1000)["logs"]}


def test_a_per_customer_receipt_certifies_exactly_that_customers_calls(tmp_path: Path
                                                                       ) -> None:
    with _service(tmp_path) as svc:
        acks = svc.log_batch("p", _calls())["logs"]
        by_customer = defaultdict(set)
        for ack, customer in zip(acks, CUSTOMERS, strict=True):
            by_customer[repr(customer)].add(ack["log_id"])
        preview = svc.preview_receipt("p", since_last_receipt=True,
                                      where={"customer": "acme"})
        assert preview["total_logs"] == 3 and preview["scope"]["where"] == {"customer": "acme"}
        made = svc.generate_receipt("p", since_last_receipt=True, where={"customer": "acme"})
        acme = made["receipt"]
        assert acme["scope"] == {"mode": "since_last", "where": {"customer": "acme"}}
        assert _ids_of(svc, acme["receipt_id"]) == by_customer["'acme'"]
        assert acme["total_cost_nanos"] == 1 + 6 + 9
        # the other customers' calls stay uncertified, for their own receipts
        assert svc.uncertified("p")["total"] == len(CUSTOMERS) - 3
        beta = svc.generate_receipt("p", since_last_receipt=True,
                                    where=["customer=beta"])["receipt"]
        assert _ids_of(svc, beta["receipt_id"]) == by_customer["'beta'"]
        with pytest.raises(ReceiptRequestError, match="customer=acme"):
            svc.generate_receipt("p", since_last_receipt=True, where={"customer": "acme"})
        # the first receipt is unaffected by the second: same logs, still verifies
        assert _ids_of(svc, acme["receipt_id"]) == by_customer["'acme'"]
        keys = svc.keyring.keys()
        for rid, ids in ((acme["receipt_id"], by_customer["'acme'"]),
                         (beta["receipt_id"], by_customer["'beta'"])):
            for log_id in ids:
                result = verify_bundle(svc.prove("p", rid, log_id), keys)
                assert result.valid, result.message
                assert "the event is within the receipt's scope" in result.checks
        rest = svc.generate_receipt("p", since_last_receipt=True)["receipt"]
        assert "where" not in rest["scope"]  # an unfiltered receipt: the scope as before
        assert rest["certified_count"] == len(CUSTOMERS) - 5


def test_a_filter_narrows_a_date_range_and_numbers_match_their_json_text(tmp_path: Path
                                                                          ) -> None:
    with _service(tmp_path) as svc:
        svc.log_batch("p", [{**e, "timestamp": "2025-10-01T12:00:00Z"} for e in _calls()])
        made = svc.generate_receipt("p", start_date="2025-10-01", end_date="2025-10-01",
                                    where={"customer": "7"})
        assert made["certified_count"] == 1
        assert made["receipt"]["scope"]["where"] == {"customer": "7"}
        assert made["receipt"]["scope"]["mode"] == "date_range"


@pytest.mark.parametrize("where", [{"customer": 7}, {"": "x"}, {"a\x01": "x"}, "acme",
                                   ["customer"], {"k" * 129: "v"}, {}])
def test_a_bad_filter_is_refused_and_nothing_is_written(tmp_path: Path, where: Any) -> None:
    with _service(tmp_path) as svc:
        svc.log_batch("p", _calls())
        size = svc.ledger.size("p")
        with pytest.raises(ReceiptRequestError):
            svc.generate_receipt("p", since_last_receipt=True, where=where or {"x": "\x00"})
        with pytest.raises(ReceiptRequestError):
            svc.preview_receipt("p", since_last_receipt=True, where=where or {"x": "\x00"})
        assert svc.ledger.size("p") == size and svc.list_receipts("p")["total"] == 0


def test_a_filter_cannot_narrow_explicit_log_ids(tmp_path: Path) -> None:
    with _service(tmp_path) as svc:
        ids = [a["log_id"] for a in svc.log_batch("p", _calls())["logs"]]
        with pytest.raises(ReceiptRequestError, match="log_ids"):
            svc.generate_receipt("p", log_ids=ids[:2], where={"customer": "acme"})
        assert svc.list_receipts("p")["total"] == 0


@pytest.mark.parametrize(("scope", "said"), [
    ({"mode": "since_last", "where": {"customer": "acme"}}, "scope.where"),
    ({"mode": "date_range", "start_date": "2000-01-01T00:00:00.000000Z",
      "end_date": "2000-01-02T00:00:00.000000Z"}, "outside the receipt's scope"),
    ({"mode": "conversation", "conversation_id": "another"}, "conversation"),
])
def test_the_verifier_refuses_an_event_outside_the_signed_scope(
        tmp_path: Path, scope: dict[str, Any], said: str) -> None:
    """A receipt signed by the ledger's key whose scope excludes a call it certifies (a
    beta call under ``customer=acme``, a call outside its dates or conversation): the
    bundle of that call fails the ``scope`` check."""
    with _service(tmp_path) as svc:
        acks = svc.log_batch("p", _calls())["logs"]
        rid = svc.generate_receipt("p", since_last_receipt=True)["receipt"]["receipt_id"]
        bundle = svc.prove("p", rid, acks[1]["log_id"])  # a beta call
        assert verify_bundle(bundle, svc.keyring.keys()).valid
        receipt = {k: v for k, v in bundle["receipt"].items() if k != "signature"}
        receipt["scope"] = scope
        key = svc.keyring.current()
        receipt["signature"] = encode_signature(key.sign(canonical_json(receipt,
                                                                       reference=True)))
        result = verify_bundle({**bundle, "receipt": receipt}, svc.keyring.keys())
        assert not result.valid and result.failed == "scope"
        assert said in result.message


def test_where_texts_are_parsed_strictly() -> None:
    from ledger.model.dimensions import parse_where_text

    assert parse_where_text(["customer=a=b", "meta.team=x"]) == {"customer": "a=b",
                                                                  "team": "x"}
    for bad in (["customer"], ["=x"], ["c=a", "c=b"]):
        with pytest.raises(DimensionNameError):
            parse_where_text(bad)
