"""Availability of a real ``llmring serve`` on damaged or constrained disks
(docs/http-api.md, docs/formats.md): an unreadable id index is rebuilt, a full disk
refuses writes with a 503 until space returns and then takes them again, and a read-only
data directory is refused with one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ledger import Ledger
from tests.support import serverproc
from tests.support.paths import REPO


def usage(event_id: str, **extra: object) -> dict[str, object]:
    return {"event_id": event_id, "provider": "openai", "model": "gpt-4o-mini",
            "input_tokens": 10, "output_tokens": 5, "cost": "0.0001", **extra}


def verify_ok(data: Path) -> None:
    out = serverproc.cli(data, "ledger", "verify", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# -- a corrupt index -----------------------------------------------------------------------
def _damage(index: Path, how: str) -> None:
    """Garbage bytes (index and -wal), the index cut in half, or empty (with a -wal of
    garbage)."""
    wal = index.with_name(index.name + "-wal")
    if how == "garbage":
        index.write_bytes(os.urandom(3 * 4096))
        wal.write_bytes(os.urandom(9000))
    elif how == "truncated":
        os.truncate(index, index.stat().st_size // 2)
    else:
        index.write_bytes(b"")
        wal.write_bytes(os.urandom(9000))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory with 300 sealed events and one in the journal, and an API key of its
    project "alpha"."""
    data = tmp_path_factory.mktemp("indexed") / "data"
    with Ledger(data, pricer=None) as ledger:
        ledger.append_many([usage(f"id-{i}") for i in range(300)], tenant="alpha")
    # The last one only in the journal: its writer stops dead once it is acknowledged.
    subprocess.run([sys.executable, "-c", "import os, sys; from ledger import Ledger; "
                    "Ledger(sys.argv[1], pricer=None).append(dict(event_id='in-the-journal',"
                    " provider='openai', model='gpt-4o-mini', input_tokens=10, "
                    "output_tokens=5, cost='0.0001'), tenant='alpha'); os._exit(0)",
                    str(data)], check=True, cwd=REPO, timeout=60)
    assert any((data / "journal").iterdir())
    return data, serverproc.create_key(data, "alpha")


@pytest.mark.parametrize("how", ["garbage", "truncated", "zero-length"])
def test_an_unreadable_index_is_kept_aside_and_rebuilt(indexed: tuple[Path, str],
                                                       tmp_path: Path, how: str) -> None:
    """The index is derived: damaged, the server still starts (an unreadable file kept
    aside, and the log says so), every id is still known, so a repeat is answered, not
    stored again, and the directory verifies."""
    data = tmp_path / "data"
    shutil.copytree(indexed[0], data)
    _damage(data / "index.sqlite", how)
    server = serverproc.start(data, projects=())
    server.keys["alpha"] = indexed[1]
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("alpha")) as c:
            for event_id in ("id-7", "id-299", "in-the-journal"):
                r = c.post("/api/v1/log", json=usage(event_id))
                assert r.status_code == 200 and r.json()["created"] is False, r.text
            assert c.post("/api/v1/log", json=usage("id-7", input_tokens=11)).status_code == 409
            assert c.get("/api/v1/logs", params={"limit": 1}).json()["total"] == 301
    finally:
        assert server.stop() in (0, -15)
    aside = sorted(data.glob("index.corrupt-*.sqlite"))
    log = serverproc.log_text(data, int(server.url.rsplit(":", 1)[1]))
    if how in ("garbage", "truncated"):
        assert len(aside) == 1 and "could not be read" in log and aside[0].name in log
    else:  # readable: an empty index (SQLite discards a -wal of garbage) is brought level
        assert aside == []
    verify_ok(data)
