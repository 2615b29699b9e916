"""Journal damage against a real ``llmring serve``: a server killed after acknowledging
1,030 events leaves them in its journal; one flipped byte at 10% of it makes the next
``llmring serve`` (and every command that opens the directory) refuse, naming the file, the
byte and the events beyond, with no traceback, the damaged file kept aside and nothing
deleted; ``ledger verify`` fails naming the damage. ``--accept-loss`` then starts the server
cut at the damage, and ``ledger verify`` fails naming the loss (docs/cli.md)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from ledger.storage import journal as jr
from ledger.storage.layout import DataDir
from tests.support import serverproc
from tests.support.serverproc import cli

EVENTS = 1_030


def _files(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file() and p.name != "LOCK"}


def _fill_and_kill(data: Path) -> None:
    """Acknowledged writes (single and batch), then SIGKILL: they stay in the journal."""
    server = serverproc.start(data, projects=("alpha",))
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                          timeout=60) as http:
            call = {"provider": "openai", "model": "m", "input_tokens": 1,
                    "output_tokens": 1, "cost": "0.001"}
            for i in range(30):
                assert http.post("/api/v1/log", json={**call, "event_id": f"one-{i}"}
                                 ).status_code in (200, 201)
            for b in range(4):
                events = [{**call, "event_id": f"batch-{b}-{i}"} for i in range(250)]
                assert http.post("/api/v1/log/batch", json={"events": events}
                                 ).status_code in (200, 201)
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()


def test_a_flipped_byte_in_the_wal_stops_the_server_until_the_loss_is_accepted(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    _fill_and_kill(data)
    ((_, wal),) = jr.journal_files(DataDir(data).project("alpha").journal)
    damaged = bytearray(wal.read_bytes())
    damaged[len(damaged) // 10] ^= 0x04
    wal.write_bytes(bytes(damaged))
    before = _files(data)

    refused = cli(data, "serve", "--port", str(serverproc.free_port()), check=False)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"journal/{wal.name} is damaged at byte" in refused.stderr
    assert "--accept-loss" in refused.stderr
    named = re.search(r"would drop (\d+) acknowledged events", refused.stderr)
    assert named is not None
    beyond = int(named.group(1))
    kept = list(DataDir(data).project("alpha").damaged_journals.iterdir())
    assert [p.read_bytes() for p in kept] == [bytes(damaged)]
    after = _files(data)
    after.pop(str(kept[0].relative_to(data)))
    assert after == before  # nothing deleted, nothing cut

    stats = cli(data, "ledger", "stats", check=False)  # any command that opens it
    assert stats.returncode == 1 and "is damaged at byte" in stats.stderr
    assert "Traceback" not in stats.stderr
    verify = cli(data, "ledger", "verify", check=False)
    assert verify.returncode == 1 and "[journal-damaged]" in verify.stdout

    server = serverproc.start(data, projects=("alpha",), extra=("--accept-loss",))
    try:
        stats_body = httpx.get(server.url + "/api/v1/stats", headers=server.headers("alpha"),
                               timeout=60).json()
    finally:
        assert server.stop() in (0, -15)
    log = serverproc.log_text(data, int(server.url.rsplit(":", 1)[1]))
    assert f"warning: projects/alpha/journal/{wal.name} was damaged at byte" in log
    assert EVENTS - stats_body["events"] >= beyond > 0  # the refusal named the loss

    verify = cli(data, "ledger", "verify", check=False)
    assert verify.returncode == 1
    assert "[journal-loss]" in verify.stdout
    assert "[log-shorter-than-journal]" in verify.stdout
