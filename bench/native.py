"""Micro-benchmark of the C loops (``ledger.model._native``) against their pure-Python
counterparts: µs per event for the column checks (scan), the canonical bytes with leaf
hashes and digests (encode), one level of Merkle parents, the whole ``prepare_batch``,
and SHA-256 inside the C loops through OpenSSL (EVP_Digest) and through hashlib.

    python -m bench.native [--events 20000] [--repeats 5]     (from the repository root)

Prints medians of CPU time (steadier than wall time on a shared machine). No targets: it
answers "do the C loops still pay?" (see bench/README.md).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench._common import EventFactory
from ledger.model import batch
from ledger.model.pricing import PriceBook
from ledger.tlog import merkle


def _median_us(fn: Callable[[], Any], n: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        fn()
        runs.append((time.process_time() - start) / n * 1e6)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    native = batch._native
    if native is None:
        print("ledger.model._native is not built (or LLMRING_PURE_PYTHON is set): "
              "nothing to compare")
        return 1
    n, repeats = args.events, args.repeats
    events = EventFactory(7, end=datetime.now(UTC) - timedelta(days=1)).batch(n)
    received = [1_790_000_000_000_000] * n
    book = PriceBook()
    batch.prepare_batch(events[:100], tenant="acme", received_us=received[:100], pricer=book)

    prepared = batch.prepare_batch(events, tenant="acme", received_us=received, pricer=book)
    columns = tuple(
        prepared.tenant if key == "tenant" else batch.CANONICAL_VERSION
        if key == "v" else prepared.column(batch._SOURCE.get(key, key))
        for key in batch.schema.CANONICAL_KEYS)
    flags = (prepared.ts_given, prepared.cost_given, [not g for g in prepared.generated],
             [False] * n)
    leaves = prepared.leaf_hash

    rows: list[tuple[str, float, float]] = []

    def both(label: str, c: Callable[[], Any], python: Callable[[], Any]) -> None:
        rows.append((label, _median_us(c, n, repeats), _median_us(python, n, repeats)))

    both("scan (column checks)", lambda: native.scan(
        events, received, 0, 2**62, batch._usd_nanos,
        (batch.MAX_METADATA_BYTES, batch.MAX_SAFE_INT, batch.MAX_COST_NANOS)),
        lambda: batch._scan_python(events, received))
    both("encode (canonical, leaf, digest)", lambda: native.encode(columns, *flags),
         lambda: batch._encode_python(columns, *flags))
    both("Merkle parents (per leaf)", lambda: native.parent_hashes(leaves),
         lambda: merkle.parent_hashes_python(leaves))

    def whole(use_native: bool) -> Callable[[], Any]:
        def run() -> None:
            saved = batch._native
            batch._native = native if use_native else None
            try:
                batch.prepare_batch(events, tenant="acme", received_us=received, pricer=book)
            finally:
                batch._native = saved
        return run

    both("prepare_batch (everything)", whole(True), whole(False))

    print(f"{n:,} events, median of {repeats} runs, µs per event")
    print(f"{'':36} {'C':>8} {'Python':>8} {'C saves':>8}")
    for label, c, python in rows:
        print(f"{label:36} {c:8.3f} {python:8.3f} {python - c:8.3f}")

    before = native.sha256_backend()
    times = {}
    for backend in ("openssl", "hashlib"):
        try:
            native.sha256_backend(backend)
        except ValueError:
            continue
        times[backend] = _median_us(lambda: native.encode(columns, *flags), n, repeats)
    native.sha256_backend(before)
    print("encode with SHA-256 through: " + ", ".join(
        f"{name} {us:.3f} µs/event" for name, us in times.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
