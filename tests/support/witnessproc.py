"""A real ``llmring witness serve`` process for tests: its directory created with the
CLI (``init``, ``add-log`` for each given log), the server started as a subprocess on a
free 127.0.0.1 port, readiness awaited by polling, and terminated (SIGTERM) at the end."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.serverproc import free_port, terminate

PROGRAM = "from ledger.cli import main; main()"


def llmring(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMRING_")}
    res = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@dataclass
class WitnessProcess:
    name: str
    directory: Path
    url: str  # the submission prefix: POST <url>/add-checkpoint
    vkey: str
    proc: subprocess.Popen[bytes]

    def add_log(self, origin: str, keys: Path) -> None:
        """Watch one more log (the running witness reads it at the next request)."""
        llmring("witness", "--dir", str(self.directory), "add-log", origin,
                "--public-key", str(keys))

    def stop(self) -> None:
        terminate(self.proc)


def start(directory: Path, name: str, logs: dict[str, Path], prefix: str = "/witness"
          ) -> WitnessProcess:
    """A witness named ``name`` in ``directory`` watching ``logs`` (origin → public-key
    file), serving ``POST <prefix>/add-checkpoint``."""
    wit = ("witness", "--dir", str(directory))
    llmring(*wit, "init", "--name", name)
    for origin, keys in logs.items():
        llmring(*wit, "add-log", origin, "--public-key", str(keys))
    vkey = llmring(*wit, "key").strip()
    port = free_port()
    log = open(directory / "serve.log", "wb")  # noqa: SIM115 - lives with the process
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMRING_")}
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, *wit, "serve", "--listen",
                             f"127.0.0.1:{port}", "--prefix", prefix, "--log-level",
                             "warning"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}{prefix}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("llmring witness serve exited early:\n"
                               + (directory / "serve.log").read_text(errors="replace"))
        with contextlib.suppress(httpx.HTTPError):  # not listening yet: try again
            if httpx.get(url + "/add-checkpoint", timeout=1).status_code == 405:
                return WitnessProcess(name, directory, url, vkey, proc)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("llmring witness serve did not become ready")
