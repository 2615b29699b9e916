"""``llmring receipts``: generate, preview, list and inspect signed receipts, write proof
bundles, and verify receipts or bundles offline (docs/cli.md). Each command calls the
API's receipt operations (``ledger.api.operations``) on the transport the global options
choose (the data directory, or ``--server``); ``verify`` is
``ledger.receipts.verification``, offline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson

from ledger.api import operations as ops
from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    Api,
    App,
    CliError,
    Zone,
    cost_cell,
    json_option,
    key_value_table,
    local_text,
    new_table,
    num,
    parse_window,
    pass_app,
    plural,
    print_json,
    print_table,
    progress_bar,
    read_json_file,
    show_progress,
    stdout_console,
    ts_text,
    usd,
    when,
    when_help,
    where_filter,
    where_option,
    window_text,
    zone_option,
)
from ledger.cli.signing_keys import server_keys
from ledger.errors import LedgerError, NothingToCertifyError

F = Callable[..., Any]


@click.group("receipts")
@click.option("--server", metavar="URL", envvar="LLMRING_SERVER_URL",
              help="Call `llmring serve` at URL instead of opening the data directory.")
@click.option("--api-key", metavar="KEY", envvar="LLMRING_API_KEY",
              help="The API key for --server (it names the project).")
@click.pass_context
def receipts_group(ctx: click.Context, server: str | None, api_key: str | None) -> None:
    """Signed receipts: certify calls, inspect them, prove and verify them offline.

    \b
    Examples:
      llmring receipts preview --start 2025-10-01 --end 2025-10-31
      llmring receipts generate --since-last --description "Daily certification"
      llmring receipts prove RECEIPT_ID --log LOG_ID -o proof.json
      llmring receipts verify proof.json --public-key ledger.pem
      llmring receipts --server http://127.0.0.1:8000 --api-key llr_... uncertified
    """
    app = ctx.find_object(App)
    if app is not None:
        app.server = server or app.server
        app.api_key = api_key or app.api_key


def selectors(f: F) -> F:
    """The four selection modes (exactly one), and the zone of the dates (``--tz``)."""
    options = [
        click.option("--conversation", "conversation_id", metavar="ID",
                     help="Certify the calls of one conversation."),
        click.option("--since-last", "since_last", is_flag=True,
                     help="Certify every call no receipt has certified yet."),
        click.option("--start", metavar="D", help=when_help("Date range start")),
        click.option("--end", metavar="D", help=when_help("Date range end", end=True)),
        click.option("--log-id", "log_ids", multiple=True, metavar="ID",
                     help="Certify these logs (repeat the option for each id)."),
        where_option("Only the calls whose metadata KEY has the value VALUE (repeat for "
                     "AND; with any mode but --log-id); the receipt's signed scope names "
                     "the filter."),
        zone_option(),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def paging(f: F) -> F:
    f = click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Skip this many rows.")(f)
    return click.option("--limit", default=100, show_default=True,
                        type=click.IntRange(1, 1000), help="Rows per page (1-1000).")(f)


def _request(conversation_id: str | None, since_last: bool, start: str | None,
             end: str | None, log_ids: tuple[str, ...], where: tuple[str, ...],
             tz: Zone) -> dict[str, Any]:
    """The API's selection: the dates as the instants they mean in ``tz`` (the same
    over HTTP and locally)."""
    lo, hi = parse_window(start, end, tz.info, check=False)  # the API checks the range
    return {"conversation_id": conversation_id, "since_last_receipt": since_last,
            "start_date": ts_text(lo), "end_date": ts_text(hi),
            "log_ids": list(log_ids) or None, "where": where_filter(where)}


def _filter_row(where: dict[str, str] | None) -> dict[str, str]:
    return {"metadata filter": ", ".join(f"{k}={v}" for k, v in where.items())} if where \
        else {}


def _dates(start: str | None, end: str | None, tz: Zone) -> dict[str, str]:
    """The summary row of a date-range selection: its days (or times) in ``tz``."""
    if not (start or end):
        return {}
    return {"dates": window_text(*parse_window(start, end, tz.info), tz)}


def _span(first: str | None, last: str | None, tz: Zone) -> str:
    """The first and last call certified, as wall-clock times in ``tz``."""
    if first is None or last is None:
        return "-"
    times = [local_text(datetime.fromisoformat(t.replace("Z", "+00:00")), tz.info)
             for t in (first, last)]
    return f"{times[0]} .. {times[1]} ({tz})"


def _breakdown_table(title: str, rows: dict[str, dict[str, Any]]) -> Any:
    table = new_table(title.split()[1], "calls", "tokens", "cost", title=title,
                      numeric=("calls", "tokens", "cost"))
    for key, v in rows.items():
        table.add_row(key, num(v["calls"]), num(v["tokens"]),
                      cost_cell(v["cost_nanos"], v["calls"], v["unpriced_calls"]))
    return table


def _print_summary(head: dict[str, Any], breakdowns: dict[str, dict[str, Any]]) -> None:
    console = stdout_console()
    print_table(console, key_value_table(head))
    for name, rows in breakdowns.items():
        if rows:
            title = f"By {name.removeprefix('by_')}"
            if name == "by_date":  # the API's breakdown, and a receipt's, is by UTC day
                title += " (UTC days)"
            print_table(console, _breakdown_table(title, rows))


# -- generate and preview --------------------------------------------------------------------
def _generate(api: Api, as_json: bool, **params: Any) -> dict[str, Any]:
    """Call generate (with a progress bar on a terminal); a ``NothingToCertifyError``
    is let through for the caller, any other refusal is the CLI's error."""
    try:
        if not show_progress(as_json):
            return dict(api.transport.call(ops.GENERATE_RECEIPT, **params))
        stages = ["select", "hash", "sign", "store"]
        with progress_bar() as bar:
            task = bar.add_task("selecting", total=len(stages))

            def step(stage: str) -> None:
                bar.update(task, completed=stages.index(stage),
                           description={"select": "selecting", "hash": "hashing",
                                        "sign": "signing", "store": "storing"}[stage])

            result = api.transport.call(ops.GENERATE_RECEIPT, progress=step, **params)
            bar.update(task, completed=len(stages))
            return dict(result)
    except NothingToCertifyError:
        raise
    except LedgerError as exc:
        raise api.error(exc) from None


@receipts_group.command()
@selectors
@click.option("--description", metavar="TEXT", help="What the receipt is for.")
@click.option("--tags", "tags", multiple=True, metavar="TAG",
              help="A tag (repeat the option for more).")
@click.option("--strict", is_flag=True,
              help="With --since-last: nothing new to certify is an error (exit 2), "
                   "not a quiet day (exit 0).")
@json_option
@pass_app
def generate(app: App, conversation_id: str | None, since_last: bool, start: str | None,
             end: str | None, log_ids: tuple[str, ...], where: tuple[str, ...], tz: Zone,
             description: str | None, tags: tuple[str, ...], strict: bool,
             as_json: bool) -> None:
    """Certify calls with a signed receipt (exactly one of --conversation, --since-last,
    --start/--end, --log-id).

    With --since-last, a day with nothing new is normal: one line says so and the exit
    status is 0 (--strict makes it an error, exit 2).

    Example: llmring receipts generate --start 2025-10-01 --end 2025-10-31
    --description "October billing" --tags billing --tags monthly

    A per-customer invoice: llmring receipts generate --start 2025-10-01 --end 2025-10-31
    --where customer=acme
    """
    request = _request(conversation_id, since_last, start, end, log_ids, where, tz)
    with app.api(create=False) as api:
        try:
            result = _generate(api, as_json, description=description,
                               tags=list(tags) or None, **request)
        except NothingToCertifyError as exc:
            if not since_last or strict:
                raise api.error(exc) from None
            if as_json:
                print_json({"receipt": None, "certified_count": 0, "code": exc.code,
                            "detail": exc.detail, "tz": tz.name})
            else:
                click.echo(str(exc.detail).replace("nothing to certify: ",
                                                   "nothing new to certify: ", 1))
            return
    if as_json:
        print_json({**result, "tz": tz.name})
        return
    r = result["receipt"]
    s = r["batch_summary"]
    _print_summary({
        "receipt": r["receipt_id"],
        "certified": f"{plural(result['certified_count'], 'call')} in "
                     f"{plural(s['total_conversations'], 'conversation')}",
        **_dates(start, end, tz),
        **_filter_row(r["scope"].get("where")),
        "period": _span(s["start_date"], s["end_date"], tz),
        "tokens": num(r["total_tokens"]),
        "total cost": usd(r["total_cost_nanos"]),
        "merkle root": r["merkle_root"],
        "signed by key": r["key_id"],
        "description": r["description"],
        "tags": ", ".join(r["tags"]),
    }, {"by_model": s["by_model"]})


@receipts_group.command()
@selectors
@json_option
@pass_app
def preview(app: App, conversation_id: str | None, since_last: bool, start: str | None,
            end: str | None, log_ids: tuple[str, ...], where: tuple[str, ...], tz: Zone,
            as_json: bool) -> None:
    """What `generate` with the same selection would certify (writes nothing)."""
    request = _request(conversation_id, since_last, start, end, log_ids, where, tz)
    with app.api(create=False) as api:
        p = api.call(ops.PREVIEW_RECEIPT, **request)
    if as_json:
        print_json({**p, "tz": tz.name})
        return
    _print_summary({
        "would certify": f"{plural(p['total_logs'], 'call')} in "
                         f"{plural(p['total_conversations'], 'conversation')}",
        **_dates(start, end, tz),
        **_filter_row(p["scope"].get("where")),
        "period": _span(p["start_date"], p["end_date"], tz) if p["total_logs"] else "-",
        "tokens": num(p["total_tokens"]),
        "total cost": usd(p["total_cost_nanos"]),
        "unpriced calls": num(p["unpriced_logs"]),
    }, {k: p[k] for k in ("by_model", "by_alias", "by_provider", "by_date")})


# -- listings ---------------------------------------------------------------------------------
def _logs_table(title: str, logs: list[dict[str, Any]]) -> Any:
    table = new_table("id", "type", "timestamp", "alias", "provider", "model", "in", "out",
                      "cost", title=f"{title} (times in UTC)", numeric=("in", "out", "cost"),
                      optional=("provider", "alias", "type", "out", "in", "timestamp"))
    for log in logs:
        table.add_row(log["id"], log["type"], when(log["timestamp"]), log["alias"],
                      log["provider"], log["model"], num(log["input_tokens"]),
                      num(log["output_tokens"]),
                      "unpriced" if log["cost_source"] == "unpriced" else
                      usd(log["cost_nanos"], 6))
    return table


def _page_note(total: int, offset: int, shown: int) -> str:
    if total == 0:
        return ""
    return f"rows {num(offset + 1)}-{num(offset + shown)} of {num(total)}" if shown else \
        f"no rows at offset {num(offset)} (total {num(total)})"


@receipts_group.command()
@paging
@json_option
@pass_app
def uncertified(app: App, limit: int, offset: int, as_json: bool) -> None:
    """Calls no receipt has certified yet, oldest first, with their total cost."""
    with app.api(create=False) as api:
        project = api.project
        page = api.call(ops.UNCERTIFIED, limit=limit, offset=offset)
    if as_json:
        print_json(page)
        return
    console = stdout_console()
    if page["total"] == 0:
        console.print(f"Every call of project {project} is certified by a receipt.")
        return
    print_table(console, _logs_table(f"Uncertified calls of {project}", page["logs"]))
    unpriced = page["unpriced_logs"]
    console.print(f"{_page_note(page['total'], offset, len(page['logs']))}; uncertified "
                  f"cost {usd(page['total_cost_nanos'])}" +
                  (f" ({plural(unpriced, 'unpriced call')})" if unpriced else ""))


@receipts_group.command("list")
@paging
@json_option
@pass_app
def list_cmd(app: App, limit: int, offset: int, as_json: bool) -> None:
    """The project's receipts, newest first."""
    with app.api(create=False) as api:
        project = api.project
        page = api.call(ops.LIST_RECEIPTS, limit=limit, offset=offset)
    if as_json:
        print_json(page)
        return
    console = stdout_console()
    if page["total"] == 0:
        console.print(f"Project {project} has no receipts yet.")
        return
    table = new_table("receipt", "issued", "scope", "calls", "cost", "description", "tags",
                      title=f"Receipts of {project} (times in UTC)", numeric=("calls", "cost"),
                      optional=("tags", "description", "scope"))
    for r in page["receipts"]:
        table.add_row(r["receipt_id"], when(r["timestamp"]), r["scope"]["mode"],
                      num(r["certified_count"]), usd(r["total_cost_nanos"]),
                      r["description"] or "", ", ".join(r["tags"]))
    print_table(console, table)
    console.print(_page_note(page["total"], offset, len(page["receipts"])))


@receipts_group.command()
@click.argument("receipt_id")
@json_option
@pass_app
def get(app: App, receipt_id: str, as_json: bool) -> None:
    """One signed receipt."""
    with app.api(create=False) as api:
        r = api.call(ops.GET_RECEIPT, receipt_id=receipt_id)
    if as_json:
        print_json(r)
        return
    s = r["batch_summary"]
    scope = ", ".join(f"{k}={v}" for k, v in r["scope"].items())
    _print_summary({
        "receipt": r["receipt_id"], "type": r["receipt_type"], "issued": r["timestamp"],
        "project": r["tenant"], "scope": scope,
        "certified": f"{plural(r['certified_count'], 'call')} in "
                     f"{plural(s['total_conversations'], 'conversation')}",
        "period": f"{s['start_date']} .. {s['end_date']}",
        "tokens": num(r["total_tokens"]), "total cost": usd(r["total_cost_nanos"]),
        "merkle root": r["merkle_root"],
        "log checkpoint": f"{r['log_checkpoint']['origin']} @ {r['log_checkpoint']['size']}",
        "signed by key": r["key_id"], "description": r["description"],
        "tags": ", ".join(r["tags"]),
    }, {k: s[k] for k in ("by_model", "by_alias", "by_provider", "by_date")})


@receipts_group.command()
@click.argument("receipt_id")
@paging
@json_option
@pass_app
def logs(app: App, receipt_id: str, limit: int, offset: int, as_json: bool) -> None:
    """The calls a receipt certifies, in its leaf order."""
    with app.api(create=False) as api:
        page = api.call(ops.RECEIPT_LOGS, receipt_id=receipt_id, limit=limit,
                        offset=offset)
    if as_json:
        print_json(page)
        return
    console = stdout_console()
    print_table(console, _logs_table(f"Calls certified by {receipt_id}", page["logs"]))
    console.print(_page_note(page["total"], offset, len(page["logs"])))


# -- proofs -----------------------------------------------------------------------------------
@receipts_group.command()
@click.argument("receipt_id")
@click.option("--log", "log_id", required=True, metavar="LOG_ID",
              help="The certified call to prove.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the bundle here (default: stdout).")
@pass_app
def prove(app: App, receipt_id: str, log_id: str, output: Path | None) -> None:
    """Write the proof bundle that a call is certified by a receipt (verifiable offline
    with `llmring receipts verify`)."""
    with app.api(create=False) as api:
        bundle = api.call(ops.PROVE, receipt_id=receipt_id, log_id=log_id)
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        click.echo(data.decode(), nl=False)
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"Wrote the proof of {log_id} in {receipt_id} to {output}", err=True)


@receipts_group.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", "key_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Public keys: PEM, the public-keys JSON, or verifier-key lines. Without "
                   "it, the data directory's keys are used.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A witness policy (`witness NAME VKEY [URL]`, `group NAME K MEMBER…`, "
                   "`quorum NAME`): the log "
                   "checkpoint must be cosigned by its quorum of witnesses.")
@click.option("--checkpoint", "checkpoint_file",
              type=click.Path(dir_okay=False, path_type=Path),
              help="With --policy and a plain receipt: the cosigned note of the receipt's "
                   "log_checkpoint (a proof bundle carries its own).")
@json_option
@click.pass_context
def verify(ctx: click.Context, file: Path, key_file: Path | None, policy_file: Path | None,
           checkpoint_file: Path | None, as_json: bool) -> None:
    """Verify a receipt or a proof bundle offline. Exit 0 valid, 1 invalid."""
    from ledger.receipts.verification import BUNDLE_FORMAT, verify_bundle, verify_receipt
    from ledger.tlog.signing import KeyRingError, PublicKeyFormatError, load_public_keys

    doc = read_json_file(file)
    app = ctx.find_object(App)
    if key_file is None and app is not None and app.server:
        keys = server_keys(app)
    elif key_file is None:
        default = app.layout.keys_file if app is not None else None
        if default is None or not default.exists():
            raise CliError(f"no public keys: pass --public-key FILE (the ledger's PEM or "
                           f"public-keys JSON); {default or 'the data directory'} has none")
        key_file = default
    if key_file is not None:
        try:
            keys = load_public_keys(key_file)
        except (PublicKeyFormatError, KeyRingError) as exc:
            raise CliError(str(exc)) from None
    policy = _policy(policy_file)
    if isinstance(doc, dict) and doc.get("format") == BUNDLE_FORMAT:
        result = verify_bundle(doc, keys, policy=policy)
    else:
        if isinstance(doc, dict) and isinstance(doc.get("receipt"), dict) and \
                "certified_count" in doc and "receipt_id" not in doc:
            doc = doc["receipt"]  # the output of `receipts generate --json`
        result = verify_receipt(doc, keys)
        if policy is not None and result.valid:
            _check_receipt_witnesses(doc, keys, policy, checkpoint_file, result)
    if as_json:
        print_json(result.as_dict())
    elif result.valid:
        what = "proof bundle" if result.kind == "bundle" else "receipt"
        click.echo(f"OK: the {what} verifies ({result.receipt_id}, key {result.key_id})")
        for check in result.checks:
            click.echo(f"  ✓ {check}")
    else:
        click.echo(f"INVALID ({result.failed}): {result.message}")
    if not result.valid:
        ctx.exit(EXIT_FAILED_CHECK)


def _policy(path: Path | None) -> Any:
    if path is None:
        return None
    from ledger.tlog.policy import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CliError(str(exc)) from None


def _check_receipt_witnesses(receipt: Any, keys: Any, policy: Any, note_file: Path | None,
                             result: Any) -> None:
    """A plain receipt under a witness policy: its log_checkpoint's cosigned note."""
    from ledger.tlog.checkpoint import NoteError
    from ledger.tlog.policy import check_receipt_checkpoint

    if note_file is None:
        raise CliError("a receipt alone carries no witness cosignatures: give --checkpoint "
                       "FILE (its log_checkpoint, cosigned), or verify a proof bundle "
                       "(`llmring receipts prove`)")
    try:
        note = note_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {note_file}: {exc}") from None
    try:
        names = check_receipt_checkpoint(receipt, note, keys, policy)
    except NoteError as exc:
        result._fail("witness", str(exc))
        return
    result.checks.append(f"log checkpoint cosigned by {len(names)} of {policy.describe()} "
                         f"required witnesses ({', '.join(names)})")
