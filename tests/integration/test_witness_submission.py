"""`llmring serve` submits each project's checkpoints to the witnesses of its data
directory's `witnesses.policy` over real HTTP (three `llmring witness serve` processes):
their cosignatures appear on the served checkpoint and in proof bundles; a receipt
verified with a 2-of-3 policy passes while two witnesses cosign and fails when only one
does; witnesses that are down never block appends, and their failures are visible
(`GET /api/v1/log/witnesses`, `llmring log witnesses`, `/metrics`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ledger.tlog.cosignature import parse_cosigner_vkey
from ledger.tlog.policy import check_quorum, parse_policy
from tests.support import serverproc, witnessproc


def _events(prefix: str, n: int) -> dict[str, Any]:
    return {"events": [{"event_id": f"{prefix}{i}", "provider": "openai", "model": "gpt-4o",
                        "input_tokens": 10, "output_tokens": 5, "cost": 0.001}
                       for i in range(n)]}


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def _states(c: httpx.Client) -> dict[str, str]:
    return {w["name"]: w["state"] for w in _ok(c.get("/api/v1/log/witnesses"))["witnesses"]}


def _verify(tmp: Path, c: httpx.Client, receipt_id: str, log_id: str, policy: Path,
            keys: Path) -> int:
    bundle = tmp / f"bundle-{receipt_id}.json"
    bundle.write_text(json.dumps(_ok(c.get(f"/api/v1/receipts/{receipt_id}/proof/{log_id}"))))
    res = serverproc.subprocess.run(
        [*serverproc.LLMRING, "receipts", "verify", str(bundle), "--public-key", str(keys),
         "--policy", str(policy)], capture_output=True, text=True, timeout=120)
    return res.returncode


def test_witnesses_cosign_the_served_checkpoint_and_the_quorum_decides(tmp_path: Path
                                                                        ) -> None:
    witnesses = [witnessproc.start(tmp_path / f"w{i}", f"witness.example/w{i}", {})
                 for i in (1, 2, 3)]
    server = None
    try:
        data = tmp_path / "data"
        data.mkdir()
        lines = [f"witness W{i} {w.vkey} {w.url}" for i, w in enumerate(witnesses, 1)]
        policy_text = "\n".join([*lines, "group two-of-three 2 W1 W2 W3",
                                 "quorum two-of-three", ""])
        (data / "witnesses.policy").write_text(policy_text)
        verifier_policy = tmp_path / "verifier.policy"  # what a receipt's holder trusts
        verifier_policy.write_text(policy_text)
        server = serverproc.start(data, projects=("alpha",), extra=(
            "--witness-interval", "0.1", "--witness-backoff", "0.1",
            "--witness-backoff-max", "0.5", "--witness-timeout", "5"))
        c = httpx.Client(base_url=server.url, headers=server.headers("alpha"), timeout=30)
        _ok(c.post("/api/v1/log/batch", json=_events("e", 5)))
        origin = _ok(c.get("/api/v1/log/checkpoint"))["origin"]
        keys = tmp_path / "keys.json"
        keys.write_text(c.get("/api/v1/receipts/public-keys.json").text)
        # not watched yet: each witness answers 404, which is reported, not fatal
        _until("the 404s are reported", lambda: set(_states(c).values()) == {"failing"})
        assert "404" in _ok(c.get("/api/v1/log/witnesses"))["witnesses"][0]["last_error"]
        for w in witnesses:
            w.add_log(origin, keys)
        _until("all three cosign", lambda: set(_states(c).values()) == {"current"})

        served = _ok(c.get("/api/v1/log/checkpoint"))["cosigned_note"]
        tiles_checkpoint = httpx.get(server.url + "/tlog/alpha/checkpoint")  # public
        assert tiles_checkpoint.status_code == 200 and tiles_checkpoint.text == served
        assert check_quorum(served, parse_policy(policy_text)) == [
            "witness.example/w1", "witness.example/w2", "witness.example/w3"]
        receipt = _ok(c.post("/api/v1/receipts/generate",
                             json={"since_last_receipt": True}))["receipt"]
        _until("the receipt's checkpoint is cosigned",
               lambda: _ok(c.get("/api/v1/log/witnesses"))["quorum_met"])
        assert _verify(tmp_path, c, receipt["receipt_id"], "e0", verifier_policy, keys) == 0

        # two witnesses go down; appends go on, and the log grows by one cosigner only
        witnesses[1].stop()
        witnesses[2].stop()
        t0 = time.monotonic()
        _ok(c.post("/api/v1/log/batch", json=_events("f", 5)))
        assert time.monotonic() - t0 < 5
        size = _ok(c.get("/api/v1/log/checkpoint"))["size"]
        _until("W2 and W3 fail while W1 cosigns", lambda: _states(c) == {
            "W1": "current", "W2": "failing", "W3": "failing"})
        status = _ok(c.get("/api/v1/log/witnesses"))
        assert status["checkpoint_size"] == size and not status["quorum_met"]
        w2 = next(w for w in status["witnesses"] if w["name"] == "W2")
        assert w2["failures"] >= 1 and w2["cosigned_size"] == 5
        later = _ok(c.post("/api/v1/receipts/generate",
                           json={"since_last_receipt": True}))["receipt"]
        _until("W1 cosigns the new receipt's checkpoint",
               lambda: _states(c)["W1"] == "current"
               and _ok(c.get("/api/v1/log/witnesses"))["checkpoint_size"]
               == later["log_checkpoint"]["size"])
        assert _verify(tmp_path, c, later["receipt_id"], "f0", verifier_policy, keys) == 1
        one = tmp_path / "one.policy"  # the same cosignatures meet a 1-of-3 quorum
        one.write_text("\n".join([*lines, "group any-one any W1 W2 W3", "quorum any-one",
                                  ""]))
        assert _verify(tmp_path, c, later["receipt_id"], "f0", one, keys) == 0
        # and the first receipt still passes 2-of-3: its checkpoint kept three
        assert _verify(tmp_path, c, receipt["receipt_id"], "e0", verifier_policy, keys) == 0

        metrics = c.get("/metrics").text
        assert 'llmring_witness_failures{project="alpha",witness="W2"}' in metrics
        assert 'llmring_witness_quorum_met{project="alpha"} 0.0' in metrics
        assert parse_cosigner_vkey(witnesses[0].vkey).name in served
        c.close()
    finally:
        if server is not None:
            server.stop()
        for w in witnesses:
            w.stop()
