"""Durability: a writer killed with SIGKILL at random moments loses no acknowledged event,
stores none twice, leaves no half-applied batch, and the directory still verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from ledger import Ledger
from ledger.core.audit import verify_directory
from tests.support.durability import assert_nothing_acknowledged_lost
from tests.support.paths import REPO as ROOT

KILLS = 24


def _run_and_kill(path: Path, run: int, rng: random.Random) -> tuple[set[str], list[list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.crash_writer", str(path), str(run),
         str(rng.random())[2:9]],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if first.strip() != "READY":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the writer did not start: {first}{err}")
    time.sleep(rng.uniform(0.0, 0.6))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    acked: set[str] = set()
    batches: list[list[str]] = []
    # The piece after the last newline is "" or a line the kill cut short: not relied on.
    for line in out.split("\n")[:-1]:
        kind, _, rest = line.partition(" ")
        if kind == "ACK":
            acked.add(rest)
        elif kind == "BATCH":
            ids = rest.split()
            acked.update(ids)
            batches.append(ids)
    return acked, batches


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "data"
    rng = random.Random(20261125)
    acked: set[str] = set()
    for run in range(KILLS):
        got, _ = _run_and_kill(path, run, rng)
        acked |= got
        assert_nothing_acknowledged_lost(path, acked, run)
    assert len(acked) > 200


def test_half_written_batch_is_absent_after_recovery(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Ledger(path, pricer=None) as led:
        led.append({"event_id": "kept", "provider": "p", "model": "m", "cost": "0"}, tenant="a")
    # Simulate a crash in the middle of writing a batch: the frames of a second batch,
    # cut short before its commit frame.
    from ledger.model.event import parse_event, prepare
    from ledger.storage import journal as jr

    p = prepare(parse_event({"event_id": "torn", "provider": "p", "model": "m", "cost": "0"}),
                tenant="a", received_us=1_790_000_000_000_000, pricer=None)
    frame = jr.encode_event(1, 1_790_000_000_000_000, p.digest, p.canonical)
    wal = path / "projects" / "a" / "journal" / "00000099.wal"
    wal.write_bytes(frame + frame[:7])
    with Ledger(path, pricer=None) as led:
        assert led.size("a") == 1
        assert led.get("a", "torn") is None
    assert verify_directory(path).ok
