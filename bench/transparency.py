"""Transparency benchmarks: the cost of the log tree and of checkpoints, and the audit.

    python bench/transparency.py                        # uses /work/bench-data/scale (10M)
    python bench/transparency.py --events 1000000 --dir /work/bench-data/scale-1m
    python bench/transparency.py --only ingest          # or --only log, --only verify

(a) ingestion with tree maintenance and checkpointing vs without: ``append_many`` of
    realistic events in batches of 10,000 plus ``flush()`` (as ``bench/ingest.py`` (a)),
    once with a checkpoint every second and once with no checkpoints; the share of the
    tree is the time ``TreeStore.append`` takes for the same leaf hashes, measured apart
    (the ledger cannot run without its tree). Target: with both within 20% of without.
(b) at the scale directory (built by ``bench/scale.py`` if missing, never changed here):
    the latest checkpoint (what ``Ledger.checkpoint`` does for a grown log: sync, the root
    recomputed from the tiles, a new note signed and appended durably; target <= 100 ms),
    and a consistency proof between two checkpoints
    (``transparency.prove_extends`` from a random earlier checkpoint, checked with
    ``check_extends`` outside the clock; target <= 10 ms).
(c) a full ``ledger verify`` (``audit.verify_directory``) of the scale directory
    (target <= 3 minutes).
(d) ``--only tiles``: c2sp.org/tlog-tiles hash tiles served by a real ``llmring serve``
    over a log of ``--tile-events`` entries (checkpointed), read by one HTTP/1.1 client
    (keep-alive) in a loop over random full and partial tiles for ``--tile-seconds``
    (target >= 2,000 tiles/s).
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import EventFactory, environment, report_latency, report_rate, verdict
from scale import TENANT, build, existing

from ledger.core.audit import verify_directory
from ledger.core.facade import Ledger
from ledger.model.event import leaf_hash_of
from ledger.tlog.checkpoint import Checkpoint, CheckpointStore, Verifier
from ledger.tlog.consistency import check_extends, prove_extends
from ledger.tlog.tiles import TreeStore

INGEST_TENANT = "ingest"


def ingest_run(base: Path, batches: list[list[dict]], interval: float | None) -> float:
    path = base / f"ingest-{interval}"
    shutil.rmtree(path, ignore_errors=True)
    gc.collect()
    gc.freeze()
    with Ledger(path, checkpoint_interval=interval) as led:
        t0 = time.perf_counter()
        for b in batches:
            led.append_many(b, tenant=INGEST_TENANT)
        led.flush()
        elapsed = time.perf_counter() - t0
        n = led.size(INGEST_TENANT)
    gc.unfreeze()
    shutil.rmtree(path, ignore_errors=True)
    return n / elapsed


def tree_share(base: Path, n: int) -> float:
    """Seconds ``TreeStore.append`` takes for n leaves in batches of 10,000."""
    path = base / "tree-only"
    shutil.rmtree(path, ignore_errors=True)
    leaves = [leaf_hash_of(i.to_bytes(8, "big")) for i in range(n)]
    tree = TreeStore(path)
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        tree.append(leaves[i:i + 10_000])
    tree.sync()
    elapsed = time.perf_counter() - t0
    tree.close()
    shutil.rmtree(path, ignore_errors=True)
    return elapsed


def run_ingest(args: argparse.Namespace, base: Path) -> bool:
    print(f"\n(a) ingestion of {args.ingest_events:,} events, {args.repeats} runs each",
          flush=True)
    factory = EventFactory(5)
    batches = [factory.batch(10_000) for _ in range(args.ingest_events // 10_000)]
    with_cp, without = [], []
    for _ in range(args.repeats):
        without.append(ingest_run(base, batches, None))
        with_cp.append(ingest_run(base, batches, 1.0))
    n = sum(len(b) for b in batches)
    tree_s = statistics.median(tree_share(base, n) for _ in range(args.repeats))
    w, wo = statistics.median(with_cp), statistics.median(without)
    no_tree = n / (n / wo - tree_s)
    print(f"  without checkpoints: {wo:,.0f} events/s [runs: "
          f"{', '.join(f'{x:,.0f}' for x in without)}]")
    print(f"  with a checkpoint every second: {w:,.0f} events/s [runs: "
          f"{', '.join(f'{x:,.0f}' for x in with_cp)}]")
    print(f"  the tree's own share: {tree_s:.2f} s for {n:,} leaves; without tree and "
          f"checkpoints the ledger would ingest ~{no_tree:,.0f} events/s")
    ok = w >= 0.8 * no_tree
    print(f"ingestion with tree + checkpoints: {w:,.0f} events/s = {w / no_tree:.0%} of "
          f"~{no_tree:,.0f} without them (target >= 80%)  {verdict(ok)}")
    return ok


def run_log(args: argparse.Namespace, path: Path) -> bool:
    print(f"\n(b) checkpoints and consistency at {args.events:,} events", flush=True)
    rng = random.Random(3)
    ok = True
    with Ledger(path) as led:
        origin = led.notary.log_origin(TENANT)
        keyring = led.notary.keyring
        tree = led.tree(TENANT)
        size = led.size(TENANT)
        latest = []
        scratch = Path(tempfile.mkdtemp(prefix="cp-", dir=path.parent))
        for i in range(args.trials):
            # What Ledger.checkpoint does for a grown log, into an empty store (so a new
            # note is signed every time), with the cached root cleared (recomputed from
            # the tiles); the scale directory itself is not changed.
            store = CheckpointStore(scratch / str(i))
            tree._root = None
            t0 = time.perf_counter()
            led.unit(TENANT).journal.commit(led.unit(TENANT).journal.position)
            signed = store.issue(origin, size, tree.root(size), keyring)
            latest.append(time.perf_counter() - t0)
        shutil.rmtree(scratch)
        assert signed.checkpoint.size == size
        ok &= report_latency("latest checkpoint (sign and store)", latest, 0.100)
        earlier = [Checkpoint(origin, s, led.tree(TENANT).root(s))
                   for s in sorted(rng.randrange(1, size) for _ in range(args.trials))]
        infos = keyring.keys()
        verifiers = [Verifier.from_info(i) for i in infos]
        times = []
        for old in earlier:
            t0 = time.perf_counter()
            bundle = prove_extends(led, TENANT, old)
            times.append(time.perf_counter() - t0)
            check_extends(old, bundle, verifiers)
        ok &= report_latency("consistency proof between two checkpoints", times, 0.010)
        print(f"  verified {len(earlier)} bundles with check_extends")
    return ok


def run_verify(path: Path) -> bool:
    print(f"\n(c) full ledger verify of {path}", flush=True)
    t0 = time.perf_counter()
    report = verify_directory(path)
    elapsed = time.perf_counter() - t0
    print(f"  {report.events_checked:,} events, {report.segments_checked} segments; "
          f"{'ok' if report.ok else 'PROBLEMS: ' + str(report.problems[:3])}")
    ok = report.ok and elapsed <= 180
    print(f"full ledger verify: {elapsed:.1f} s (target <= 180 s)  {verdict(ok)}")
    return ok


def run_tiles(args: argparse.Namespace) -> bool:
    import http.client
    import signal
    import socket
    import subprocess

    import httpx

    from ledger.tlog.published import encode_index

    work = Path(tempfile.mkdtemp(prefix="tiles-", dir="/work/bench-data/transparency"))
    try:
        data = work / "data"
        factory = EventFactory(seed=7)
        with Ledger(data) as led:
            for first in range(0, args.tile_events, 10_000):
                count = min(10_000, args.tile_events - first)
                led.append_many(factory.batch(count), tenant="tiles")
            led.flush()
            size = led.checkpoint("tiles").checkpoint.size
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-c", "from ledger.cli import main; main()",
                                 "--data", str(data), "serve", "--port", str(port),
                                 "--log-level", "warning", "--no-access-log"])
        try:
            url = f"http://127.0.0.1:{port}/tlog/tiles/tile/"
            paths = [f"0/{encode_index(n)}" for n in range(size // 256)]
            paths.append(f"0/{encode_index(size // 256)}.p/{size % 256}" if size % 256
                         else paths[-1])
            paths.append(f"1/000.p/{min(255, size // 65_536 or size // 256)}")
            prefix = "/tlog/tiles/tile/"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + paths[0]).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            conn = http.client.HTTPConnection("127.0.0.1", port)  # one keep-alive client
            rng = random.Random(1)
            served = 0
            start = time.perf_counter()
            end = start + args.tile_seconds
            while time.perf_counter() < end:
                conn.request("GET", prefix + rng.choice(paths))
                answer = conn.getresponse()
                body = answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"tile answer {answer.status}: {body[:200]!r}")
                served += 1
            rate = served / (time.perf_counter() - start)
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report_rate(f"hash tiles served ({size:,}-entry log, one client)", [rate], 2_000,
                       unit="tiles/s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--dir", default="/work/bench-data/scale")
    p.add_argument("--ingest-events", type=int, default=300_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--tile-events", type=int, default=70_000)
    p.add_argument("--tile-seconds", type=float, default=5.0)
    p.add_argument("--only", choices=["ingest", "log", "verify", "tiles"])
    args = p.parse_args()
    print(environment())
    base = Path("/work/bench-data/transparency")
    base.mkdir(parents=True, exist_ok=True)
    ok = True
    if args.only in (None, "ingest"):
        ok &= run_ingest(args, base)
    if args.only in (None, "tiles"):
        ok &= run_tiles(args)
    if args.only in (None, "log", "verify"):
        path = Path(args.dir)
        if existing(path, args.events) is None:
            print(f"building {args.events:,} events in {path}", flush=True)
            build(path, args.events, 100_000, 90, 7)
        if args.only in (None, "log"):
            ok &= run_log(args, path)
        if args.only in (None, "verify"):
            ok &= run_verify(path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
