"""Shared helpers for the benchmarks: realistic event generation, timing, reporting.

Not a benchmark itself (run ``bench/ingest.py`` or ``bench/scale.py``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import resource
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# (provider, model, alias, typical input tokens, typical output tokens)
# The last two models are unknown to the price table: they are recorded "unpriced".
MODELS: list[tuple[str, str, str, int, int]] = [
    ("openai", "gpt-4o", "balanced", 1800, 350),
    ("openai", "gpt-4o-mini", "fast", 900, 200),
    ("openai", "o3-mini", "reasoning", 2500, 1200),
    ("anthropic", "claude-sonnet-4-5", "deep", 4000, 600),
    ("anthropic", "claude-3-5-haiku-latest", "fast", 1200, 250),
    ("google", "gemini-2.5-flash", "cheap", 1500, 300),
    ("google", "gemini-2.5-pro", "long-context", 20000, 800),
    ("mistral", "mistral-large-latest", "eu", 1600, 400),
    ("acme", "acme-llm-1", "internal", 800, 150),
    ("ollama", "local-llama-3-8b", "local", 600, 180),
]
# Relative call frequency of each model above.
WEIGHTS = [20, 30, 6, 10, 10, 12, 3, 4, 3, 2]
PROFILES = ["default", "default", "default", "prod", "staging"]
ORIGINS = ["llmring", "llmring", "llmring-server", None]

CLIENT_ID_SHARE = 0.25  # events that carry a client-supplied event_id (idempotency key)
CLIENT_COST_SHARE = 0.30  # events whose cost the client/provider states
CONVERSATION_SHARE = 0.10  # kind="conversation" (with content_sha256)
SPREAD_DAYS = 30  # events' ts spread over this many days before "now"


class EventFactory:
    """Deterministic (seeded) generator of realistic event dicts for ``append_many``."""

    def __init__(self, seed: int = 1, *, spread_days: int = SPREAD_DAYS,
                 end: datetime | None = None) -> None:
        self.rng = random.Random(seed)
        self.end = (end or datetime.now(UTC)) - timedelta(minutes=5)
        self.span_us = spread_days * 86_400_000_000
        self.run_tag = uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]
        self.counter = 0
        self._cum = []
        total = 0
        for w in WEIGHTS:
            total += w
            self._cum.append(total)
        self._total = total

    def one(self) -> dict[str, Any]:
        rng = self.rng
        self.counter += 1
        r = rng.random() * self._total
        k = 0
        while self._cum[k] < r:
            k += 1
        provider, model, alias, tin, tout = MODELS[k]
        inp = max(1, int(rng.expovariate(1 / tin)))
        out = max(1, int(rng.expovariate(1 / tout)))
        cached = int(inp * rng.choice((0, 0, 0, 0.25, 0.5, 0.8)))
        reasoning = int(out * 0.6) if alias == "reasoning" else 0
        ts = self.end - timedelta(microseconds=rng.randrange(self.span_us))
        ev: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "alias": alias,
            "profile": rng.choice(PROFILES),
            "ts": ts,
            "input_tokens": inp,
            "output_tokens": out,
            "cached_input_tokens": cached,
            "reasoning_tokens": reasoning,
            "latency_ms": int(rng.lognormvariate(6.5, 0.6)),
            "origin": rng.choice(ORIGINS),
        }
        if rng.random() < CLIENT_ID_SHARE:
            ev["event_id"] = f"req-{self.run_tag}-{self.counter:010d}"
        if rng.random() < CLIENT_COST_SHARE:
            # a provider-reported cost in USD (float, as the usage-log API sends it)
            ev["cost"] = round((inp * 2.5 + out * 10) / 1e6, 9)
            ev["cost_source"] = "provider"
        if rng.random() < CONVERSATION_SHARE:
            ev["kind"] = "conversation"
            ev["conversation_id"] = f"conv-{self.run_tag}-{self.counter:010d}"
            ev["content_sha256"] = f"{rng.getrandbits(256):064x}"
        if rng.random() < 0.5:
            ev["metadata"] = {"team": rng.choice(("search", "support", "billing", "ml")),
                              "feature": rng.choice(("chat", "summarize", "classify", "rag")),
                              "user": f"u{rng.randrange(5000)}"}
        return ev

    def batch(self, n: int) -> list[dict[str, Any]]:
        return [self.one() for _ in range(n)]


class RecycledEventFactory(EventFactory):
    """``EventFactory``'s events at a fraction of its cost, for builds of 100M events:
    a pool of ``pool`` generated events is drawn from (seeded); each draw gets a ``ts``
    drawn from ``4 × pool`` generated times and fresh unique ids (``event_id``,
    ``conversation_id``) where the pooled event has them, so every event is distinct and
    goes through the full ``append_many`` path; only the mix of models, tokens and
    metadata repeats with the pool's period."""

    def __init__(self, seed: int = 1, *, spread_days: int = SPREAD_DAYS,
                 end: datetime | None = None, pool: int = 200_000) -> None:
        super().__init__(seed, spread_days=spread_days, end=end)
        self.pool = [EventFactory.one(self) for _ in range(pool)]
        self.times = [self.end - timedelta(microseconds=self.rng.randrange(self.span_us))
                      for _ in range(4 * pool)]

    def one(self) -> dict[str, Any]:
        r = self.rng.random
        self.counter += 1
        ev = self.pool[int(r() * len(self.pool))].copy()
        ev["ts"] = self.times[int(r() * len(self.times))]
        if "event_id" in ev:
            ev["event_id"] = f"req-{self.run_tag}-r{self.counter:010d}"
        if "conversation_id" in ev:
            ev["conversation_id"] = f"conv-{self.run_tag}-r{self.counter:010d}"
        return ev


def environment() -> str:
    try:
        import duckdb
        import pyarrow
        import pydantic
        libs = (f"pyarrow {pyarrow.__version__}, duckdb {duckdb.__version__}, "
                f"pydantic {pydantic.__version__}")
    except Exception:  # pragma: no cover
        libs = "?"
    cpus = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = cpus
    from ledger.model.batch import NATIVE
    loops = ("C (ledger.model._native)" if NATIVE
             else "pure Python (LLMRING_PURE_PYTHON is set)"
             if os.environ.get("LLMRING_PURE_PYTHON")
             else "pure Python (ledger.model._native not built)")
    return (f"environment: {cpus} CPUs ({usable} usable), Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()} "
            f"{platform.machine()}; {libs}; batch loops: {loops}")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB); ru_maxrss is KiB on Linux."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / (1024 * 1024)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_rate(label: str, values: list[float], target: float, unit: str = "events/s") -> bool:
    med = statistics.median(values)
    ok = med >= target
    runs = ", ".join(f"{v:,.0f}" for v in values)
    print(f"{label}: {med:,.0f} {unit} (target >= {target:,.0f})  {verdict(ok)}"
          f"   [runs: {runs}]", flush=True)
    return ok


def report_latency(label: str, seconds: list[float], target_s: float) -> bool:
    med = statistics.median(seconds)
    ok = med <= target_s
    fmt = (lambda s: f"{s * 1e3:.3f} ms") if target_s < 1 else (lambda s: f"{s:.3f} s")
    p90 = sorted(seconds)[max(0, int(len(seconds) * 0.9) - 1)]
    print(f"{label}: {fmt(med)} (target <= {fmt(target_s)})  {verdict(ok)}"
          f"   [n={len(seconds)}, min {fmt(min(seconds))}, p90 {fmt(p90)}, "
          f"max {fmt(max(seconds))}]", flush=True)
    return ok


def dir_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return total
