"""Receipt entries on disk: durability before `generate` returns, journal replay after a
kill, segments committed with their membership, and `ledger verify` over receipts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from ledger import Ledger
from ledger.core.audit import verify_directory
from ledger.receipts.issuance import Receipts
from tests.conftest import usage
from tests.support.paths import REPO as ROOT

KILLED_AFTER_GENERATE = """
import os, sys
from ledger import Ledger
from ledger.receipts.issuance import Receipts
led = Ledger(sys.argv[1], pricer=None)
led.append_many([{"provider": "openai", "model": "m", "alias": "a", "input_tokens": 1,
                  "output_tokens": 1, "cost": "0.01"} for _ in range(5)])
r = Receipts(led).generate(since_last_receipt=True)
print(r["receipt"]["receipt_id"], flush=True)
os._exit(0)  # no seal, no close: as if killed right after the acknowledgement
"""


def test_a_receipt_survives_a_kill_right_after_generate_returns(tmp_path: Path):
    data = tmp_path / "data"
    out = subprocess.run([sys.executable, "-c", KILLED_AFTER_GENERATE, str(data)], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, check=True)
    rid = out.stdout.strip()
    with Ledger(data, pricer=None) as led:
        rc = Receipts(led)
        assert rc.get("default", rid)["certified_count"] == 5
        assert rc.logs("default", rid)["total"] == 5
        assert rc.uncertified()["total"] == 0
        assert led.size() == 6
    assert verify_directory(data).ok


def test_receipt_and_membership_are_sealed_by_one_manifest_record(ledger: Ledger):
    ledger.append_many([usage() for _ in range(3)])
    Receipts(ledger).generate(since_last_receipt=True)
    ledger.flush()
    record = ledger.unit("default").manifest.state.records[-1]
    kinds = sorted(seg["kind"] for seg in record["add"])
    assert "receipts" in kinds and "membership" in kinds
    receipts = next(s for s in record["add"] if s["kind"] == "receipts")
    assert receipts["path"].startswith("receipts/tenant=default/")
    table = pq.read_table(ledger.path / receipts["path"])
    assert {"receipt_id", "seq", "recorded_at", "timestamp", "receipt",
            "leaf_hash"} <= set(table.column_names)


def test_ledger_verify_passes_with_receipts_sealed_and_in_the_journal(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        rc = Receipts(led)
        led.append_many([usage() for _ in range(4)])
        rc.generate(since_last_receipt=True)
        led.flush()
        led.append_many([usage() for _ in range(3)])
        rc.generate(since_last_receipt=True)
        report = verify_directory(ledger_dir)  # the second receipt is still in the journal
        assert report.ok, report.problems
        assert report.tenants["default"]["size"] == 9
        assert report.tenants["default"]["receipts"] == 2
        assert report.tenants["default"]["root"] == led.root().hex()
    assert verify_directory(ledger_dir).ok


def test_ledger_verify_reports_an_altered_receipt_segment(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        led.append_many([usage() for _ in range(4)])
        Receipts(led).generate(since_last_receipt=True)
    seg = next((ledger_dir / "receipts").rglob("*.parquet"))
    table = pq.read_table(seg)
    text = table.column("receipt")[0].as_py().replace('"certified_count":4',
                                                      '"certified_count":3')
    table = table.set_column(table.column_names.index("receipt"), "receipt",
                             __import__("pyarrow").array([text]))
    pq.write_table(table, seg)
    kinds = {p.kind for p in verify_directory(ledger_dir).problems}
    assert {"segment-hash", "leaf-hash"} <= kinds


def test_ledger_verify_reports_an_event_that_no_longer_matches_its_receipt(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        led.append_many([usage() for _ in range(4)])
        Receipts(led).generate(since_last_receipt=True)
    # Altering membership changes which leaves the receipt's root is checked against.
    seg = next((ledger_dir / "membership").rglob("*.parquet"))
    table = pq.read_table(seg)
    import pyarrow as pa

    table = table.set_column(table.column_names.index("seq_hi"), "seq_hi",
                             pa.array([2], pa.int64()))
    pq.write_table(table, seg)
    kinds = {p.kind for p in verify_directory(ledger_dir).problems}
    assert {"segment-hash", "receipt"} <= kinds


def test_ledger_verify_checks_receipt_signatures(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        led.append(usage())
        Receipts(led).generate(since_last_receipt=True)
    keys = ledger_dir / "keys" / "keys.json"
    keys.rename(keys.with_suffix(".bak"))
    from ledger.tlog.signing import KeyRing

    KeyRing(ledger_dir / "keys", "llmring-ledger.local").current()  # an unrelated key
    problems = verify_directory(ledger_dir).problems
    assert any(p.kind == "receipt-signature" and "key unknown" in p.message for p in problems)


def test_the_log_tree_counts_receipt_entries_after_a_lost_tree(ledger_dir: Path):
    with Ledger(ledger_dir, pricer=None) as led:
        led.append_many([usage() for _ in range(3)])
        Receipts(led).generate(since_last_receipt=True)
        led.append(usage())
        root = led.root()
    for p in (ledger_dir / "projects").rglob("tree/*.bin"):
        p.unlink()
    with Ledger(ledger_dir, pricer=None) as led:
        assert led.root() == root and led.size() == 5


RECEIPT_WRITER = """
import sys, threading
from ledger import Ledger
from ledger.receipts.issuance import Receipts, ReceiptRequestError
led = Ledger(sys.argv[1], seal_rows=int(sys.argv[2]), pricer=None)
rc = Receipts(led)
rc.keyring.current()
print("READY", flush=True)
def writer():
    while True:
        led.append_many([{"provider": "p", "model": "m", "input_tokens": 1,
                          "output_tokens": 1, "cost": "0.001"} for _ in range(7)])
threading.Thread(target=writer, daemon=True).start()
while True:
    try:
        r = rc.generate(since_last_receipt=True)
    except ReceiptRequestError:
        continue
    print("RECEIPT", r["receipt"]["receipt_id"], r["certified_count"], flush=True)
"""


def test_receipts_survive_sigkill_at_random_moments(tmp_path: Path):
    import random
    import signal
    import time

    data = tmp_path / "data"
    rng = random.Random(20261125)
    acked: dict[str, int] = {}
    for run in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", RECEIPT_WRITER, str(data), str(rng.choice([30, 200]))],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY", run
        time.sleep(rng.uniform(0.2, 0.8))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.splitlines()[:-1] if not out.endswith("\n") else out.splitlines():
            _, rid, count = line.split()
            acked[rid] = int(count)
        with Ledger(data, pricer=None) as led:
            rc = Receipts(led)
            certified: set[str] = set()
            for rid, count in acked.items():
                assert rc.get("default", rid)["certified_count"] == count, (run, rid)
            for r in rc.list(limit=1000)["receipts"]:
                ids = {log["id"] for offset in range(0, r["certified_count"], 1000)
                       for log in rc.logs("default", r["receipt_id"], limit=1000,
                                          offset=offset)["logs"]}
                assert len(ids) == r["certified_count"]
                assert not ids & certified, f"run {run}: an event was certified twice"
                certified |= ids
        report = verify_directory(data)
        assert report.ok, f"run {run}: {[str(p) for p in report.problems]}"
    assert acked
