"""Small appends submitted from an event loop (``Ledger.submit``, the server's fast path):
the requests waiting together in one round of the committer are appended as one batch,
one journal write for the round, and each is still all or nothing: a request that
conflicts fails alone, the others are appended one by one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger.core.appender import SMALL_APPEND
from ledger.core.facade import Ledger, LedgerError
from ledger.model.event import IdConflictError
from ledger.storage import journal as jr
from tests.conftest import usage


def commits(led: Ledger) -> int:
    """Journal writes so far: each ends with one commit frame."""
    return led.journal.path.read_bytes().count(jr.COMMIT_FRAME)


async def one_round(led: Ledger, requests: Sequence[list[dict[str, Any]]]) -> list[Any]:
    """Submit ``requests`` so that all but the first wait together for one round: the
    first is taken by the committer, which then waits for the write lock held here."""
    with led._lock:
        first = led.submit(requests[0], tenant="a")
        deadline = time.monotonic() + 10
        while led.appender._queue:  # until the committer has taken the first request
            assert time.monotonic() < deadline
            time.sleep(0.001)
        rest = [led.submit(r, tenant="a") for r in requests[1:]]
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_a_round_of_requests_is_one_journal_write(tmp_path: Path) -> None:
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        before = commits(led)
        results = asyncio.run(one_round(led, [[usage(event_id=f"r{k}")] for k in range(9)]))
        assert [a.seq for acks in results for a in acks] == list(range(9))
        assert all(a.created for acks in results for a in acks)
        assert commits(led) == before + 2  # the first request, then the other eight
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:  # durable, once each
        assert led.size("a") == 9
        assert sorted(e.event_id for e in led.events("a", limit=100)) == sorted(
            f"r{k}" for k in range(9))


def test_a_conflicting_request_fails_alone(tmp_path: Path) -> None:
    with Ledger(tmp_path / "d", checkpoint_interval=None) as led:
        led.append(usage(event_id="stored"), tenant="a")
        before = commits(led)
        requests = [[usage(event_id="first")],
                    [usage(event_id="x1")],
                    [usage(event_id="stored", model="another")],  # conflicts
                    [usage(event_id="x2"), usage(event_id="x3")],
                    [usage(event_id="x1")],  # an identical repeat: the same ack again
                    [usage(event_id="stored")]]  # an identical repeat of a stored one
        first, x1, conflict, pair, again, stored = asyncio.run(one_round(led, requests))
        assert isinstance(conflict, IdConflictError)
        assert [a.seq for acks in (first, x1, pair) for a in acks] == [1, 2, 3, 4]
        assert (again[0].seq, again[0].created) == (2, False)
        assert (stored[0].seq, stored[0].created) == (0, False)
        # the round was refused as one batch, so each request was appended alone
        assert commits(led) == before + 3
        assert led.size("a") == 5


def test_submit_takes_small_appends_on_an_open_ledger(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "d", checkpoint_interval=None)

    async def submit(n: int) -> Any:
        return await led.submit([usage() for _ in range(n)], tenant="a")

    with pytest.raises(ValueError, match="fewer than"):
        asyncio.run(submit(SMALL_APPEND))
    assert len(asyncio.run(submit(SMALL_APPEND - 1))) == SMALL_APPEND - 1
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        asyncio.run(submit(1))
