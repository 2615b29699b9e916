"""A witness process and a server process in one test: the witness cosigns the server's
growing log from what the HTTP API serves (checkpoint, consistency proof) and hands its
cosignatures back; it refuses a forked server's checkpoint; a receipt proved over HTTP
passes a 1-of-1 witness policy, and the forked server's receipt fails it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from ledger.tlog.consistency import checkpoint_of_note
from tests.integration.test_witness_processes import llmring
from tests.support import serverproc

FORMAT = "ledger-consistency/v1"


def _events(prefix: str, n: int) -> dict[str, Any]:
    return {"events": [{"event_id": f"{prefix}{i}", "provider": "openai", "model": "gpt-4o",
                        "input_tokens": 10, "output_tokens": 5, "cost": 0.001}
                       for i in range(n)]}


def _client(server: serverproc.Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.headers("alpha"), timeout=30)


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _bundle_from(c: httpx.Client, held_note: str) -> dict[str, Any]:
    """The consistency bundle from the witness's checkpoint to the server's latest, made
    from the HTTP API alone."""
    held = checkpoint_of_note(held_note)
    new = _ok(c.get("/api/v1/log/checkpoint"))
    proof = _ok(c.get("/api/v1/log/consistency",
                      params={"first": held.size, "second": new["size"]}))
    return {"format": FORMAT, "old": {"size": held.size}, "new": new["note"],
            "proof": proof["proof"]}


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_witness_and_a_server_process(tmp_path: Path) -> None:
    wit = ("witness", "--dir", str(tmp_path / "witness"))
    llmring(*wit, "init", "--name", "witness.example/w1")
    policy = _write(tmp_path / "policy.txt",
                    f"witness {llmring(*wit, 'key').stdout.strip()}\nquorum 1\n")
    held = tmp_path / "held.note"
    keys = tmp_path / "keys.json"

    honest = serverproc.start(tmp_path / "data", projects=("alpha",))
    try:
        with _client(honest) as c:
            _ok(c.post("/api/v1/log/batch", json=_events("e", 5)))
            receipt = _ok(c.post("/api/v1/receipts/generate",
                                 json={"since_last_receipt": True}))["receipt"]
            first = _ok(c.get("/api/v1/log/checkpoint"))
            _write(keys, c.get("/api/v1/receipts/public-keys.json").json())
            llmring(*wit, "add-log", first["origin"], "--public-key", str(keys))
            llmring(*wit, "cosign", "--checkpoint", str(_write(tmp_path / "first.note",
                                                               first["note"])),
                    "-o", str(held))
            _ok(c.post("/api/v1/log/cosignatures", json={"note": held.read_text()}))

            # the log grows; the witness cosigns again from the served consistency proof
            _ok(c.post("/api/v1/log/batch", json=_events("g", 3)))
            bundle = _write(tmp_path / "bundle.json", _bundle_from(c, held.read_text()))
            llmring(*wit, "cosign", "--proof", str(bundle), "-o", str(held))
            _ok(c.post("/api/v1/log/cosignatures", json={"note": held.read_text()}))
            served = _ok(c.get("/api/v1/log/checkpoint"))["cosigned_note"]
            assert "witness.example/w1" in served

            # a receipt proved over HTTP passes the 1-of-1 policy, offline
            proof = _write(tmp_path / "proof.json",
                           _ok(c.get(f"/api/v1/receipts/{receipt['receipt_id']}/proof/e0")))
            ok = llmring("receipts", "verify", str(proof), "--public-key", str(keys),
                         "--policy", str(policy))
            assert "witnesses (witness.example/w1)" in ok.stdout
    finally:
        honest.stop()

    # the operator forks the log: same key and origin, other history, served anew
    forked_dir = tmp_path / "forked"
    forked_dir.mkdir()
    shutil.copytree(tmp_path / "data" / "keys", forked_dir / "keys")
    shutil.copy(tmp_path / "data" / "config.json", forked_dir / "config.json")
    forked = serverproc.start(forked_dir, projects=("alpha",))
    try:
        with _client(forked) as c:
            _ok(c.post("/api/v1/log/batch", json=_events("x", 12)))
            forked_receipt = _ok(c.post("/api/v1/receipts/generate",
                                        json={"since_last_receipt": True}))["receipt"]
            bundle = _write(tmp_path / "forked-bundle.json", _bundle_from(c, held.read_text()))
            refused = llmring(*wit, "cosign", "--proof", str(bundle), check=1)
            assert "TAMPERING" in refused.stderr
            shown = json.loads(llmring(*wit, "show", "--json").stdout)
            assert shown["logs"][0]["size"] == checkpoint_of_note(held.read_text()).size
            proof = _write(tmp_path / "forked-proof.json", _ok(c.get(
                f"/api/v1/receipts/{forked_receipt['receipt_id']}/proof/x0")))
            bad = llmring("receipts", "verify", str(proof), "--public-key", str(keys),
                          "--policy", str(policy), check=1)
            assert "INVALID (witness)" in bad.stdout
    finally:
        forked.stop()
