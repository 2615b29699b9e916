"""Availability of a real ``llmring serve`` on damaged or constrained disks
(docs/http-api.md, docs/formats.md): an unreadable id index is rebuilt, a full disk
refuses writes with a 503 until space returns and then takes them again, and a read-only
data directory is refused with one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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
    assert any((data / "projects" / "alpha" / "journal").iterdir())
    return data, serverproc.create_key(data, "alpha")


@pytest.mark.parametrize("how", ["garbage", "truncated", "zero-length"])
def test_an_unreadable_index_is_kept_aside_and_rebuilt(indexed: tuple[Path, str],
                                                       tmp_path: Path, how: str) -> None:
    """The index is derived: damaged, the server still starts (an unreadable file kept
    aside, and the log says so), every id is still known, so a repeat is answered, not
    stored again, and the directory verifies."""
    data = tmp_path / "data"
    shutil.copytree(indexed[0], data)
    _damage(data / "projects" / "alpha" / "index.sqlite", how)
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
    aside = sorted((data / "projects" / "alpha").glob("index.corrupt-*.sqlite"))
    log = serverproc.log_text(data, int(server.url.rsplit(":", 1)[1]))
    if how in ("garbage", "truncated"):
        assert len(aside) == 1 and "could not be read" in log and aside[0].name in log
    else:  # readable: an empty index (SQLite discards a -wal of garbage) is brought level
        assert aside == []
    verify_ok(data)


# -- a full disk ---------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, mounted for the test and unmounted after it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs",
                                  str(disk)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=30)


def _fill(disk: Path, name: str, leave: int) -> Path:
    """A file taking all the free space of ``disk`` but ``leave`` bytes."""
    stat = os.statvfs(disk)
    filler = disk / name
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def _log_until_full(c: httpx.Client, prefix: str, acked: list[str]) -> httpx.Response:
    """Post batches of 20 new events until one is refused; the acknowledged ids are added
    to ``acked``; the refusal is returned."""
    for n in range(10_000):
        ids = [f"{prefix}-{n}-{k}" for k in range(20)]
        r = c.post("/api/v1/log/batch",
                   json={"events": [usage(i, metadata={"pad": "x" * 300}) for i in ids]})
        if r.status_code != 200:
            return r
        acked.extend(ids)
    raise AssertionError("the disk never filled")


def _assert_full(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "storage_full"
    assert body["detail"].startswith("the ledger cannot serve this now: no space left")


def test_a_full_disk_refuses_writes_until_space_returns(small_disk: Path) -> None:
    """Writes on a full disk are refused with 503 `storage_full` and nothing of them is
    kept; once space is freed they are taken again, without a restart. A server stopped
    while the disk is full stops cleanly, and every acknowledged event is there exactly
    once after a restart; the directory verifies."""
    data = small_disk / "data"
    server = serverproc.start(data, projects=("alpha",))
    keys = server.keys
    acked: list[str] = []
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                          timeout=60) as c:
            filler = _fill(small_disk, "filler-1", 256 * 1024)
            refused = _log_until_full(c, "a", acked)
            _assert_full(refused)
            _assert_full(c.post("/api/v1/log/batch", content=refused.request.content,
                                headers={"Content-Type": "application/json"}))
            filler.unlink()  # space returns: writes are taken again, no restart
            r = c.post("/api/v1/log", json=usage("after-space-returned"))
            assert r.status_code == 200, r.text
            acked.append("after-space-returned")
            _fill(small_disk, "filler-2", 256 * 1024)
            _assert_full(_log_until_full(c, "b", acked))
    finally:
        code = server.stop()  # while the disk is full
    log = serverproc.log_text(data, int(server.url.rsplit(":", 1)[1]))
    assert code in (0, -15) and "Traceback" not in log, log
    for filler in small_disk.glob("filler-*"):
        filler.unlink()
    server = serverproc.start(data, projects=())
    server.keys = keys
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                          timeout=60) as c:
            stored: list[str] = []
            while len(stored) % 1000 == 0:
                page = c.get("/api/v1/logs", params={"limit": 1000, "offset": len(stored)})
                logs = page.json()["logs"]
                if not logs:
                    break
                stored += [log["event_id"] for log in logs]
    finally:
        assert server.stop() in (0, -15)
    assert len(acked) > 100 and sorted(stored) == sorted(acked)
    verify_ok(data)


# -- a read-only directory -----------------------------------------------------------------
# Every command that opens the directory for writing, with arguments it would accept.
WRITING_COMMANDS = [
    ["record", "--provider", "openai", "--model", "gpt-4o-mini", "--input-tokens", "1",
     "--output-tokens", "1"],
    ["ingest", "-"], ["demo"], ["usage", "report"], ["ledger", "stats"],
    ["ledger", "compact"], ["ledger", "prune-content", "--older-than", "90d"],
    ["log", "checkpoint"], ["log", "inclusion", "id-1"],
    ["receipts", "generate", "--since-last"], ["receipts", "preview", "--since-last"],
    ["receipts", "uncertified"], ["receipts", "list"], ["receipts", "get", "rcpt_x"],
    ["receipts", "logs", "rcpt_x"], ["receipts", "prove", "rcpt_x", "--log", "id-1"],
    ["signing-keys", "rotate"], ["keys", "create", "--project", "alpha"],
    ["keys", "revoke", "key_x"],
]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A data directory with a ledger in it that this process cannot write: a tmpfs
    remounted read-only when running as root (where file modes do not stop writes), its
    files and folders without write permission otherwise."""
    data = tmp_path / "disk" / "data"
    data.parent.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs",
                                  str(data.parent)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"running as root, and cannot mount a tmpfs to make read-only: "
                        f"{mounted.stderr.strip()}")
    try:
        with Ledger(data, pricer=None) as ledger:
            ledger.append_many([usage(f"id-{i}") for i in range(5)], tenant="alpha")
        serverproc.create_key(data, "alpha")
        if as_root:
            subprocess.run(["mount", "-o", "remount,ro", str(data.parent)], check=True)
        else:
            for path in [data, *data.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)
        yield data
    finally:
        if as_root:
            subprocess.run(["umount", "-l", str(data.parent)], check=False)
        else:
            for path in [data, *data.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)


def test_a_read_only_directory_is_refused_in_one_line(read_only: Path) -> None:
    """Every command that writes the directory exits non-zero with one line naming the
    path and what it needs, and no traceback; `llmring serve` too. What can work on a
    read-only directory does: `ledger verify`, `keys list`, `signing-keys list`."""
    from click.testing import CliRunner

    from ledger.cli.main import cli

    runner = CliRunner()
    for args in WRITING_COMMANDS:
        result = runner.invoke(cli, ["--data", str(read_only), "--project", "alpha", *args],
                               input="")
        lines = result.output.strip().splitlines()
        assert (result.exit_code != 0 and result.exception is None) or isinstance(
            result.exception, SystemExit), (args, result.output, result.exception)
        assert len(lines) == 1 and lines[0].startswith("Error: cannot write "), (args, lines)
        assert str(read_only) in lines[0] and "needs write access" in lines[0]
    for args in (["ledger", "verify"], ["keys", "list"], ["signing-keys", "list"]):
        result = runner.invoke(cli, ["--data", str(read_only), *args])
        assert result.exit_code == 0, (args, result.output)
    serve = subprocess.run([*serverproc.LLMRING, "--data", str(read_only), "serve", "--port",
                            str(serverproc.free_port())], capture_output=True, text=True,
                           timeout=60)
    assert serve.returncode != 0 and "Traceback" not in serve.stderr
    assert serve.stderr.strip().splitlines()[-1].startswith("Error: cannot serve")
    assert "needs write access" in serve.stderr and serve.stdout == ""
