"""``llmring ingest`` (JSON lines → events) and ``llmring record`` (one event from flags).

Ingest checks the whole file before it writes anything (each line is validated and
prepared exactly as the ledger would, and event ids repeated within the file with
different content are refused), then appends it in batches with ``Ledger.append_many``,
each batch all or nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import IO, Any

import click
import orjson

from ledger.api import operations as ops
from ledger.cli.context import (
    Api,
    App,
    CliError,
    Zone,
    json_option,
    key_value_table,
    local_text,
    num,
    parse_when,
    pass_app,
    print_json,
    print_table,
    progress_bar,
    show_progress,
    stdout_console,
    ts_text,
    usd,
    zone_option,
)
from ledger.model.event import (
    EventValidationError,
    Prepared,
    now_us,
    parse_event,
    parse_event_json,
    prepare,
)

MAX_SHOWN = 20  # bad lines listed on stderr
MAX_JSON_ERRORS = 1000  # bad lines listed in --json output


@dataclass
class BadLine:
    line: int
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "problems": self.problems}


@dataclass
class Checked:
    """What the validation pass learned about a file."""

    lines: int = 0  # non-blank lines
    bad: list[BadLine] = field(default_factory=list)
    invalid: int = 0


@dataclass
class Tally:
    read: int = 0
    created: int = 0
    repeats: int = 0
    paired: int = 0
    unpriced: int = 0
    cost_nanos: int = 0

    def as_dict(self, project: str) -> dict[str, Any]:
        return {"project": project, "read": self.read, "created": self.created,
                "repeats": self.repeats, "paired": self.paired, "unpriced": self.unpriced,
                "cost": self.cost_nanos / 1e9, "cost_nanos": self.cost_nanos}


def _open_input(file: str) -> IO[bytes]:
    """The file (or stdin, spooled to a temporary file so it can be read twice)."""
    if file == "-":
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.seek(0)
        return spool
    try:
        fh = open(file, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise CliError(f"cannot read {file}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"cannot read {file}: it is a directory") from None
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    return fh


def _lines(fh: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of every non-blank line."""
    fh.seek(0)
    lineno = offset = 0
    while True:
        raw = fh.readline()
        if not raw:
            return
        lineno += 1
        start, offset = offset, offset + len(raw)
        if raw.strip():
            yield lineno, start, raw


def _line_at(fh: IO[bytes], offset: int) -> bytes:
    here = fh.tell()
    fh.seek(offset)
    raw = fh.readline()
    fh.seek(here)
    return raw


def _differences(first: Prepared, later: Prepared) -> list[str]:
    """Fields in which a later line disagrees with an earlier one of the same event_id,
    compared as ``Ledger.append_many`` does (values the ledger fills in are ignored)."""
    skip = {"tenant", "event_id"}
    if not later.ts_given:
        skip.add("ts")
    if not later.cost_given:
        skip |= {"cost_nanos", "cost_source", "price_id"}
    return [k for k, v in later.fields.items() if k not in skip and first.fields.get(k) != v]


def _check(fh: IO[bytes], project: str, advance: Any) -> Checked:
    """Validate every line as the ledger would, writing nothing."""
    from ledger.model.pricing import PriceBook

    book = PriceBook()
    received = now_us()
    result = Checked()
    seen: dict[str, tuple[int, int, bytes]] = {}  # event_id → (line, offset, digest)

    def prepared_of(raw: bytes, lineno: int) -> Prepared:
        event = parse_event_json(raw, index=lineno)
        return prepare(event, tenant=project, received_us=received, pricer=book)

    def bad(lineno: int, problems: list[str]) -> None:
        result.invalid += 1
        if len(result.bad) < MAX_JSON_ERRORS:
            result.bad.append(BadLine(lineno, problems))

    for lineno, offset, raw in _lines(fh):
        result.lines += 1
        advance(len(raw))
        try:
            p = prepared_of(raw, lineno)
        except EventValidationError as exc:
            bad(lineno, exc.problems)
            continue
        except ValueError as exc:  # anything else prepare() refuses
            bad(lineno, [str(exc)])
            continue
        if p.generated_id:
            continue
        first = seen.get(p.event_id)
        if first is None:
            seen[p.event_id] = (lineno, offset, p.digest)
            continue
        if first[2] == p.digest:
            continue
        diffs = _differences(prepared_of(_line_at(fh, first[1]), first[0]), p)
        if diffs:
            bad(lineno, [f"event_id {p.event_id!r} is also on line {first[0]} with "
                         f"different content (differs in: {', '.join(diffs)})"])
    return result


def _report_bad(checked: Checked, as_json: bool) -> None:
    if as_json:
        print_json({"ok": False, "read": checked.lines, "invalid": checked.invalid,
                    "created": 0, "errors": [b.as_dict() for b in checked.bad]})
    else:
        for b in checked.bad[:MAX_SHOWN]:
            click.echo(f"line {b.line}: {'; '.join(b.problems)}", err=True)
        if checked.invalid > MAX_SHOWN:
            click.echo(f"… and {checked.invalid - MAX_SHOWN} more bad lines", err=True)
    raise CliError(f"{checked.invalid} of {checked.lines} lines are invalid; "
                   "nothing was appended")


def _append(api: Api, fh: IO[bytes], batch_size: int, advance: Any) -> Tally:
    """Append the checked lines in batches (the log-batch operation, each all or
    nothing)."""
    tally = Tally()
    batch: list[tuple[int, dict[str, Any]]] = []

    def flush() -> None:
        try:
            answer = api.call(ops.LOG_BATCH, events=[d for _, d in batch])
        except CliError as exc:
            line = next((n for n, d in batch if d.get("event_id") is not None
                         and repr(str(d["event_id"])) in exc.message), None)
            where = f"line {line}: " if line is not None else ""
            raise CliError(f"{where}{exc.message}{_partial(tally)}", exc.exit_code
                           ) from None
        for (_, data), log in zip(batch, answer["logs"], strict=True):
            tally.read += 1
            if log["created"]:
                tally.created += 1
                tally.cost_nanos += log["cost_nanos"]
                tally.unpriced += log["cost_source"] == "unpriced"
            elif data.get("event_id") == log["log_id"]:
                tally.repeats += 1
            else:  # a usage log answered with its conversation's event
                tally.paired += 1
        batch.clear()

    for lineno, _, raw in _lines(fh):
        batch.append((lineno, orjson.loads(raw)))
        advance(len(raw))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return tally


def _partial(tally: Tally) -> str:
    if not tally.read:
        return "; nothing was appended"
    return (f"; the {tally.read} events before that batch were appended (ingesting the "
            "file again is safe: events with an event_id are not recorded twice)")


@click.command()
@click.argument("file", metavar="FILE")
@click.option("--batch-size", default=10_000, show_default=True, type=click.IntRange(1),
              help="Events per atomic append.")
@json_option
@pass_app
def ingest(app: App, file: str, batch_size: int, as_json: bool) -> None:
    """Append events from FILE, JSON lines (`-` reads stdin).

    One event per line, with the event field names (provider, model, alias,
    input_tokens, cost_nanos, ts, …) or the usage-log names (`cost` in USD,
    `timestamp`). `event_id` and `ts` may be omitted. Blank lines are skipped.

    Every line is checked before anything is written: if any is bad, each is
    reported with its line number and nothing is appended (exit 2). Then the events
    are appended in batches, each all or nothing. Only an I/O failure, or an event_id
    already in the ledger with different content, can stop it between batches.

    Ingesting a file again is safe: a line with an event_id already recorded is a
    repeat, not a new event (a line without event_id is a new call each time).
    """
    fh = _open_input(file)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        live = show_progress(as_json)
        with progress_bar(unit="bytes") if live else nullcontext() as bar:
            if bar is not None:
                task = bar.add_task("checking", total=size)
                checked = _check(fh, app.project, lambda n: bar.advance(task, n))
            else:
                checked = _check(fh, app.project, lambda n: None)
            if checked.invalid:
                if bar is not None:
                    bar.stop()
                _report_bad(checked, as_json)
            with app.api() as api:
                project = api.project
                if bar is not None:
                    task = bar.add_task("appending", total=size)
                    tally = _append(api, fh, batch_size, lambda n: bar.advance(task, n))
                else:
                    tally = _append(api, fh, batch_size, lambda n: None)
    if as_json:
        print_json(tally.as_dict(project))
        return
    print_table(stdout_console(), key_value_table({
        "project": project,
        "lines read": num(tally.read),
        "events created": num(tally.created),
        "repeats (already recorded)": num(tally.repeats),
        "paired (usage log of a conversation)": num(tally.paired),
        "unpriced (no price for the model)": num(tally.unpriced),
        "cost added": usd(tally.cost_nanos, 6),
    }, title=f"Ingested {file if file != '-' else 'stdin'}"))


@click.command()
@click.option("--provider", required=True, help="e.g. openai, anthropic, google.")
@click.option("--model", required=True, help="The resolved model, e.g. gpt-4o-mini.")
@click.option("--alias", help="What the caller asked for, e.g. fast.")
@click.option("--input-tokens", type=click.IntRange(0), help="All input tokens (incl. cached).")
@click.option("--output-tokens", type=click.IntRange(0))
@click.option("--cached-input-tokens", type=click.IntRange(0))
@click.option("--cost", metavar="USD", help="Cost in USD, exact (e.g. 0.0042); omitted: "
              "priced by the ledger's price table.")
@click.option("--event-id", metavar="ID", help="Idempotency key (default: generated).")
@click.option("--ts", metavar="TIME", help="When the call happened: ISO 8601 datetime or "
              "YYYY-MM-DD (its midnight), in the --tz zone; default: now.")
@zone_option()
@click.option("--conversation-id", metavar="C")
@click.option("--kind", type=click.Choice(["usage", "conversation"]), default="usage",
              show_default=True)
@click.option("--latency-ms", type=click.IntRange(0))
@click.option("--metadata", metavar="JSON", help='A JSON object, e.g. \'{"feature": "chat"}\'.')
@json_option
@pass_app
def record(app: App, provider: str, model: str, alias: str | None, input_tokens: int | None,
           output_tokens: int | None, cached_input_tokens: int | None, cost: str | None,
           event_id: str | None, ts: str | None, tz: Zone, conversation_id: str | None,
           kind: str,
           latency_ms: int | None, metadata: str | None, as_json: bool) -> None:
    """Record one LLM call and print its acknowledgement."""
    event: dict[str, Any] = {
        "provider": provider, "model": model, "alias": alias, "kind": kind,
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cached_input_tokens": cached_input_tokens, "cost": cost, "event_id": event_id,
        "conversation_id": conversation_id, "latency_ms": latency_ms,
    }
    if ts is not None:
        event["ts"] = ts_text(parse_when(ts, option="--ts", zone=tz.info))
    if metadata is not None:
        try:
            meta = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            raise CliError(f"--metadata is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise CliError("--metadata must be a JSON object, e.g. '{\"feature\": \"chat\"}'")
        event["metadata"] = meta
    event = {k: v for k, v in event.items() if v is not None}
    try:  # checked here, so that both transports report the same problems
        parse_event(event)
    except EventValidationError as exc:
        raise CliError(f"invalid event: {'; '.join(exc.problems)}") from None
    with app.api() as api:
        project = api.project
        ack = api.call(ops.LOG_USAGE, event=event)
    out = {"project": project, "event_id": ack["log_id"], "seq": ack["seq"],
           "ts": ack["timestamp"], "cost": ack["cost"], "cost_nanos": ack["cost_nanos"],
           "cost_source": ack["cost_source"], "conversation_id": ack["conversation_id"],
           "created": ack["created"], "tz": tz.name}
    if as_json:
        print_json(out)
        return
    print_table(stdout_console(), key_value_table({
        "project": project, "event_id": out["event_id"], "seq": out["seq"],
        "ts": out["ts"],
        "local time": f"{local_text(parse_when(out['ts'], option='ts'), tz.info)} ({tz})",
        "cost": usd(out["cost_nanos"], 6),
        "cost_source": out["cost_source"], "conversation_id": out["conversation_id"],
        "created": "yes" if out["created"] else "no (already recorded)",
    }, title="Recorded"))
