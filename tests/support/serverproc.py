"""A real ``llmring serve`` process for tests: keys created with the CLI, the server
started as a subprocess on a free 127.0.0.1 port, readiness awaited on ``/health``, and
the process terminated (SIGTERM, a graceful shutdown) at the end."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LLMRING = [sys.executable, "-c", "from ledger.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LLMRING, "--data", str(data), *args], capture_output=True,
                          text=True, check=check, timeout=120)


def create_key(data: Path, project: str) -> str:
    return cli(data, "keys", "create", "--project", project).stdout.strip()


@dataclass
class Server:
    url: str
    data: Path
    proc: subprocess.Popen[bytes]
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, project: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[project]}

    def stop(self) -> int:
        return terminate(self.proc, timeout=60)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Stop a process we started: SIGTERM (a graceful shutdown), SIGKILL after
    ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung process
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def start(data: Path, projects: tuple[str, ...] = ("alpha", "beta"),
          extra: tuple[str, ...] = (), fd_limit: int | None = None,
          quick_keys: tuple[str, ...] = (), port: int | None = None) -> Server:
    """``llmring serve`` on ``data`` with ``extra`` options and a key for each of
    ``projects`` (made by ``llmring keys create``) and of ``quick_keys`` (made in this
    process once the server is up: a CLI run per key takes about a second);
    ``fd_limit``: the server's RLIMIT_NOFILE, soft and hard (as under ``ulimit -n``);
    ``port``: the port to listen on (a free one by default)."""
    server = _serve(data, {p: create_key(data, p) for p in projects}, extra, fd_limit, port)
    if quick_keys:
        from ledger.api.apikeys import ApiKeyStore

        store = ApiKeyStore(data)
        server.keys.update({p: store.create(p)[0] for p in quick_keys})
    return server


def _serve(data: Path, keys: dict[str, str], extra: tuple[str, ...],
           fd_limit: int | None, port: int | None = None) -> Server:
    port = port or free_port()
    log = open(data.parent / f"server-{port}.log", "wb")  # noqa: SIM115 - lives with proc
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*LLMRING, "--data", str(data), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", *extra], stdout=log, stderr=subprocess.STDOUT, env=env,
        preexec_fn=None if fd_limit is None else lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (fd_limit, fd_limit)))
    server = Server(f"http://127.0.0.1:{port}", data, proc, keys)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("llmring serve exited early:\n" + log_text(data, port))
        with contextlib.suppress(httpx.HTTPError):  # not listening yet: try again
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("llmring serve did not become ready:\n" + log_text(data, port))


def log_text(data: Path, port: int) -> str:
    return (data.parent / f"server-{port}.log").read_text(errors="replace")


def running(tmp: Path, **kw: object) -> Iterator[Server]:
    server = start(tmp / "data", **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
