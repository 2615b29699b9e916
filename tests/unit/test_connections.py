"""The connection cap of ``llmring serve`` (docs/cli.md#running-a-server) leaves file
descriptors for the ledger's own files, even while one burst of accepts (at most the
listen backlog) lands on a server already at its cap."""

from __future__ import annotations

import pytest

from ledger.server.connections import ConnectionLimits

LIMITS = ConnectionLimits(idle_timeout=5, header_timeout=10, body_timeout=60)


@pytest.mark.parametrize("fds", [256, 1024, 4096, 20_000, 1 << 20])
def test_the_default_cap_and_a_full_backlog_leave_a_reserve_for_the_ledger(fds: int) -> None:
    cap, backlog = LIMITS.capacity(fds)
    assert cap >= fds // 2
    assert fds - (cap + backlog) >= min(128, fds // 4)


def test_max_connections_lowers_the_cap_but_never_raises_it() -> None:
    assert ConnectionLimits(5, 10, 60, max_connections=100).capacity(1024) == (100, 128)
    assert ConnectionLimits(5, 10, 60, max_connections=5000).capacity(1024) == (768, 128)
