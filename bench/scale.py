"""Read-side latency of the ledger at scale (default: 10,000,000 events in one tenant).

    python bench/scale.py                                   # build if needed, then measure
    python bench/scale.py --events 10000000 --dir /work/bench-data/scale
    python bench/scale.py --events 1000000 --dir /tmp/scale-1m   # a quicker, smaller run
    python bench/scale.py --delete                          # remove the directory afterwards

The data directory is built once with ``Ledger.append_many`` in big batches of realistic
events (``bench/_common.py``; ts spread over ``--spread-days`` days) and reused by later
runs when its tenant holds exactly ``--events`` events (``--rebuild`` forces a rebuild).
Building 10M events takes disk (~3-4 GB: Parquet segments, the Merkle tile files and the
SQLite id index); the script checks free space first.

Measured (on the open ledger, warm, no reopen between runs):

* current root: ``tree.root()`` with the tree's cached root cleared before each trial,
  so the root is recomputed from the stored tiles (target <= 10 ms, median of trials);
* inclusion proof ``tree.inclusion_proof(i, size)`` for a random size and leaf
  (and for size = current) (target <= 10 ms);
* consistency proof ``tree.consistency_proof(old, new)`` between two random sizes
  (target <= 10 ms);
* rollup by model and day in Europe/Madrid: ``rollup(ledger.snapshot(), ...)`` with a
  fresh snapshot per run, after one warm-up run (target <= 0.5 s, median of runs);
* first page of the listing: ``ledger.events(tenant, limit=100)`` and with
  ``order="-seq"`` (target <= 0.2 s).

With ``--growth`` the script measures instead how the ledger copes with a long history
(issue 16's growth targets; ``--events 100000000 --growth`` is the 100M-event run):

* open: ``Ledger(path)`` of the built directory, after an untimed open and clean close
  (target <= 1 s: the manifest is read from its last checkpoint record, the index and
  trees are already level, and the id index closed cleanly has its header checked alone;
  the first open of a directory written before that record checks the index whole once);
* rollup by model and day over the last month (``start``/``end`` 30 days apart), median
  of 3 runs after a warm-up (target <= 5 s);
* full ``ledger verify`` (``verify_directory`` with ``--jobs``, default every core):
  events checked per second, and per core (printed, no target);
* incremental verify: 1,000,000 new events (``--new-events``) are appended to a second
  project and sealed (untimed), then ``verify_directory(since_checkpoint=True)``
  (target <= 15 s); the rows checked include older ones a compaction rewrote into the
  new segments; CPU seconds of all its processes are printed beside the time;
* a receipt over every event of the built project (a date range covering all of them),
  generated in a fresh child process whose peak RSS is reported (target <= 1 GiB).

Each ``--growth`` run leaves 1M more events in the second project and one more receipt
in the first; the build is reused as long as the first project holds ``--events``
events (receipt entries aside). There is no separate synthetic builder: the 100M build
is the same ``append_many`` path, ~100k events/s on a quiet machine (~20 min) and
~35-40 GiB of disk, so check space first (the script refuses without 1.5x the estimate).

Every proof is checked outside the timed region with ``ledger.tlog.merkle.verify_inclusion``
/ ``verify_consistency``, against the leaf hash recomputed from the stored event's
canonical bytes; the current root is also checked once against a root recomputed from
every leaf hash in the Parquet segments; the rollup's call count and the pages' seqs
are checked too.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa
import pyarrow.parquet as pq
from _common import (
    EventFactory,
    RecycledEventFactory,
    dir_size,
    environment,
    peak_rss_mib,
    report_latency,
)

from ledger.core.facade import Ledger
from ledger.model.event import leaf_hash_of
from ledger.tlog.merkle import verify_consistency, verify_inclusion
from projections import events as pe
from projections.rollups import rollup

TENANT = "scale"
NEW_TENANT = "scale-new"  # where --growth appends the events of the incremental verify
META = "bench-scale.json"
BYTES_PER_EVENT_ESTIMATE = 200  # Parquet + tiles + index: ~150 measured at 10M


def build(path: Path, events: int, batch: int, spread_days: int, seed: int,
          recycled: bool = False) -> dict:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    factory = (RecycledEventFactory if recycled else EventFactory)(seed,
                                                                   spread_days=spread_days)
    gen_s = 0.0
    t0 = time.perf_counter()
    ledger = Ledger(path)
    done = 0
    last = t0
    while done < events:
        n = min(batch, events - done)
        g = time.perf_counter()
        evs = factory.batch(n)
        gen_s += time.perf_counter() - g
        ledger.append_many(evs, tenant=TENANT)
        done += n
        now = time.perf_counter()
        if now - last >= 30 or done == events:
            print(f"  built {done:,} / {events:,} events ({done / (now - t0):,.0f}/s "
                  f"incl. generation), peak RSS {peak_rss_mib():,.0f} MiB", flush=True)
            last = now
    del evs
    t1 = time.perf_counter()
    ledger.flush()
    t2 = time.perf_counter()
    size = ledger.size(TENANT)
    segs = len(ledger.unit(TENANT).manifest.state.segments(TENANT))
    ledger.close()
    t3 = time.perf_counter()
    assert size == events, (size, events)
    info = {"events": events, "tenant": TENANT, "spread_days": spread_days, "seed": seed,
            "batch": batch, "build_s": t3 - t0, "generation_s": gen_s,
            "append_s": t1 - t0 - gen_s, "final_flush_s": t2 - t1, "close_s": t3 - t2,
            "segments": segs, "peak_rss_mib": peak_rss_mib(), "recycled": recycled}
    (path / META).write_text(json.dumps(info, indent=2))
    return info


def existing(path: Path, events: int) -> dict | None:
    meta = path / META
    if not meta.exists():
        return None
    info = json.loads(meta.read_text())
    if info.get("events") != events or info.get("tenant") != TENANT:
        return None
    return info


def leaf_of_event(ledger: Ledger, seq: int) -> bytes:
    """The leaf hash recomputed from the stored event's canonical bytes."""
    ev = pe.by_seq(ledger.snapshot(), TENANT, [seq])[0]
    assert ev.seq == seq
    leaf = leaf_hash_of(ev.canonical_bytes())
    assert leaf.hex() == ev.leaf_hash, f"stored leaf hash of seq {seq} is not its content's"
    return leaf


def root_from_segments(ledger: Ledger) -> tuple[bytes, int]:
    """RFC 9162 root over every leaf hash in the tenant's Parquet segments (seq order)."""
    snap = ledger.snapshot()
    files = snap.files(TENANT)
    table = pq.read_table(files, columns=["seq", "leaf_hash"]) if files else None
    if snap.tail.num_rows:
        raise SystemExit("unexpected unsealed tail after flush")
    table = table.sort_by("seq")
    seqs = table.column("seq").combine_chunks()
    n = len(seqs)
    expect = pa.array(range(n), pa.int64())
    if not seqs.equals(expect):
        raise SystemExit("segments' seqs are not exactly 0..n-1")
    leaves = table.column("leaf_hash").combine_chunks()
    level = bytes(leaves.buffers()[1])[leaves.offset * 32:(leaves.offset + n) * 32]
    del table, seqs, leaves, expect
    sha = hashlib.sha256
    while len(level) > 32:
        even = len(level) // 64 * 64
        parts = [sha(b"\x01" + level[i:i + 64]).digest() for i in range(0, even, 64)]
        if len(level) > even:
            parts.append(level[even:])
        level = b"".join(parts)
    return level, n


def growth(path: Path, args: argparse.Namespace) -> bool:
    """The growth measurements (module docstring); True if every target is met."""
    import os
    import subprocess
    from datetime import UTC, datetime, timedelta

    from ledger.core.audit import verify_directory

    ok = True
    Ledger(path).close()  # untimed: the directory as a clean close leaves it
    gc.collect()
    t, ledger = timed(Ledger, path)
    state = ledger.unit(TENANT).manifest.state
    whole = {u.tenant: getattr(u.index, "checked_whole", "always (quick_check)")
             for u in ledger.units()}
    print(f"\nopen (Ledger(path)) with {state.count:,} manifest records (last checkpoint at "
          f"record {state.base:,}), {len(state.live):,} live segments; id index checked "
          f"whole: {whole}:", flush=True)
    ok &= report_latency("open", [t], 1.0)
    try:
        end = datetime.now(UTC) + timedelta(days=1)
        start = end - timedelta(days=31)

        def month() -> list:
            return rollup(ledger.snapshot(), TENANT, ["model", "day"], start=start, end=end)

        timed(month)
        times, rows = [], []
        for _ in range(3):
            dt, rows = timed(month)
            times.append(dt)
        ok &= report_latency("rollup by model+day over the last month", times, 5.0)
        print(f"  {len(rows)} groups, {sum(r.calls for r in rows):,} calls", flush=True)
    finally:
        ledger.close()

    jobs = args.jobs or os.cpu_count() or 1
    cpu = _cpu_seconds()
    t, report = timed(lambda: verify_directory(path, jobs=jobs))
    cpu = _cpu_seconds() - cpu
    ok &= report.ok
    print(f"full verify ({jobs} processes): {report.events_checked:,} events in {t:.1f} s = "
          f"{report.events_checked / t:,.0f} events/s, "
          f"{report.events_checked / t / jobs:,.0f} events/s per core (printed, no target); "
          f"CPU {cpu:.1f} s = {report.events_checked / cpu:,.0f} events per CPU second  "
          f"{'OK' if report.ok else 'PROBLEMS: ' + str(report.problems[:3])}", flush=True)

    with Ledger(path) as led:
        factory = EventFactory(args.seed + led.size(NEW_TENANT) + 1,
                               spread_days=args.spread_days)
        done = 0
        while done < args.new_events:
            n = min(args.batch, args.new_events - done)
            led.append_many(factory.batch(n), tenant=NEW_TENANT)
            done += n
        led.flush()
    cpu = _cpu_seconds()
    t, report = timed(lambda: verify_directory(path, since_checkpoint=True, jobs=jobs))
    cpu = _cpu_seconds() - cpu
    ok &= report.ok
    ok &= report_latency(f"incremental verify of {args.new_events:,} new events", [t], 15.0)
    print(f"  {report.events_checked:,} events (the new ones and the older ones compaction "
          f"rewrote with them) and {report.segments_checked} segments checked; CPU {cpu:.1f} s "
          f"in all processes{'' if report.ok else ', PROBLEMS: ' + str(report.problems[:3])}",
          flush=True)

    child = subprocess.run(
        [sys.executable, __file__, "--receipt-child", "--dir", str(path)],
        capture_output=True, text=True, check=False)
    if child.returncode:
        print(child.stdout, child.stderr)
        return False
    out = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"receipt over {out['certified']:,} events: {out['seconds']:.1f} s", flush=True)
    rss = out["peak_rss_mib"]
    good = rss <= 1024
    print(f"receipt peak RSS (child process, incl. opening the ledger): {rss:,.0f} MiB "
          f"(target <= 1,024 MiB)  {'PASS' if good else 'FAIL'}", flush=True)
    return ok and good


def receipt_child(path: Path) -> int:
    """Generate a receipt over every event of the built project; print one JSON line."""
    from ledger.receipts.issuance import Receipts

    with Ledger(path) as led:
        t = time.perf_counter()
        out = Receipts(led).generate(TENANT, start_date="2000-01-01", end_date="2100-01-01")
        seconds = time.perf_counter() - t
    print(json.dumps({"certified": out["certified_count"], "seconds": seconds,
                      "peak_rss_mib": _high_water_mib()}))
    return 0


def _high_water_mib() -> float:
    """Peak RSS of this process image: VmHWM, which exec resets (ru_maxrss keeps the
    parent's peak across fork and exec)."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
    except OSError:  # no /proc: the rusage figure
        return peak_rss_mib()
    for line in status:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mib()


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (the verify's workers)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--dir", default="/work/bench-data/scale")
    p.add_argument("--batch", type=int, default=100_000, help="append_many size for the build")
    p.add_argument("--spread-days", type=int, default=90, help="ts spread of the built events")
    p.add_argument("--trials", type=int, default=50, help="random trials per proof measurement")
    p.add_argument("--rollup-runs", type=int, default=5)
    p.add_argument("--page-runs", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the size matches")
    p.add_argument("--no-root-check", action="store_true",
                   help="skip recomputing the root from every leaf in the segments")
    p.add_argument("--delete", action="store_true", help="delete the directory at the end")
    p.add_argument("--growth", action="store_true",
                   help="measure open, month rollup, full and incremental verify, receipt RSS")
    p.add_argument("--new-events", type=int, default=1_000_000,
                   help="events appended before the incremental verify (--growth)")
    p.add_argument("--jobs", type=int, default=None, help="verify processes (--growth)")
    p.add_argument("--recycled", action="store_true",
                   help="build from a pool of generated events with fresh ts and ids "
                        "(bench/_common.py RecycledEventFactory): the 100M build")
    p.add_argument("--receipt-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    path = Path(args.dir)
    if args.receipt_child:
        return receipt_child(path)
    print(environment())
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = True

    info = None if args.rebuild else existing(path, args.events)
    if info is None:
        free = shutil.disk_usage(path.parent).free
        need = args.events * BYTES_PER_EVENT_ESTIMATE
        print(f"building {args.events:,} events in {path} (free {free / 2**30:,.1f} GiB, "
              f"estimated need {need / 2**30:,.1f} GiB)", flush=True)
        if free < need * 1.5:
            raise SystemExit("not enough free disk space for the build")
        info = build(path, args.events, args.batch, args.spread_days, args.seed,
                     args.recycled)
        print(f"build: {info['events']:,} events in {info['build_s']:.1f} s "
              f"({info['events'] / info['build_s']:,.0f} events/s incl. "
              f"{info['generation_s']:.1f} s of event generation; ledger time "
              f"{info['append_s']:.1f} s append_many + {info['final_flush_s']:.1f} s final "
              f"flush + {info['close_s']:.1f} s close = "
              f"{info['events'] / (info['build_s'] - info['generation_s']):,.0f} events/s); "
              f"{info['segments']} live segments; peak RSS of the build "
              f"{info['peak_rss_mib']:,.0f} MiB", flush=True)
    else:
        print(f"reusing {path}: {info['events']:,} events (built in {info['build_s']:.0f} s, "
              f"peak RSS of that build {info['peak_rss_mib']:,.0f} MiB)", flush=True)
    print(f"data directory: {dir_size(str(path)) / 2**30:,.2f} GiB", flush=True)
    if args.growth:
        ok = growth(path, args)
        print(f"\npeak RSS of this process: {peak_rss_mib():,.0f} MiB")
        return 0 if ok else 1

    gc.collect()
    t, ledger = timed(Ledger, path)
    print(f"open (Ledger(path)): {t:.2f} s", flush=True)
    rng = random.Random(args.seed)
    try:
        n = ledger.size(TENANT)
        assert n == args.events, (n, args.events)
        tree = ledger.tree(TENANT)
        segs = ledger.unit(TENANT).manifest.state.segments(TENANT)
        print(f"tenant {TENANT!r}: {n:,} events, {len(segs)} live segments, tree size "
              f"{tree.size:,}", flush=True)

        # -- current root ---------------------------------------------------------------
        print(f"\nMerkle tree at {n:,} leaves ({args.trials} trials each):", flush=True)
        cached = tree.root()
        times = []
        for _ in range(args.trials):
            tree._root = None  # force recomputation from the tiles (bench only)
            dt, root = timed(tree.root)
            times.append(dt)
            assert root == cached
        ok &= report_latency("current root (recomputed from tiles)", times, 0.010)
        hit = [timed(ledger.root, TENANT)[0] for _ in range(args.trials)]
        print(f"  (cached ledger.root(): median {statistics.median(hit) * 1e6:.1f} µs)")
        if not args.no_root_check:
            t = time.perf_counter()
            full, leaves = root_from_segments(ledger)
            assert leaves == n
            if full != cached:
                print("  ROOT MISMATCH: the tree's root differs from the segments' leaves")
                ok = False
            else:
                print(f"  verified: root equals the root recomputed from all {n:,} leaf "
                      f"hashes in the Parquet segments ({time.perf_counter() - t:.1f} s, "
                      "untimed)", flush=True)
        times = []
        for _ in range(args.trials):
            size = rng.randint(1, n)
            dt, _r = timed(tree.root, size)
            times.append(dt)
        print(f"  (historical root(size) at random sizes: median "
              f"{statistics.median(times) * 1e3:.3f} ms, max {max(times) * 1e3:.3f} ms)")

        # -- inclusion proofs -------------------------------------------------------------
        def inclusion_trials(label: str, pick) -> bool:
            times, checks = [], []
            for _ in range(args.trials):
                size, index = pick()
                dt, proof = timed(tree.inclusion_proof, index, size)
                times.append(dt)
                checks.append((index, size, proof))
            for index, size, proof in checks:  # untimed verification
                root = cached if size == n else tree.root(size)
                verify_inclusion(leaf_of_event(ledger, index), index, size, proof, root)
            res = report_latency(label, times, 0.010)
            print(f"  verified {len(checks)} proofs with verify_inclusion against the leaf "
                  "hash recomputed from each stored event", flush=True)
            return res

        def random_size_and_index() -> tuple[int, int]:
            size = rng.randint(1, n)
            return size, rng.randrange(size)

        ok &= inclusion_trials("inclusion proof (random size, random leaf)",
                               random_size_and_index)
        ok &= inclusion_trials("inclusion proof (current size, random leaf)",
                               lambda: (n, rng.randrange(n)))

        # -- consistency proofs -----------------------------------------------------------
        times, checks = [], []
        for _ in range(args.trials):
            a, b = sorted(rng.sample(range(1, n + 1), 2))
            dt, proof = timed(tree.consistency_proof, a, b)
            times.append(dt)
            checks.append((a, b, proof))
        for a, b, proof in checks:
            verify_consistency(a, b, tree.root(a), cached if b == n else tree.root(b), proof)
        ok &= report_latency("consistency proof (two random sizes)", times, 0.010)
        print(f"  verified {len(checks)} proofs with verify_consistency", flush=True)

        # -- rollup -----------------------------------------------------------------------
        print(f"\nrollup by model and day, Europe/Madrid (fresh snapshot each run, "
              f"1 warm-up + {args.rollup_runs} runs):", flush=True)

        def one_rollup():
            return rollup(ledger.snapshot(), TENANT, ["model", "day"], tz="Europe/Madrid")

        dt, rows = timed(one_rollup)
        print(f"  warm-up: {dt:.3f} s, {len(rows)} groups", flush=True)
        times = []
        for _ in range(args.rollup_runs):
            dt, rows = timed(one_rollup)
            times.append(dt)
        calls = sum(r.calls for r in rows)
        snap_t = statistics.median(timed(ledger.snapshot)[0] for _ in range(5))
        ok &= report_latency("rollup by model+day (Europe/Madrid)", times, 0.5)
        print(f"  {len(rows)} groups, {calls:,} calls in total "
              f"({'= events, verified' if calls == n else 'MISMATCH'}); ledger.snapshot() "
              f"alone: {snap_t * 1e3:.2f} ms", flush=True)
        ok &= calls == n

        # -- first pages --------------------------------------------------------------------
        print(f"\nfirst page of the event listing ({args.page_runs} runs each):", flush=True)
        for order, want in (("seq", list(range(100))),
                            ("-seq", list(range(n - 1, n - 101, -1)))):
            ledger.events(TENANT, limit=100, order=order)  # warm-up
            times = []
            for _ in range(args.page_runs):
                dt, page = timed(lambda o=order: ledger.events(TENANT, limit=100, order=o))
                times.append(dt)
            got = [e.seq for e in page]
            ok &= report_latency(f"events(limit=100, order={order!r})", times, 0.2)
            if got != want:
                print(f"  WRONG PAGE: seqs {got[:3]}... want {want[:3]}...")
                ok = False
            else:
                print(f"  verified: seqs {got[0]}..{got[-1]}", flush=True)
    finally:
        ledger.close()
    print(f"\npeak RSS of this process: {peak_rss_mib():,.0f} MiB")
    if args.delete:
        shutil.rmtree(path)
        print(f"deleted {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
