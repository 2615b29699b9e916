"""The one durability check of the crash tests: after a kill, every acknowledged event is
stored exactly once, seqs are gap-free, every batch is wholly present or wholly absent (a
batch's ids carry its size: ``…-b<i>x<n>-<j>``), and the directory verifies."""

from __future__ import annotations

from pathlib import Path

from ledger import Ledger
from ledger.core.audit import verify_directory


def assert_nothing_acknowledged_lost(data: Path, acked: set[str], run: int) -> None:
    with Ledger(data, pricer=None) as led:
        seen: dict[str, int] = {}
        for tenant in led.tenants():
            size = led.size(tenant)
            events = led.events(tenant, limit=size + 1)
            assert [e.seq for e in events] == list(range(size)), "seq not gap-free"
            for e in events:
                seen[e.event_id] = seen.get(e.event_id, 0) + 1
    missing = acked - seen.keys()
    assert not missing, f"run {run}: acknowledged events lost: {sorted(missing)[:5]}"
    twice = [e for e, n in seen.items() if n > 1]
    assert not twice, f"run {run}: events stored twice: {twice[:5]}"
    members: dict[str, int] = {}
    for e in seen:
        if "-b" in e:
            prefix = e.rsplit("-", 1)[0]
            members[prefix] = members.get(prefix, 0) + 1
    for prefix, n in members.items():
        assert n == int(prefix.rsplit("x", 1)[1]), f"run {run}: batch {prefix} is partial"
    report = verify_directory(data)
    assert report.ok, f"run {run}: {[str(p) for p in report.problems]}"
