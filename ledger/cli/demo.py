"""``llmring demo``: fill the data directory with realistic, deterministic sample usage
(three projects, several providers, models and aliases, conversations with their paired
usage logs, provider-reported and price-table costs, one unpriced local model) and show
what the ledger makes of it.

Every call's content depends only on the seed, its number and the window's end day, and
its event_id is derived from them, so running the demo again records nothing new.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from ledger.cli.context import (
    App,
    cost_cell,
    json_option,
    local_only,
    new_table,
    num,
    pass_app,
    print_json,
    print_table,
    stdout_console,
    usd,
)
from ledger.model.money import nanos_to_decimal

PROJECTS = {"acme-support": 50, "acme-search": 35, "default": 15}
ALIAS_MIX = {
    "acme-support": {"fast": 6, "balanced": 3, "deep": 1},
    "acme-search": {"fast": 7, "balanced": 2, "deep": 1},
    "default": {"fast": 3, "balanced": 4, "deep": 3},
}
ROUTES = {  # alias → (provider, model, weight); model ids the price table knows
    "fast": [("openai", "gpt-4o-mini", 5), ("google", "gemini-2.5-flash", 3),
             ("anthropic", "claude-haiku-4-5", 2)],
    "balanced": [("openai", "gpt-4o", 4), ("anthropic", "claude-sonnet-4-5", 5)],
    "deep": [("anthropic", "claude-sonnet-4-5", 3), ("google", "gemini-2.5-pro", 2)],
}
LOCAL = ("ollama", "llama3.1:8b")  # a self-hosted model: unknown to the price table
LOCAL_EVERY = 150  # one call in LOCAL_EVERY (starting with call 7) uses it
TOKENS = {"fast": (900, 180), "balanced": (2500, 450), "deep": (9000, 1500),
          "local": (600, 150)}  # median input, output tokens
MS_PER_OUTPUT_TOKEN = {"fast": 6, "balanced": 14, "deep": 22, "local": 30}
FEATURES = {
    "acme-support": ["chat", "ticket-summary", "reply-draft"],
    "acme-search": ["query-rewrite", "rerank", "answer"],
    "default": ["notebook", "eval", "prototype"],
}
CONVERSATION_SHARE = {"acme-support": 0.45, "acme-search": 0.1, "default": 0.2}
PROVIDER_COST_SHARE = 0.12  # calls whose cost the provider reported
HOUR_WEIGHTS = [0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 2, 4, 5, 5,
                4, 3, 4, 5, 5, 4, 3, 1.5, 1, 0.6, 0.4, 0.2]  # local hour of day
WEEKDAY_WEIGHTS = [1, 1, 1, 1, 0.9, 0.2, 0.15]  # Monday … Sunday
OFFICE = ZoneInfo("Europe/Madrid")
SUMMARY_PROJECT = "acme-support"


@dataclass
class Call:
    project: str
    event: dict[str, Any]
    usage_log: dict[str, Any] | None = None  # posted after a conversation event


@dataclass
class Tally:
    created: int = 0
    repeats: int = 0
    paired: int = 0


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_call(seed: int, days: int, anchor: date, n: int, pricer: Any) -> Call:
    """Call number ``n``: a function of (seed, days, anchor, n) alone."""
    rng = random.Random(f"llmring-demo/{seed}/{n}")
    project = _pick(rng, PROJECTS)
    if n % LOCAL_EVERY == 7:
        alias, (provider, model) = "local", LOCAL
    else:
        alias = _pick(rng, ALIAS_MIX[project])
        routes = ROUTES[alias]
        provider, model, _ = rng.choices(routes, weights=[w for *_, w in routes])[0]
    window = [anchor - timedelta(days=k) for k in range(1, days + 1)]
    day = rng.choices(window, weights=[WEEKDAY_WEIGHTS[d.weekday()] for d in window])[0]
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    local = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60),
                                       rng.randrange(1_000_000)), tzinfo=OFFICE)
    ts = local.astimezone(UTC)
    mu_in, mu_out = TOKENS[alias]
    input_tokens = max(1, int(rng.lognormvariate(math.log(mu_in), 0.6)))
    output_tokens = max(1, int(rng.lognormvariate(math.log(mu_out), 0.5)))
    cached = 0
    if provider in ("openai", "anthropic") and rng.random() < 0.35:
        cached = int(input_tokens * rng.uniform(0.2, 0.8))
    reasoning = int(output_tokens * rng.uniform(0.3, 0.6)) if alias == "deep" else 0
    latency = int((250 + output_tokens * MS_PER_OUTPUT_TOKEN[alias]) * rng.uniform(0.7, 1.4))
    event: dict[str, Any] = {
        "event_id": f"demo-{seed}-{days}d-{n:06d}",
        "ts": ts,
        "provider": provider,
        "model": model,
        "alias": alias,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached,
        "reasoning_tokens": reasoning,
        "latency_ms": latency,
        "origin": "llmring-demo",
        "metadata": {"feature": rng.choice(FEATURES[project]),
                     "user": f"u_{rng.randrange(1, 400):04d}"},
    }
    if n == 0:  # lets a later run find the window this data was made for
        event["metadata"]["demo_anchor"] = anchor.isoformat()
    if rng.random() < PROVIDER_COST_SHARE and pricer is not None:
        price = pricer.price(provider, model, input_tokens, output_tokens, cached, 0,
                             reasoning, ts)
        if price is not None:
            event["cost"] = str(nanos_to_decimal(price.cost_nanos))
            event["cost_source"] = "provider"
    if rng.random() >= CONVERSATION_SHARE[project]:
        return Call(project, event)
    conversation_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    event.update(kind="conversation", conversation_id=conversation_id,
                 content_sha256=hashlib.sha256(f"demo {seed} {n}".encode()).hexdigest())
    usage_log = {k: v for k, v in event.items()
                 if k not in ("kind", "conversation_id", "content_sha256", "metadata")}
    usage_log["event_id"] = f"{event['event_id']}-u"
    return Call(project, event, usage_log)


def _anchor(led: Any, seed: int, days: int) -> date:
    """The window's end day: the one an earlier run used, else today (UTC)."""
    first = f"demo-{seed}-{days}d-000000"
    for project in PROJECTS:
        event = led.get(project, first) if project in led.tenants() else None
        if event is not None and "demo_anchor" in event.metadata:
            return date.fromisoformat(event.metadata["demo_anchor"])
    return datetime.now(UTC).date()


def _record(led: Any, calls: list[Call]) -> Tally:
    """Per project: the calls in one atomic batch, then the usage logs that follow the
    conversation events, naming the conversation id each acknowledgement returned."""
    tally = Tally()
    for project in PROJECTS:
        mine = [c for c in calls if c.project == project]
        if not mine:
            continue
        acks = led.append_many([c.event for c in mine], tenant=project)
        logs = []
        for call, ack in zip(mine, acks, strict=True):
            tally.created += ack.created
            tally.repeats += not ack.created
            if call.usage_log is not None:
                conv = ack.conversation_id
                logs.append({**call.usage_log, "id_at_origin": conv,
                             "metadata": {"conversation_id": conv}})
        if logs:
            for ack in led.append_many(logs, tenant=project):
                tally.created += ack.created
                tally.paired += not ack.created
    return tally


@click.command()
@click.option("--days", default=21, show_default=True, type=click.IntRange(1, 3650),
              help="Spread the calls over this many past days.")
@click.option("--seed", default=7, show_default=True, help="Same seed, same data.")
@click.option("--events", "n_events", default=3000, show_default=True,
              type=click.IntRange(1, 1_000_000), help="Number of calls.")
@json_option
@pass_app
@local_only
def demo(app: App, days: int, seed: int, n_events: int, as_json: bool) -> None:
    """Fill the data directory with realistic sample usage, then summarize it.

    Three projects (acme-support, acme-search, default), OpenAI, Anthropic and Google
    models behind the aliases fast, balanced and deep, and a local model the price
    table does not know (its calls are "unpriced"). Some calls are conversations,
    each followed by its usage log (paired into one event). Deterministic: running it
    again with the same options records nothing new.
    """
    from projections.rollups import rollup

    with app.open() as led:
        anchor = _anchor(led, seed, days)
        calls = [make_call(seed, days, anchor, n, led.pricer) for n in range(n_events)]
        tally = _record(led, calls)
        snapshot = led.snapshot()
        projects: dict[str, Any] = {}
        for project in led.tenants():
            total = rollup(snapshot, project, by=[])
            row = total[0] if total else None
            projects[project] = {
                "events": row.calls if row else 0,
                "cost": row.cost_nanos / 1e9 if row else 0.0,
                "cost_nanos": row.cost_nanos if row else 0,
                "unpriced": row.unpriced if row else 0,
            }
        by_model = rollup(snapshot, SUMMARY_PROJECT, by=["model"])
    if as_json:
        print_json({"data_dir": str(app.data), "seed": seed, "days": days,
                    "window_end": anchor.isoformat(), "calls": n_events,
                    "created": tally.created, "repeats": tally.repeats,
                    "paired": tally.paired, "projects": projects,
                    "by_model": {"project": SUMMARY_PROJECT,
                                 "rows": [r.as_dict() for r in by_model]}})
        return
    console = stdout_console()
    console.print(
        f"Demo data in {app.data}: {num(n_events)} calls over the {days} days before "
        f"{anchor.isoformat()} (seed {seed}): {num(tally.created)} events created, "
        f"{num(tally.repeats)} already there, {num(tally.paired)} usage logs paired with "
        "their conversation events.")
    table = new_table("project", "events", "cost", "unpriced",
                      numeric=("events", "cost", "unpriced"))
    for name, p in projects.items():
        table.add_row(name, num(p["events"]), usd(p["cost_nanos"]), num(p["unpriced"]))
    print_table(console, table)
    models = new_table("model", "calls", "in tokens", "out tokens", "cost", "unpriced",
                       title=f"{SUMMARY_PROJECT} by model",
                       numeric=("calls", "in tokens", "out tokens", "cost", "unpriced"))
    for r in by_model:
        models.add_row(r.key["model"], num(r.calls), num(r.input_tokens), num(r.output_tokens),
                       cost_cell(r.cost_nanos, r.calls, r.unpriced), num(r.unpriced))
    print_table(console, models)
    ctx = click.get_current_context()
    source = ctx.parent.get_parameter_source("data_dir") if ctx.parent else None
    prefix = "llmring"
    if source == click.core.ParameterSource.COMMANDLINE:
        prefix += f" --data {app.data}"
    console.print("Next, try:")
    for cmd in ("ledger stats", f"--project {SUMMARY_PROJECT} usage report --by model,day",
                f"--project {SUMMARY_PROJECT} receipts preview --since-last",
                f"--project {SUMMARY_PROJECT} receipts generate --since-last",
                "ledger verify"):
        console.print(f"  {prefix} {cmd}")
