"""Everything under a data directory is its owner's alone, whatever the umask: files 0600,
folders 0700, the directory itself included (docs/formats.md, "The data directory").
Checked after a realistic session of a real ``llmring serve`` (writes, a conversation
and its pairing, a receipt and a proof, exports, checkpoints, a witness's cosignature),
then the CLI's seal, compaction and retention; and a directory written with open modes
(0644 files, 0755 folders) is made private when opened."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.core.migrate import migrate
from tests.integration.test_witness_processes import llmring
from tests.support import serverproc
from tests.support.paths import FIXTURES

CALL = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100,
        "output_tokens": 20, "cost": 0.0025}


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which leaves new files world-readable (servers inherit it)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def open_modes(data: Path) -> list[str]:
    """Every file that is not 0600 and every folder that is not 0700 under ``data``."""
    wrong = []
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong.append(f"{path.relative_to(data.parent)}: {mode:o}")
    return wrong


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_everything_a_server_session_writes_is_private(tmp_path: Path, umask_022: None
                                                       ) -> None:
    data = tmp_path / "data"
    wit = ("witness", "--dir", str(tmp_path / "witness"))
    llmring(*wit, "init", "--name", "witness.example/w1")
    server = serverproc.start(data, projects=("alpha",))
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                          timeout=60) as c:
            ok(c.post("/api/v1/log", json=CALL))
            ok(c.post("/api/v1/log/batch", json={"events": [CALL] * 300}))
            conv = ok(c.post("/api/v1/conversations/log", json={
                "messages": [{"role": "user", "content": "hello"}],
                "response": {"content": "hi"},
                "metadata": {**CALL, "timestamp": "2025-10-01T12:00:00Z"}}))
            paired = ok(c.post("/api/v1/log", json={
                **CALL, "id_at_origin": conv["conversation_id"]}))
            assert paired["created"] is False
            receipt = ok(c.post("/api/v1/receipts/generate",
                                json={"since_last_receipt": True}))["receipt"]
            ok(c.get(f"/api/v1/receipts/{receipt['receipt_id']}/proof/{conv['message_id']}"))
            for fmt in ("jsonl", "parquet"):
                assert c.get("/api/v1/exports/events", params={"format": fmt}).is_success
            head = ok(c.get("/api/v1/log/checkpoint"))
            keys = tmp_path / "keys.json"
            keys.write_text(json.dumps(ok(c.get("/api/v1/receipts/public-keys.json"))))
            llmring(*wit, "add-log", head["origin"], "--public-key", str(keys))
            note = tmp_path / "head.note"
            note.write_text(head["note"])
            llmring(*wit, "cosign", "--checkpoint", str(note), "-o", str(note))
            ok(c.post("/api/v1/log/cosignatures", json={"note": note.read_text()}))
    finally:
        server.stop()
    for args in (("ledger", "compact"), ("ledger", "flush"),
                 ("--project", "alpha", "ledger", "prune-content", "--older-than", "1d")):
        serverproc.cli(data, *args)
    assert not any((data / "content").rglob("*.json"))  # pruned: the folders stay
    written = {p.name for p in data.iterdir()}
    assert {"events", "pairs", "receipts", "membership", "projects", "keys",
            "checkpoints", "cosignatures", "config.json", "api-keys.json", "LOCK",
            "content"} <= written, written
    unit = {p.name for p in (data / "projects" / "alpha").iterdir()}
    assert {"tree", "rtree", "journal", "index.sqlite", "manifest.jsonl", "LOCK"} <= unit
    assert open_modes(data) == []
    assert verify_directory(data).ok


def test_a_directory_with_open_modes_is_made_private_when_opened(
        tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "dir-0aecc9c", data)
    for path in [data, *data.rglob("*")]:  # as a writer of open modes left them
        path.chmod(0o755 if path.is_dir() else 0o644)
    migrate(data)  # it predates per-project units too
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        assert led.size("acme") == 28
        led.append({**CALL, "event_id": "after"}, tenant="acme")
    assert open_modes(data) == []
    assert verify_directory(data).ok
