"""``llmring ledger …``: look after the data directory — stats, verify (re-derive every
hash, chain and root, read-only), compact (merge small segments), flush (seal the
journal into segments now) and iceberg (publish the live segments as an Iceberg table)."""

from __future__ import annotations

from typing import Any

import click

from ledger.api import operations as ops
from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    App,
    CliError,
    accept_loss_option,
    json_option,
    local_only,
    new_table,
    num,
    pass_app,
    print_json,
    print_table,
    progress_bar,
    show_progress,
    stdout_console,
    usd,
)
from ledger.lazy import lazy

rich_filesize = lazy("rich.filesize")  # as rich itself: imported when first needed


@click.group("ledger")
def ledger_group() -> None:
    """Inspect, verify and maintain the data directory."""


def collect_stats(service: Any) -> dict[str, Any]:
    """Per-project (``LedgerService.stats``) and directory-wide figures of an open data
    directory."""
    led = service.ledger
    snapshot = led.snapshot()
    live = led.live_segments()
    return {
        "data_dir": str(led.path),
        "projects": {tenant: service.stats(tenant) for tenant in led.tenants()},
        "segments": len(live),
        "segment_bytes": sum(s.bytes for s in live),
        "journal_tail_rows": snapshot.tail.num_rows,
        "manifest_records": led.manifest_records(),
    }


@ledger_group.command()
@json_option
@pass_app
def stats(app: App, as_json: bool) -> None:
    """Events, dates, cost, log root and storage of every project (with --server: of the
    API key's project)."""
    with app.api(create=False) as api:
        if api.remote:
            out: dict[str, Any] = {"server": api.server,
                                   "projects": {api.project: api.call(ops.STATS)}}
        else:
            out = collect_stats(api.service)
    if as_json:
        print_json(out)
        return
    console = stdout_console()
    if not out["projects"]:
        console.print(f"{app.data}: no events yet")
        return
    usage = new_table("project", "events", "cost", "unpriced", "first call", "last call",
                      title="Usage (times in UTC)", numeric=("events", "cost", "unpriced"))
    log = new_table("project", "log size", "segments", "bytes", "tail rows", "log root",
                    title="Log and storage", ids=("log root",), optional=("log root",),
                    numeric=("log size", "segments", "bytes", "tail rows"))
    for name, p in out["projects"].items():
        usage.add_row(name, num(p["events"]), usd(p["cost_nanos"]), num(p["unpriced"]),
                      _short(p["first_ts"]), _short(p["last_ts"]))
        log.add_row(name, num(p["log_size"]), num(p["segments"]),
                    rich_filesize.decimal(p["segment_bytes"]), num(p["journal_tail_rows"]),
                    p["root"])
    print_table(console, usage)
    print_table(console, log)
    if "server" in out:
        console.print(f"project {next(iter(out['projects']))} at {out['server']}")
        return
    console.print(f"{out['data_dir']}: {num(out['segments'])} segments "
                  f"({rich_filesize.decimal(out['segment_bytes'])}), "
                  f"{num(out['journal_tail_rows'])} rows in the journal tail, "
                  f"{num(out['manifest_records'])} manifest records")


def _short(ts: str | None) -> str:
    return ts[:16].replace("T", " ") if ts else "-"


@ledger_group.command()
@json_option
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="processes checking segments (default: every core for a directory of "
                   "200,000 sealed rows or more)")
@click.option("--since-checkpoint", is_flag=True,
              help="check only what is new since the last verify that passed, chained to "
                   "it (a full verify still checks everything)")
@pass_app
@local_only
def verify(app: App, as_json: bool, jobs: int | None, since_checkpoint: bool) -> None:
    """Re-derive every hash, chain and root; report tampering (exit 1).

    Reads the directory only and takes no lock, so it also runs while a writer
    (e.g. `llmring serve`) is active. A verify that passes records what it checked in
    verify-state.json, from which --since-checkpoint goes on.
    """
    from ledger.core.audit import verify_directory

    app.require_existing()
    options = {"jobs": jobs, "since_checkpoint": since_checkpoint}
    if show_progress(as_json):
        with progress_bar() as bar:
            task = bar.add_task("verifying", total=None)
            report = verify_directory(
                app.data, storage=app.storage,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                **options)
    else:
        report = verify_directory(app.data, storage=app.storage, **options)
    code = 0 if report.ok else EXIT_FAILED_CHECK
    if as_json:
        print_json(report.as_dict())
    else:
        _print_audit(app, report)
    click.get_current_context().exit(code)


@ledger_group.command()
@json_option
@pass_app
@local_only
def migrate(app: App, as_json: bool) -> None:
    """Convert a directory written before projects had their own units (one journal,
    manifest and index for all) in place, keeping every event, hash, checkpoint, receipt
    and signature; it is verified before and after, and not switched if either fails.

    The old top-level files are kept in before-projects/ until you remove them.
    """
    from ledger.core.migrate import migrate as run

    done = run(app.data)
    if as_json:
        print_json(done.as_dict())
        return
    console = stdout_console()
    if done.already:
        console.print(f"{app.data} is in the per-project layout already"
                      + (f"; the old files are in {done.kept}/" if done.kept else ""))
        return
    console.print(f"Migrated {app.data}: {num(len(done.projects))} projects "
                  f"({', '.join(done.projects)}), verified before and after: every log has "
                  "the size and root it had. The old top-level files are kept in "
                  f"{done.kept}/: remove it once you no longer need it.")


def _print_audit(app: App, report: Any) -> None:
    console = stdout_console()
    if report.ok:
        console.print(
            f"OK: {app.data}: {num(len(report.tenants))} projects, "
            f"{num(report.segments_checked)} segments and {num(report.events_checked)} "
            "events checked"
            + (f", {num(report.receipts_checked)} receipts" if report.receipts_checked else "")
            + (f", {num(report.checkpoints_checked)} signed checkpoints"
               if report.checkpoints_checked else "")
            + "; every hash, chain, root and signature matches.")
        if report.tenants:
            table = new_table("project", "log size", "log root", numeric=("log size",),
                              ids=("log root",), optional=("log root",))
            for name, t in sorted(report.tenants.items()):
                table.add_row(name, num(t.get("size", 0)), str(t.get("root", "")))
            print_table(console, table)
    else:
        console.print(f"FAILED: {app.data}: {num(len(report.problems))} problems "
                      f"({num(report.segments_checked)} segments and "
                      f"{num(report.events_checked)} events checked)")
        for p in report.problems:
            click.echo(f"  [{p.kind}] {p.where}: {p.message}")
    for note in getattr(report, "notes", []):
        click.echo(f"note: {note}")


@ledger_group.command()
@json_option
@pass_app
@local_only
def compact(app: App, as_json: bool) -> None:
    """Merge the small segments of each project and day into one."""
    with app.open(create=False) as led:
        result = led.compact()
    out = {"merged": result.merged, "written": result.written}
    if as_json:
        print_json(out)
    elif result.merged:
        click.echo(f"Merged {num(result.merged)} segments into {num(result.written)}.")
    else:
        click.echo("Nothing to compact: no day has more than one small segment.")


@ledger_group.command()
@accept_loss_option
@json_option
@pass_app
@local_only
def flush(app: App, as_json: bool, accept_loss: bool) -> None:
    """Seal the journal into Parquet segments now.

    Every command seals when it closes the ledger; this is for a journal left by a
    process that stopped without closing (it is replayed, then sealed). With
    --accept-loss it also repairs a journal damaged inside by cutting it at the damage.
    """
    with app.open(create=False, accept_loss=accept_loss) as led:
        result = led.flush()
    out = {"events": result.events, "segments": result.segments, "journal": result.journal}
    if as_json:
        print_json(out)
    elif result.events or result.segments:
        click.echo(f"Sealed {num(result.events)} events into {num(result.segments)} segments.")
    else:
        click.echo("Nothing to seal: the journal is empty.")


@ledger_group.command()
@json_option
@pass_app
@local_only
def iceberg(app: App, as_json: bool) -> None:
    """Publish the live event segments as the Iceberg table ledger.events.

    Creates the table (a SQL catalog in iceberg/catalog.sqlite) or brings it level with
    the manifest. From then on every writer of the directory commits to it at each seal
    and compaction, so Spark, Trino, DuckDB or pyiceberg read the ledger by table name
    (docs/integrations.md).
    """
    from ledger.storage.iceberg import IDENTIFIER, catalog_properties, read_published

    with app.open(create=False, iceberg=True) as led:
        table = led.iceberg
        failed = table.failed if table is not None else None
    if failed is not None:
        raise CliError(f"could not publish the Iceberg table: {failed}", EXIT_FAILED_CHECK)
    published = read_published(app.layout)
    assert published is not None
    out = {"table": IDENTIFIER, **catalog_properties(app.layout),
           "files": len(published.files), "manifest_records": published.records}
    if as_json:
        print_json(out)
    else:
        click.echo(f"Table {IDENTIFIER}: {num(len(published.files))} segment files "
                   f"(catalog {out['uri']}, warehouse {out['warehouse']}).")


@ledger_group.command("prune-content")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete content whose calls are all older than AGE (90d, 12h, 2w).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option
@pass_app
@local_only
def prune_content_cmd(app: App, older_than: str, dry_run: bool, as_json: bool) -> None:
    """Delete the project's stored conversation content older than AGE.

    Events keep their content_sha256, so every receipt, proof and checkpoint still
    verifies; only the messages are gone. Content still named by a newer call is kept.
    """
    from ledger.core.retention import RetentionError, parse_age, prune_content

    try:
        age = parse_age(older_than)
    except RetentionError as exc:
        raise CliError(f"--older-than: {exc}") from None
    with app.open(create=False) as led:
        result = prune_content(led, app.project, age, dry_run=dry_run)
    if as_json:
        print_json(result.as_dict())
        return
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} the content of {num(result.files)} conversations "
               f"({num(result.bytes)} bytes) of project {app.project} older than "
               f"{result.cutoff}" + (f"; kept {num(result.kept_shared)} still named by newer "
                                      "calls" if result.kept_shared else "") + ".")
