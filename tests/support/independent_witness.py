"""``aics-witness`` (PyPI; Apache-2.0; not ours): a C2SP tlog-witness, with its own
C2SP library ``aics-tlog`` (signed notes, checkpoints, RFC 6962 trees) and its own
tlog-witness client (``aics_witness.feeder``), written from the specifications by
someone else. It needs Python 3.12 or later, so it runs in an environment of its own,
made once (``python -m venv`` + ``pip install``) under ``$LLMRING_TEST_CACHE`` (default
``.cache/`` in the repository, ignored by git) with the first Python >= 3.12 found on
``PATH`` or under ``~/.pyenv/versions``.

``start`` runs it as a witness (``aics-witness init``, ``add-log``, ``serve``);
``drive`` runs ``tests/independent/witness/driver.py`` in that environment: a log made
with ``aics_tlog`` alone, submitted to a witness with ``aics_witness.feeder`` and raw
requests, reporting the statuses it got.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.serverproc import terminate

VERSION = "0.1.0"
REQUIREMENTS = (f"aics-witness=={VERSION}",)
DRIVER = REPO / "tests" / "independent" / "witness" / "driver.py"


def _home() -> Path:
    cache = Path(os.environ.get("LLMRING_TEST_CACHE", REPO / ".cache"))
    return cache / f"aics-witness-{VERSION}"


def _new_python() -> str | None:
    """A Python >= 3.12 interpreter (aics-witness's ``Requires-Python``), or None."""
    candidates = [shutil.which(f"python3.{m}") for m in range(12, 20)]
    home = Path.home() / ".pyenv" / "versions"
    candidates += sorted(glob.glob(str(home / "3.1[2-9]*" / "bin" / "python3")))
    for path in filter(None, candidates):
        ok = subprocess.run([path, "-c", "import sys; assert sys.version_info >= (3, 12)"],
                            capture_output=True)
        if ok.returncode == 0:
            return path
    return None


def environment() -> Path:
    """The environment's bin directory, made on first use (one maker at a time).
    Raises ``RuntimeError`` when it cannot be made (no Python >= 3.12, no PyPI)."""
    home = _home()
    if (home / "ready").exists():
        return home / "venv" / "bin"
    home.mkdir(parents=True, exist_ok=True)
    with (home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "ready").exists():
            python = _new_python()
            if python is None:
                raise RuntimeError("aics-witness needs Python >= 3.12; none was found")
            subprocess.run([python, "-m", "venv", "--clear", str(home / "venv")],
                           check=True, capture_output=True, timeout=300)
            pip = subprocess.run([str(home / "venv" / "bin" / "python"), "-m", "pip",
                                  "install", "-q", *REQUIREMENTS], capture_output=True,
                                 text=True, timeout=900)
            if pip.returncode:
                raise RuntimeError(f"cannot install {' '.join(REQUIREMENTS)}:\n"
                                   f"{pip.stdout}\n{pip.stderr}")
            (home / "ready").write_text("\n".join(REQUIREMENTS) + "\n")
    return home / "venv" / "bin"


@dataclass
class AicsWitness:
    url: str  # submission prefix: POST <url>/add-checkpoint
    vkey: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        terminate(self.proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(directory: Path, name: str, logs: dict[str, str]) -> AicsWitness:
    """``aics-witness`` named ``name`` in ``directory`` trusting ``logs`` (origin →
    the log's vkey), serving ``POST /add-checkpoint`` on a free port."""
    tool = str(environment() / "aics-witness")
    directory.mkdir(parents=True, exist_ok=True)
    config = ["--config", str(directory / "witness.json")]

    def run(*args: str) -> str:
        res = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    out = run("init", *config, "--name", name)
    vkey = next(w for w in out.split() if w.startswith(name + "+"))
    for origin, log_vkey in logs.items():
        run("add-log", *config, "--origin", origin, "--vkey", log_vkey)
    port = _free_port()
    log = directory / "serve.log"
    proc = subprocess.Popen([tool, "serve", *config, "--listen", f"127.0.0.1:{port}"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aics-witness exited early:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return AicsWitness(f"http://127.0.0.1:{port}", vkey, proc, log)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("aics-witness did not start listening")


def driver(*args: str) -> str:
    """Run the independent driver with ``args``; what it printed."""
    res = subprocess.run([str(environment() / "python"), str(DRIVER), *args],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def drive(url: str, witness_vkey: str, seed_hex: str, origin: str) -> dict[str, Any]:
    """The driver's scenario against the witness at ``url``: each step's answer."""
    return dict(json.loads(driver("drive", url, witness_vkey, seed_hex, origin)))
