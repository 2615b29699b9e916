"""The connections of ``llmring serve``: how long each phase of a connection may last and
how many connections may be open at once, so that a client that connects and sends
nothing, sends its request head slowly, or sends less body than it declared cannot hold a
file descriptor or a request for ever, and idle connections cannot use up the descriptors
the ledger needs for its own files.

``ConnectionLimits`` holds the settings (``llmring serve --idle-timeout --header-timeout
--body-timeout --max-connections``); ``uvicorn_options(limits)`` is what uvicorn runs
with: uvicorn's httptools protocol, subclassed to enforce them:

- idle: a connection without a request in progress (since it was accepted, or since its
  last answer) is closed after ``idle_timeout`` (uvicorn's keep-alive timeout, here also
  armed when a connection is accepted);
- head: a request's whole head must arrive within ``header_timeout`` of its first byte;
- body: its whole body within ``body_timeout`` of the end of its head;
  a late head or body is answered 408 ``{"detail", "code": "request_timeout"}`` (unless
  an answer is already on its way) and the connection is closed; the application's
  ``receive()`` returns ``http.disconnect``, so nothing waits on it;
- count: at most ``max_connections`` are open; one more closes the oldest connection
  without a request in progress (still idle, or still sending its head), or, when every
  connection has one, is itself closed. The default keeps a quarter of the process's
  file-descriptor limit (at least 256, or half of a tiny limit) for the ledger's own
  files, and a listen backlog within that reserve bounds how many connections one burst
  of accepts can add past the cap.

A head or body timer is armed only when a phase outlasts one read, so a request that
arrives in one piece arms no timer.

An answer's head is held back until its body's first write (``_OneSend``; at the latest
until the event loop's next turn), so that a small answer leaves in one send: uvicorn
writes the two apart, and each write is a system call and a packet.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from asyncio import TimerHandle, Transport
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ledger.errors import RequestTimeoutError, error_body

log = logging.getLogger("llmring.server")

MAX_BACKLOG = 2048
HEAD, BODY = "head", "body"
WARN_EVERY = 10.0  # seconds between two warnings that the connection cap is reached


def fd_limit() -> int:
    """The process's file-descriptor limit, after raising its soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):  # not permitted: keep the soft one
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


def reserved_fds(limit: int) -> int:
    """The descriptors kept for the ledger's own files (journal, segments, index, DuckDB),
    never used by connections: a quarter of ``limit``, at least 256 (half of a tiny one)."""
    return max(min(256, limit // 2), limit // 4)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long each phase of a connection may last (seconds) and how many may be open."""

    idle_timeout: float
    header_timeout: float
    body_timeout: float
    max_connections: int | None = None  # at most the fd limit less the reserve

    def capacity(self, fds: int) -> tuple[int, int]:
        """(the connection cap, the listen backlog) under a limit of ``fds`` descriptors:
        ``fds`` less the reserve, or ``max_connections`` if lower (never higher: accepts
        failing for want of descriptors would drop connections, and the ledger's own
        files could fail to open); the backlog (how many connections one burst of
        accepts can add past the cap) is half the reserve."""
        reserve = reserved_fds(fds)
        cap = max(1, fds - reserve)
        if self.max_connections is not None:
            if self.max_connections > cap:
                log.warning("--max-connections %d is more than the file-descriptor limit "
                            "%d allows; at most %d connections are kept open",
                            self.max_connections, fds, cap)
            cap = min(cap, self.max_connections)
        return cap, max(16, min(MAX_BACKLOG, reserve // 2))


class _Open:
    """The connections of one server: how many are open, and those without a request in
    progress, oldest first (the ones closed first when the cap is reached)."""

    def __init__(self) -> None:
        self.count = 0
        self.idle: dict[GuardedHttpProtocol, None] = {}
        self.warned = 0.0


class _OneSend:
    """The transport as one request's response cycle sees it: a response head is held
    until the next write (the body), a close, or the loop's next turn, whichever comes
    first, and then leaves with it in one write."""

    __slots__ = ("held", "loop", "transport")

    def __init__(self, transport: Transport, loop: Any) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.held is not None:
            data, self.held = self.held + data, None
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self.held = data
            self.loop.call_soon(self.release)
            return
        self.transport.write(data)

    def release(self) -> None:
        if self.held is not None:
            data, self.held = self.held, None
            if not self.transport.is_closing():  # (closed meanwhile: nobody to answer)
                self.transport.write(data)

    def close(self) -> None:
        self.release()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the idle, head and body timeouts and the
    connection cap of ``limits`` (a subclass per server, made by ``uvicorn_options``)."""

    limits: ClassVar[ConnectionLimits]
    cap: ClassVar[int]
    open: ClassVar[_Open]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase: str | None = None  # HEAD, BODY, or None between requests
        self.timed: str | None = None  # the phase the timer runs for
        self.phase_timer: TimerHandle | None = None
        self.counted = False

    # -- the cap -------------------------------------------------------------------------
    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        opened = self.open
        if opened.count >= self.cap:
            if not opened.idle:
                self._warn_cap("refusing a new connection: every open one has a request "
                               "in progress")
                transport.abort()
                return
            oldest = next(iter(opened.idle))
            self._warn_cap("closing the oldest idle connections to accept new ones")
            oldest._uncount()
            oldest.transport.abort()
        opened.count += 1
        self.counted = True
        opened.idle[self] = None
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        self._stop_phase_timer()
        super().connection_lost(exc)

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.open.count -= 1
            self.open.idle.pop(self, None)

    def _warn_cap(self, what: str) -> None:
        now = time.monotonic()
        if now - self.open.warned >= WARN_EVERY:
            self.open.warned = now
            log.warning("%s open connections (--max-connections): %s", self.cap, what)

    # -- the phases ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.phase is not self.timed:
            self._time_phase()
        elif (self.phase is None and self.timeout_keep_alive_task is None
              and (self.cycle is None or self.cycle.response_complete)
              and not self.transport.is_closing()):  # bytes that began no request
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = HEAD

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.transport is self.transport:
            self.cycle.transport = _OneSend(self.transport, self.loop)  # type: ignore[assignment]
        self.phase = BODY
        self.open.idle.pop(self, None)  # a request is in progress: not closed for others

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = None
        if self.timed is not None:
            self._stop_phase_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.counted and not self.pipeline and not self.transport.is_closing():
            self.open.idle[self] = None  # idle again, the newest

    def _stop_phase_timer(self) -> None:
        if self.phase_timer is not None:
            self.phase_timer.cancel()
            self.phase_timer = None
        self.timed = None

    def _time_phase(self) -> None:
        """Start the timer of the phase a read ended in (and stop the previous one)."""
        self._stop_phase_timer()
        if self.phase is None or self.transport.is_closing():
            return
        self.timed = self.phase
        timeout = self.limits.header_timeout if self.phase is HEAD else self.limits.body_timeout
        self.phase_timer = self.loop.call_later(timeout, self._phase_expired)

    def _phase_expired(self) -> None:
        self.phase_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self.timed is HEAD:
            waiting = cycle is not None and not cycle.response_complete
            seconds = self.limits.header_timeout
        else:  # the body of ``cycle``, the request whose head came last
            waiting = bool(self.pipeline)
            seconds = self.limits.body_timeout
        if waiting:  # a pipelined request is not read while the answer before it is written
            self.phase_timer = self.loop.call_later(seconds, self._phase_expired)
            return
        log.info("closing a connection whose request %s did not arrive within %g s",
                 self.timed, seconds)
        answer = True
        if self.timed is BODY and cycle is not None:
            answer = not cycle.response_started
            cycle.disconnected = True  # the app's receive() now returns http.disconnect
            cycle.message_event.set()
        if answer:
            self._answer_408(f"the request {self.timed} did not arrive within {seconds:g} s")
        self.transport.close()

    def _answer_408(self, message: str) -> None:
        body = orjson.dumps(error_body(RequestTimeoutError(message)))
        head = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\n",
                 b"content-length: ", str(len(body)).encode(), b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The ``uvicorn.run`` / ``uvicorn.Config`` options that enforce ``limits``: the
    protocol class of one server (``GuardedHttpProtocol`` bound to them, with its own
    count of open connections), the idle timeout and the listen backlog; no WebSocket
    protocol (the server has no WebSocket route: its module is not imported)."""
    cap, backlog = limits.capacity(fd_limit())
    protocol = type("GuardedHttpProtocol", (GuardedHttpProtocol,),
                    {"limits": limits, "cap": cap, "open": _Open()})
    return {"http": protocol, "timeout_keep_alive": limits.idle_timeout,
            "backlog": backlog, "ws": "none"}


__all__ = ["ConnectionLimits", "GuardedHttpProtocol", "uvicorn_options"]
