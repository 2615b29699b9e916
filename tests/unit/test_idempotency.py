"""Idempotency holds whatever shape a caller's id has and whatever was lost since: an id in
the ledger's generated shape (``…-71ed-…``) whose time is not its event's is found again
after the id index is rebuilt (docs/decisions.md, "Generated ids"), an index written by
older rules is rebuilt, and a conversation event sent without a conversation id is the
same event when retried ("Conversation ids")."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from ledger import IdConflictError, Ledger
from ledger.api.service import LedgerService
from ledger.core.audit import verify_directory
from ledger.model.event import is_generated_id, locates_itself, new_event_id, ts_to_us
from ledger.storage.content import content_sha256
from ledger.storage.layout import DataDir
from tests.conftest import usage

# The generated shape, with a time (2024-06-01) that is not the ts the events are sent with.
ELSEWHERE = new_event_id(1_717_200_000_000)
TS = "2025-10-01T12:00:00Z"


def client_ids(n: int) -> list[str]:
    """``n`` ids in the generated shape whose time is not ``TS``."""
    return [new_event_id(1_717_200_000_000 + k) for k in range(n)]


def drop_index(data: Path) -> None:
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        for project in (data / "projects").iterdir():
            (project / name).unlink(missing_ok=True)



def test_only_a_generated_shape_with_its_own_time_locates_itself() -> None:
    """Only such an id can be found by the day it names (every id the ledger makes is)."""
    at = ts_to_us(datetime.fromisoformat(TS))
    own = new_event_id(at // 1000)
    assert is_generated_id(ELSEWHERE) and is_generated_id(own)
    assert locates_itself(own, at)
    assert not locates_itself(ELSEWHERE, at)
    assert not locates_itself("call-1", at)


def test_a_generated_shape_id_with_another_ts_is_a_repeat_after_the_index_is_lost(
        ledger_dir: Path) -> None:
    """The adversary's case: sent, sealed, index.sqlite deleted, reopened, sent again."""
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        first = led.append(usage(event_id=ELSEWHERE, ts=TS), tenant="a")
    drop_index(ledger_dir)  # a derived file: rebuilt from the sealed segments on open
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        again = led.append(usage(event_id=ELSEWHERE, ts=TS), tenant="a")
        assert again.seq == first.seq and again.created is False
        with pytest.raises(IdConflictError):
            led.append(usage(event_id=ELSEWHERE, ts=TS, model="other"), tenant="a")
        assert led.get("a", ELSEWHERE) is not None
        assert led.size("a") == 1
    report = verify_directory(ledger_dir)
    assert report.ok, report.problems


def test_a_batch_of_such_ids_is_stored_once_after_the_index_is_lost(
        ledger_dir: Path, loops: str) -> None:
    """The same through the batch paths: the column pass (C or Python) and one by one."""
    events = [usage(event_id=e, ts=TS, input_tokens=k) for k, e in enumerate(client_ids(300))]
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        assert all(a.created for a in led.append_many(events, tenant="a"))
        assert not any(a.created for a in led.append_many(events[:5], tenant="a"))
    drop_index(ledger_dir)
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        again = led.append_many(events, tenant="a")  # one column pass: C or Python loops
        few = led.append_many(events[:5], tenant="a")  # the per-event path
        assert not any(a.created for a in [*again, *few])
        assert [a.seq for a in again] == list(range(300))
        assert led.size("a") == 300
    assert verify_directory(ledger_dir).ok


@pytest.mark.parametrize("version", [None, "0"])
def test_an_index_written_by_other_rules_is_rebuilt(ledger_dir: Path, version: str | None
                                                    ) -> None:
    """The first rules (no version recorded) rebuilt an index without these ids; a file
    of any other version than this one's is rebuilt on open."""
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        led.append(usage(event_id=ELSEWHERE, ts=TS), tenant="a")
    with sqlite3.connect(DataDir(ledger_dir).project("a").index) as db:  # what the older rules left
        db.execute("DELETE FROM ids WHERE event_id = ?", (ELSEWHERE,))
        db.execute("DELETE FROM meta WHERE key = 'version'")
        if version is not None:
            db.execute("INSERT INTO meta VALUES ('version', ?)", (version,))
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        assert led.append(usage(event_id=ELSEWHERE, ts=TS), tenant="a").created is False
        assert led.size("a") == 1


def test_a_conversation_event_without_conversation_id_is_the_same_event_when_retried(
        ledger: Ledger, loops: str) -> None:
    """Its conversation id comes from its event id: a blind retry is a repeat, alone or
    in a batch, and different events still start different conversations."""
    conv = usage(event_id="conv-1", kind="conversation")
    first = ledger.append(conv, tenant="a")
    again = ledger.append(conv, tenant="a")
    assert again.created is False and again.conversation_id == first.conversation_id
    many = [usage(event_id=f"conv-b{k}", kind="conversation") for k in range(8)]
    acks = ledger.append_many(many, tenant="a")
    retried = ledger.append_many(many, tenant="a")
    assert [a.conversation_id for a in retried] == [a.conversation_id for a in acks]
    assert not any(a.created for a in retried)
    assert len({a.conversation_id for a in acks}) == 8
    assert ledger.size("a") == 9


def test_a_refused_conversation_write_stores_no_content(ledger_dir: Path) -> None:
    """Content is stored for an accepted event only (a repeat answers the same)."""
    service = LedgerService(ledger_dir)
    try:
        meta = {**usage(), "event_id": "conv-1"}
        asked = [{"role": "user", "content": "hello"}]
        first = service.log_conversation("a", messages=asked, response="hi", metadata=meta)
        again = service.log_conversation("a", messages=asked, response="hi", metadata=meta)
        assert again == first
        other = [{"role": "user", "content": "something private"}]
        with pytest.raises(IdConflictError):
            service.log_conversation("a", messages=other, response="hi", metadata=meta)
        layout = DataDir(ledger_dir)
        assert not layout.content_file("a", content_sha256(other, "hi")).exists()
        assert layout.content_file("a", first["content_sha256"]).exists()
        assert service.ledger.size("a") == 1
    finally:
        service.close()
