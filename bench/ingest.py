"""Ingest throughput of the embedded ledger.

    python bench/ingest.py                      # defaults: 1,000,000 events x 3, 16 writers x 3
    python bench/ingest.py --events 200000 --repeats 3 --writer-seconds 5
    python bench/ingest.py --only batched       # or --only concurrent
    python bench/ingest.py --profile batched    # cProfile one run, print the hotspots

(a) batched appends sealed to Parquet: ``Ledger.append_many`` in batches of 10,000
    realistic events (see ``bench/_common.py``), then ``flush()``; the clock runs from the
    first ``append_many`` to the return of ``flush()``, i.e. until every event is sealed
    into Parquet segments committed by the manifest. Fresh data directory per run.
    Target >= 100,000 events/s (median of the runs).
(b) single-event durable appends from 16 concurrent writer threads, each calling
    ``Ledger.append(event)`` in a loop (each call returns after its fsync, shared by group
    commit), for ~10 s or ~50k events per run. Target >= 5,000 events/s (median).

The events are generated before the clock starts (and frozen out of the garbage
collector's view with ``gc.freeze()``), so only ledger work is timed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import EventFactory, dir_size, environment, peak_rss_mib, report_rate

from ledger.core.facade import Ledger

TENANT = "bench"
BATCHED_TARGET = 100_000
CONCURRENT_TARGET = 5_000


def fresh_dir(base: Path, name: str) -> Path:
    path = base / name
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# -- (a) batched --------------------------------------------------------------------------
def batched_run(base: Path, events: int, batch: int, seed: int, *, keep: bool = False,
                profiler: cProfile.Profile | None = None) -> dict:
    factory = EventFactory(seed)
    batches = []
    left = events
    while left > 0:
        n = min(batch, left)
        batches.append(factory.batch(n))
        left -= n
    gc.collect()
    gc.freeze()  # the pre-generated input is not the ledger's garbage to scan
    path = fresh_dir(base, f"batched-{seed}")
    ledger = Ledger(path)
    try:
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        for b in batches:
            ledger.append_many(b, tenant=TENANT)
        t1 = time.perf_counter()
        sealed = ledger.flush()
        t2 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
        size = ledger.size(TENANT)
        segs = ledger.unit(TENANT).manifest.state.segments(TENANT)
        sealed_rows = sum(s.rows for s in segs)
        tail = ledger.unit(TENANT).tail.rows()
    finally:
        ledger.close()
    batches.clear()
    gc.unfreeze()
    gc.collect()
    on_disk = dir_size(str(path))
    if not keep:
        shutil.rmtree(path)
    assert size == events, f"ledger size {size} != {events}"
    assert sealed_rows == events and tail == 0, (sealed_rows, tail)
    return {"events": events, "append_s": t1 - t0, "flush_s": t2 - t1, "total_s": t2 - t0,
            "rate": events / (t2 - t0), "segments": len(segs), "last_flush": sealed.events,
            "bytes": on_disk}


def run_batched(args: argparse.Namespace, base: Path) -> bool:
    print(f"\n(a) batched append_many({args.batch:,}) + flush(), {args.events:,} events, "
          f"{args.repeats} runs, fresh directory each", flush=True)
    rates = []
    for r in range(args.repeats):
        res = batched_run(base, args.events, args.batch, seed=1000 + r, keep=args.keep)
        rates.append(res["rate"])
        print(f"  run {r + 1}: {res['rate']:,.0f} events/s  (append_many {res['append_s']:.2f} s"
              f" + final flush {res['flush_s']:.2f} s = "
              f"{res['total_s']:.2f} s; {res['segments']} live segments, "
              f"{res['bytes'] / 2**20:,.0f} MiB on disk)", flush=True)
    return report_rate("batched appends sealed to Parquet", rates, BATCHED_TARGET)


# -- (b) concurrent single appends ----------------------------------------------------------
class SyncCounter:
    """Counts fdatasync/fsync calls made during a run (to show group commit at work)."""

    def __init__(self) -> None:
        self.calls = 0
        self._orig = (os.fdatasync, os.fsync)

    def __enter__(self) -> SyncCounter:
        fdatasync, fsync = self._orig

        def counted_fdatasync(fd: int) -> None:
            self.calls += 1
            fdatasync(fd)

        def counted_fsync(fd: int) -> None:
            self.calls += 1
            fsync(fd)

        os.fdatasync, os.fsync = counted_fdatasync, counted_fsync
        return self

    def __exit__(self, *exc: object) -> None:
        os.fdatasync, os.fsync = self._orig


def concurrent_run(base: Path, writers: int, seconds: float, max_events: int, seed: int,
                   *, keep: bool = False) -> dict:
    per_writer = max_events // writers + 1
    factory = EventFactory(seed)
    inputs = [factory.batch(per_writer) for _ in range(writers)]
    gc.collect()
    gc.freeze()
    path = fresh_dir(base, f"concurrent-{seed}")
    ledger = Ledger(path)
    start = threading.Barrier(writers + 1)
    stop = threading.Event()
    counts = [0] * writers
    latencies: list[list[float]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        mine, lat = inputs[k], latencies[k]
        start.wait()
        try:
            for ev in mine:
                if stop.is_set():
                    break
                t = time.perf_counter()
                ledger.append(ev, tenant=TENANT)
                lat.append(time.perf_counter() - t)
                counts[k] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(writers)]
    for t in threads:
        t.start()
    with SyncCounter() as syncs:
        start.wait()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds and any(t.is_alive() for t in threads):
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        t1 = time.perf_counter()
        n_syncs = syncs.calls
    size = ledger.size(TENANT)
    ledger.close()
    inputs.clear()
    gc.unfreeze()
    gc.collect()
    if not keep:
        shutil.rmtree(path)
    if errors:
        raise errors[0]
    done = sum(counts)
    assert size == done, (size, done)
    lat = sorted(x for xs in latencies for x in xs)
    return {"events": done, "seconds": t1 - t0, "rate": done / (t1 - t0), "syncs": n_syncs,
            "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "max": lat[-1]}


def run_concurrent(args: argparse.Namespace, base: Path) -> bool:
    print(f"\n(b) {args.writers} threads x Ledger.append(one event), durable (group-commit "
          f"fsync), ~{args.writer_seconds:g} s or {args.writer_events:,} events per run, "
          f"{args.repeats} runs", flush=True)
    rates = []
    for r in range(args.repeats):
        res = concurrent_run(base, args.writers, args.writer_seconds, args.writer_events,
                             seed=2000 + r, keep=args.keep)
        rates.append(res["rate"])
        per_sync = res["events"] / res["syncs"] if res["syncs"] else float("nan")
        print(f"  run {r + 1}: {res['rate']:,.0f} events/s  ({res['events']:,} events in "
              f"{res['seconds']:.2f} s; {res['syncs']:,} fsyncs = {per_sync:.1f} events/fsync; "
              f"latency p50 {res['p50'] * 1e3:.2f} ms, p99 {res['p99'] * 1e3:.2f} ms, "
              f"max {res['max'] * 1e3:.1f} ms)", flush=True)
    return report_rate(f"durable single appends, {args.writers} concurrent writers", rates,
                       CONCURRENT_TARGET)


# -- profiling -----------------------------------------------------------------------------
def profile(args: argparse.Namespace, base: Path) -> None:
    prof = cProfile.Profile()
    if args.profile == "batched":
        res = batched_run(base, args.events, args.batch, seed=999, profiler=prof)
        print(f"profiled batched run: {res['rate']:,.0f} events/s under cProfile "
              f"({res['total_s']:.2f} s)")
    else:
        raise SystemExit("cProfile only sees the main thread; profile the concurrent run "
                         "with py-spy: py-spy record --idle -o out.svg -- python "
                         "bench/ingest.py --only concurrent --repeats 1")
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(30)
    if args.profile_out:
        stats.dump_stats(args.profile_out)
        print(f"profile written to {args.profile_out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="events per batched run")
    p.add_argument("--batch", type=int, default=10_000, help="events per append_many call")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    p.add_argument("--writers", type=int, default=16, help="concurrent writer threads")
    p.add_argument("--writer-seconds", type=float, default=10.0, help="max seconds per run")
    p.add_argument("--writer-events", type=int, default=50_000, help="max events per run")
    p.add_argument("--only", choices=["batched", "concurrent"], help="run one measurement")
    p.add_argument("--dir", default="/work/bench-data/ingest",
                   help="scratch directory for the data directories (deleted after each run)")
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    p.add_argument("--profile", choices=["batched", "concurrent"],
                   help="run one cProfile'd run instead of the benchmark")
    p.add_argument("--profile-out", help="also dump the pstats to this file")
    args = p.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    print(environment())
    print(f"data directories under {base} (free: {shutil.disk_usage(base).free / 2**30:,.1f} "
          "GiB)", flush=True)
    if args.profile:
        profile(args, base)
        return 0
    ok = True
    t = time.perf_counter()
    if args.only in (None, "batched"):
        ok &= run_batched(args, base)
    if args.only in (None, "concurrent"):
        ok &= run_concurrent(args, base)
    print(f"\ntotal wall time {time.perf_counter() - t:.0f} s; peak RSS "
          f"{peak_rss_mib():,.0f} MiB; median of runs reported")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
