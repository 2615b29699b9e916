"""Rollups by a metadata dimension at scale (default: 10,000,000 events in one tenant).

    python bench/dimensions.py                                  # build if needed, then measure
    python bench/dimensions.py --events 1000000 --dir /work/bench-data/dims-1m   # quicker
    python bench/dimensions.py --rebuild                        # force a rebuild

The data directory (default ``/work/bench-data/dims``, outside the repository) is built
once with ``Ledger.append_many`` in big batches of the realistic events of
``bench/_common.py``, each with a ``customer`` metadata key (one of ``--customers``, 1000
by default; 5% of events have none), the project declaring ``customer`` as a dimension
before the first event (so every segment carries its ``meta.customer`` column). It is
reused when it holds exactly ``--events`` events.

Measured on the open ledger (one warm-up, then the median of ``--runs`` rounds, each
running every rollup once in turn with a fresh snapshot): the rollup by model, by
customer (declared: the stored column), by customer and model, and by ``team`` (an
undeclared key: the value is extracted from the metadata JSON). Target: by customer
within 2x of by model. Every rollup's total calls and cost are checked equal to the
by-model rollup's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import EventFactory, environment, peak_rss_mib, verdict

from ledger.core.facade import Ledger
from projections.rollups import rollup

TENANT = "dims"
META = "bench-dimensions.json"
TARGET = 2.0


def build(path: Path, events: int, batch: int, customers: int, seed: int) -> dict:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    factory = EventFactory(seed, spread_days=90)
    rng = factory.rng
    t0 = time.perf_counter()
    ledger = Ledger(path)
    ledger.dimensions.set(TENANT, ["customer"])
    done, last = 0, t0
    while done < events:
        n = min(batch, events - done)
        evs = factory.batch(n)
        for ev in evs:
            if rng.random() < 0.95:
                meta = ev.setdefault("metadata", {})
                meta["customer"] = f"cust-{rng.randrange(customers):04d}"
        ledger.append_many(evs, tenant=TENANT)
        done += n
        now = time.perf_counter()
        if now - last >= 30 or done == events:
            print(f"  built {done:,} / {events:,} events ({done / (now - t0):,.0f}/s), "
                  f"peak RSS {peak_rss_mib():,.0f} MiB", flush=True)
            last = now
    ledger.flush()
    size = ledger.size(TENANT)
    segs = len(ledger.unit(TENANT).manifest.state.segments(TENANT))
    ledger.close()
    assert size == events, (size, events)
    info = {"events": events, "tenant": TENANT, "customers": customers, "seed": seed,
            "build_s": time.perf_counter() - t0, "segments": segs}
    (path / META).write_text(json.dumps(info, indent=2))
    return info


def existing(path: Path, events: int, customers: int) -> dict | None:
    meta = path / META
    if not meta.exists():
        return None
    info = json.loads(meta.read_text())
    if info.get("events") != events or info.get("customers") != customers:
        return None
    return info


def measure(ledger: Ledger, groupings: dict[str, list[str]], runs: int
            ) -> dict[str, tuple[float, list[float], list]]:
    """Each grouping's rollup, ``runs`` rounds of one run of each in turn (so a drift of
    the shared machine's speed hits every grouping alike), after one warm-up each."""
    rows = {name: rollup(ledger.snapshot(), TENANT, by) for name, by in groupings.items()}
    times: dict[str, list[float]] = {name: [] for name in groupings}
    for _ in range(runs):
        for name, by in groupings.items():
            snap = ledger.snapshot()
            t = time.perf_counter()
            rows[name] = rollup(snap, TENANT, by)
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), times[name], rows[name])
            for name in groupings}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--dir", default="/work/bench-data/dims")
    p.add_argument("--batch", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--rebuild", action="store_true")
    args = p.parse_args()
    path = Path(args.dir)
    print(environment())
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None if args.rebuild else existing(path, args.events, args.customers)
    if info is None:
        print(f"building {args.events:,} events in {path}", flush=True)
        info = build(path, args.events, args.batch, args.customers, args.seed)
        print(f"build: {info['events']:,} events in {info['build_s']:.0f} s, "
              f"{info['segments']} segments", flush=True)
    else:
        print(f"reusing {path}: {info['events']:,} events", flush=True)
    ledger = Ledger(path)
    try:
        figures = {}
        totals = {}
        measured = measure(ledger, {"model": ["model"], "customer": ["customer"],
                                    "customer,model": ["customer", "model"],
                                    "team (undeclared)": ["team"]}, args.runs)
        for name, (median, times, rows) in measured.items():
            figures[name] = median
            totals[name] = (sum(r.calls for r in rows), sum(r.cost_nanos for r in rows),
                            len(rows))
            print(f"rollup by {name}: {median:.3f} s, {len(rows):,} rows   "
                  f"[runs: {', '.join(f'{t:.3f}' for t in times)}]", flush=True)
    finally:
        ledger.close()
    ok = all(t[:2] == totals["model"][:2] for t in totals.values())
    print(f"totals equal across rollups (calls, cost_nanos = {totals['model'][:2]}): "
          f"{verdict(ok)}")
    ratio = figures["customer"] / figures["model"]
    ok &= ratio <= TARGET
    print(f"by customer / by model: {ratio:.2f}x (target <= {TARGET:.0f}x)  "
          f"{verdict(ratio <= TARGET)}")
    for name in ("customer,model", "team (undeclared)"):
        print(f"by {name} / by model: {figures[name] / figures['model']:.2f}x "
              "(for information)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
