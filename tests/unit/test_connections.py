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


class _Recorder:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_an_answer_leaves_in_one_write_and_a_head_alone_within_a_loop_turn() -> None:
    import asyncio

    from ledger.server.connections import _OneSend

    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"

    async def main() -> None:
        sent = _Recorder()
        one = _OneSend(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
        one.write(head)
        one.write(b"{}")
        assert sent.writes == [head + b"{}"]
        one.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # an interim answer goes at once
        assert sent.writes[-1] == b"HTTP/1.1 100 Continue\r\n\r\n"
        one.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no body follows
        await asyncio.sleep(0)  # the loop's next turn
        assert sent.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
        one.write(head)
        one.close()  # a closing connection writes what it holds first
        assert sent.writes[-1] == head and sent.closed and one.is_closing()
        assert len(sent.writes) == 4

    asyncio.run(main())
