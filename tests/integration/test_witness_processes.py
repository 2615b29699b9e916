"""End to end, in separate processes: a witness process cosigns a growing ledger log and
refuses a forked one; a receipt verified under a 1-of-1 witness policy passes before the
fork and the forked ledger's receipt fails (the ledger side by `llmring` commands; the
HTTP server will carry the same files)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROGRAM = "from ledger.cli.main import main; main()"


def llmring(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMRING_")}
    res = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True,
                         text=True, env=env, timeout=120)
    if check is not None:
        assert res.returncode == check, res.stdout + res.stderr
    return res


def _events(path: Path, prefix: str, n: int) -> Path:
    path.write_text("".join(json.dumps({"event_id": f"{prefix}{i}", "provider": "openai",
                                        "model": "gpt-4o", "input_tokens": 10,
                                        "output_tokens": 5, "cost": "0.001"}) + "\n"
                            for i in range(n)))
    return path


def _fork_bundle(forked: Path, held_note: str) -> dict:
    """A consistency bundle from the held checkpoint's size to the forked log's latest,
    made from the forked tree: the best a forking operator can offer."""
    from ledger import Ledger
    from ledger.tlog.consistency import checkpoint_of_note

    held = checkpoint_of_note(held_note)
    with Ledger(forked, pricer=None, checkpoint_interval=None) as led:
        signed = led.checkpoint("default")
        proof = led.tree("default").consistency_proof(held.size, signed.checkpoint.size)
    return {"format": "ledger-consistency/v1",
            "old": {"origin": held.origin, "size": held.size, "root": held.root.hex()},
            "new": signed.note, "proof": [h.hex() for h in proof]}


def test_a_witness_process_cosigns_a_growing_log_and_refuses_a_fork(tmp_path: Path) -> None:
    data, wdir, forked = (str(tmp_path / d) for d in ("data", "witness", "forked"))
    led = ("--data", data)
    wit = ("witness", "--dir", wdir)
    llmring(*led, "ingest", str(_events(tmp_path / "a.jsonl", "e", 5)))
    receipt = json.loads(llmring(*led, "receipts", "generate", "--since-last",
                                 "--json").stdout)["receipt"]
    origin = receipt["log_checkpoint"]["origin"]
    first = tmp_path / "first.note"
    first.write_text(llmring(*led, "log", "checkpoint").stdout)

    # the witness: its own directory and key, watching the ledger's log
    llmring(*wit, "init", "--name", "witness.example/w1")
    keys = tmp_path / "log-keys.json"
    llmring(*led, "signing-keys", "export", "--format", "json", "-o", str(keys))
    llmring(*wit, "add-log", origin, "--public-key", str(keys))
    held = tmp_path / "held.note"
    llmring(*wit, "cosign", "--checkpoint", str(first), "-o", str(held))
    llmring(*led, "log", "add-cosignature", str(held))
    policy = tmp_path / "policy.txt"
    policy.write_text(f"witness {llmring(*wit, 'key').stdout.strip()}\nquorum 1\n")

    # the log grows; the witness cosigns again from the consistency proof
    llmring(*led, "ingest", str(_events(tmp_path / "b.jsonl", "g", 3)))
    bundle = tmp_path / "consistency.json"
    llmring(*led, "log", "consistency", "--from", str(held), "-o", str(bundle))
    llmring(*wit, "cosign", "--proof", str(bundle), "-o", str(held))
    llmring(*led, "log", "add-cosignature", str(held))

    # a receipt passes the 1-of-1 policy
    proof = tmp_path / "proof.json"
    llmring(*led, "receipts", "prove", receipt["receipt_id"], "--log", "e0", "-o", str(proof))
    ok = llmring(*led, "receipts", "verify", str(proof), "--policy", str(policy))
    assert "witnesses (witness.example/w1)" in ok.stdout

    # the operator forks the log (same key, other history); the witness refuses it
    shutil.copytree(Path(data) / "keys", Path(forked) / "keys")
    shutil.copy(Path(data) / "config.json", Path(forked) / "config.json")
    fork = ("--data", forked)
    llmring(*fork, "ingest", str(_events(tmp_path / "x.jsonl", "x", 9)))
    forked_receipt = json.loads(llmring(*fork, "receipts", "generate", "--since-last",
                                        "--json").stdout)["receipt"]
    fork_note = tmp_path / "fork.note"
    fork_note.write_text(llmring(*fork, "log", "checkpoint").stdout)
    honest_proof = llmring(*fork, "log", "consistency", "--from", str(held), check=1)
    assert "TAMPERING" in honest_proof.stderr  # the ledger cannot prove a fork extends
    forged = tmp_path / "forged.json"  # so the operator offers the fork's own proof
    forged.write_text(json.dumps(_fork_bundle(Path(forked), held.read_text())))
    refused = llmring(*wit, "cosign", "--proof", str(forged), check=1)
    assert "TAMPERING" in refused.stderr and "does not extend" in refused.stderr
    shown = json.loads(llmring(*wit, "show", "--json").stdout)
    assert shown["logs"][0]["size"] == 9  # it still holds the honest checkpoint

    # the forked ledger's receipt fails the policy
    llmring(*fork, "receipts", "prove", forked_receipt["receipt_id"], "--log", "x0", "-o",
            str(proof))
    bad = llmring(*fork, "receipts", "verify", str(proof), "--policy", str(policy), check=1)
    assert "INVALID (witness)" in bad.stdout
