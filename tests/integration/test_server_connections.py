"""Connections of a real ``llmring serve`` (docs/cli.md#running-a-server): idle
connections beyond the file-descriptor limit do not stop a well-behaved client, a slow
request head or a body shorter than its Content-Length is answered 408 and closed within
its timeout, a silent connection is closed after the idle timeout, and a keep-alive
connection stays usable after any error answer (a 500 included)."""

from __future__ import annotations

import contextlib
import http.client
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from ledger.api.apikeys import ApiKeyStore
from ledger.server.app import ServerConfig, ServerState, create_app
from ledger.server.connections import ConnectionLimits, uvicorn_options
from ledger.server.fastpath import FastPath
from tests.support import serverproc
from tests.support.serverproc import Server, free_port

FD_LIMIT = 1024
IDLE_SOCKETS = 1100
TIMEOUT = 1.0  # the head, body and idle timeouts of the short-timeout server
CALL = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10,
        "output_tokens": 2, "cost": 0.001}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose idle, head and body timeouts are all ``TIMEOUT``."""
    options = ("--idle-timeout", str(TIMEOUT), "--header-timeout", str(TIMEOUT),
               "--body-timeout", str(TIMEOUT))
    yield from serverproc.running(tmp_path_factory.mktemp("quick"), projects=("alpha",),
                                  extra=options)


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def total(server: Server) -> int:
    r = httpx.get(server.url + "/api/v1/logs", params={"limit": 1},
                  headers=server.headers("alpha"), timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed
    (seconds from now); fails if it is still open after ``within`` seconds."""
    start = time.monotonic()
    sock.settimeout(within)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def raw_request(method: str, path: str, key: str, length: int, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            ).encode() + body


# -- file descriptors ----------------------------------------------------------------------
def accept_queue(port: int) -> int:
    """How many connections wait in the kernel for the server listening on ``port`` to
    accept them (a listening socket's rx_queue in /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on port {port}")


def open_idle(to: tuple[str, int], count: int, wave: int = 64) -> list[socket.socket]:
    """``count`` connections to ``to``, left idle; opened ``wave`` at a time, each wave
    accepted by the server before the next (a full accept queue would leave connections
    only the client believes open)."""
    connected: list[socket.socket] = []
    deadline = time.monotonic() + 60
    while len(connected) < count:
        pending: dict[int, socket.socket] = {}
        for _ in range(min(wave, count - len(connected))):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(to)
            pending[sock.fileno()] = sock
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        while pending:
            assert time.monotonic() < deadline, "the server stopped taking connections"
            for fd, _ in poller.poll(100):
                poller.unregister(fd)
                sock = pending.pop(fd)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                connected.append(sock)
        while accept_queue(to[1]):
            assert time.monotonic() < deadline, "the server stopped accepting"
            time.sleep(0.005)
    return connected


def test_idle_connections_beyond_the_fd_limit_do_not_stop_a_well_behaved_client(
        tmp_path: Path) -> None:
    """With RLIMIT_NOFILE 1024 (soft and hard), 1,100 connections opened and left idle:
    a client is still answered within 10 s, the server stays up, writes, and opens its
    files (an export, a receipt); it closed the oldest idle connections to make room."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE_SOCKETS + 200:
        pytest.skip(f"this test process may open only {hard} files")
    if soft != resource.RLIM_INFINITY and soft < IDLE_SOCKETS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (IDLE_SOCKETS + 200, hard))
    # a long idle timeout: only the connection cap can make room here
    server = serverproc.start(tmp_path / "data", projects=("alpha",),
                              extra=("--idle-timeout", "600"), fd_limit=FD_LIMIT)
    idle: list[socket.socket] = []
    try:
        idle = open_idle(address(server), IDLE_SOCKETS)
        started = time.monotonic()
        r = httpx.post(server.url + "/api/v1/log", json=CALL, headers=server.headers("alpha"),
                       timeout=10)
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 10
        assert server.proc.poll() is None
        batch = httpx.post(server.url + "/api/v1/log/batch", json={"events": [CALL] * 50},
                           headers=server.headers("alpha"), timeout=10)
        assert batch.status_code == 200, batch.text
        export = httpx.get(server.url + "/api/v1/exports/events", params={"format": "parquet"},
                           headers=server.headers("alpha"), timeout=10)
        assert export.status_code == 200, export.text
        receipt = httpx.post(server.url + "/api/v1/receipts/generate",
                             json={"since_last_receipt": True},
                             headers=server.headers("alpha"), timeout=10)
        assert receipt.status_code == 200, receipt.text
        closed = 0
        for sock in idle:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                try:
                    closed += sock.recv(1) == b""
                except ConnectionResetError:
                    closed += 1
        assert closed >= IDLE_SOCKETS - (FD_LIMIT - 256)
    finally:
        for sock in idle:
            sock.close()
        try:
            assert server.proc.poll() is None
            assert total(server) == 51
        finally:
            assert server.stop() == 0  # graceful (SIGTERM)
    log = serverproc.log_text(tmp_path / "data", address(server)[1])
    assert "Too many open files" not in log and "Traceback" not in log, log
    assert "closing the oldest idle connections" in log


# -- timeouts ------------------------------------------------------------------------------
def test_a_silent_connection_is_closed_after_the_idle_timeout(quick: Server) -> None:
    """A client that connects and sends nothing is closed after ``--idle-timeout``."""
    with socket.create_connection(address(quick)) as sock:
        data, after = read_until_closed(sock, TIMEOUT + 5)
    assert data == b"" and after >= TIMEOUT * 0.8


def test_a_slow_request_head_is_answered_408_and_closed(quick: Server) -> None:
    """Slowloris: a head trickling in a byte at a time is answered 408 (the documented
    error body) and closed once ``--header-timeout`` has passed since its first byte."""
    with socket.create_connection(address(quick)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        for byte in b"X-Slow: " + b"a" * 100:  # one byte per 0.1 s: 10 s if never cut
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
        rest, _ = read_until_closed(sock, 5)
        after = time.monotonic() - started
    status, body = status_and_body(answer + rest)
    assert status == 408 and body["code"] == "request_timeout"
    assert "head" in body["detail"]
    assert TIMEOUT * 0.8 <= after < TIMEOUT + 3
    assert httpx.get(quick.url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/log", "/api/v1/receipts/preview"])
def test_a_body_shorter_than_its_content_length_is_408_and_the_server_serves_on(
        quick: Server, path: str) -> None:
    """A body that stops short of its Content-Length (on the fast path and on a FastAPI
    route) is answered 408 and closed after ``--body-timeout``; nothing is written and
    the server answers the next request."""
    before = total(quick)
    with socket.create_connection(address(quick)) as sock:
        sock.sendall(raw_request("POST", path, quick.keys["alpha"], 100, b'{"provider": '))
        answer, after = read_until_closed(sock, TIMEOUT + 5)
    status, body = status_and_body(answer)
    assert status == 408, answer
    assert body == {"detail": f"the request body did not arrive within {TIMEOUT:g} s",
                    "code": "request_timeout"}
    assert TIMEOUT * 0.8 <= after < TIMEOUT + 3
    assert total(quick) == before
    r = httpx.post(quick.url + "/api/v1/log", json=CALL, headers=quick.headers("alpha"),
                   timeout=5)
    assert r.status_code == 200 and total(quick) == before + 1


# -- keep-alive after errors ---------------------------------------------------------------
BAD_REQUESTS = [
    ("POST", "/api/v1/log", b'{"provider": 1}', 422),  # invalid event: the fast path declines
    ("POST", "/api/v1/log", b"{not json", 422),
    ("POST", "/api/v1/log/batch", b'{"events": []}', 422),
    ("GET", "/api/v1/logs/no-such-log", None, 404),
    ("GET", "/api/v1/usage/rollup?by=meta.", None, 400),
    ("POST", "/api/v1/receipts/generate", b"{}", 400),
    ("GET", "/no/such/route", None, 404),
    # over the 4 MiB limit: read to its end and dropped, so the client gets the answer
    ("POST", "/api/v1/log", b"{" + b" " * (5 * 1024 * 1024) + b"}", 413),
]


def test_a_keep_alive_connection_stays_usable_after_any_error_answer(quick: Server) -> None:
    """On one raw keep-alive connection, each refused request (4xx) is followed by a good
    one, answered on the same connection."""
    conn = http.client.HTTPConnection(*address(quick), timeout=10)
    headers = {"X-API-Key": quick.keys["alpha"], "Content-Type": "application/json"}
    conn.connect()
    local = conn.sock.getsockname()
    for method, path, body, status in BAD_REQUESTS:
        conn.request(method, path, body=body, headers=headers)
        bad = conn.getresponse()
        assert (bad.status, bad.getheader("connection")) == (status, None), path
        assert "code" in orjson.loads(bad.read())
        conn.request("POST", "/api/v1/log", body=orjson.dumps(CALL), headers=headers)
        good = conn.getresponse()
        assert good.status == 200 and orjson.loads(good.read())["created"] is True
        assert conn.sock is not None and conn.sock.getsockname() == local
    conn.close()


def test_a_keep_alive_connection_stays_usable_after_a_500(tmp_path: Path) -> None:
    """uvicorn running the served app (``FastPath``, ``uvicorn_options``): an operation that
    fails unexpectedly is a 500 that keeps the connection open, and the next request on
    the same connection is answered (it was reset when the error escaped the app)."""
    data = tmp_path / "data"
    state = ServerState(ServerConfig(data))
    key, _ = ApiKeyStore(data).create("p")

    def failing(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("a bug")

    state.service.get_log = failing  # type: ignore[method-assign]
    app = FastPath(create_app(ServerConfig(data), state=state))
    port = free_port()
    limits = ConnectionLimits(idle_timeout=30, header_timeout=10, body_timeout=10)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="on",
                                           **uvicorn_options(limits)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        local = conn.sock.getsockname()
        for _ in range(3):
            conn.request("GET", "/api/v1/logs/x", headers={"X-API-Key": key})
            bug = conn.getresponse()
            assert bug.status == 500 and bug.getheader("connection") is None
            assert orjson.loads(bug.read())["detail"].startswith("internal error")
            conn.request("POST", "/api/v1/log", body=orjson.dumps(CALL),
                         headers={"X-API-Key": key, "Content-Type": "application/json"})
            good = conn.getresponse()
            assert good.status == 200, good.read()
            good.read()
            assert conn.sock.getsockname() == local
        conn.close()
    finally:
        server.should_exit = True
        thread.join(30)
