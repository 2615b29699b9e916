"""``llmring usage report``: calls, tokens and cost of a project grouped by model, alias,
provider, calendar periods in a time zone and metadata keys (``projections.rollups``), as
a table, CSV, JSON, or a chart (``ledger.cli.charts``); ``llmring usage export``: the
project's events as a file (JSON lines, CSV, Parquet, or FOCUS cost rows); ``llmring usage
dimensions``: the metadata keys a project declares as dimensions (stored as columns:
``ledger.storage.dimensions``)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ledger.api import operations as ops
from ledger.api.service import EXPORT_FORMATS
from ledger.cli.charts import FILE_FORMATS, chart_of, terminal_chart, write_chart
from ledger.cli.context import (
    App,
    CliError,
    Zone,
    cost_cell,
    json_option,
    new_table,
    num,
    parse_window,
    pass_app,
    print_json,
    print_table,
    stdout_console,
    ts_text,
    when_help,
    where_filter,
    where_option,
    window_text,
    zone_option,
)
from ledger.errors import LedgerError
from ledger.model.money import nanos_to_decimal

NUMBERS = ("calls", "input_tokens", "output_tokens", "total_tokens", "cost", "unpriced_calls")


@click.group("usage")
def usage_group() -> None:
    """Usage and cost reports."""


NONE = "(none)"  # the key of the row of events without a metadata key, in a table


def _dimensions(text: str) -> list[str]:
    from projections.rollups import DIMENSIONS, RollupError, dimension_keys

    by = list(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    if not by:
        raise CliError(f"--by: cannot group by nothing; choose from {', '.join(DIMENSIONS)} "
                       "or metadata keys (meta.<key>), comma-separated")
    try:
        dimension_keys(by)
    except RollupError as exc:
        raise CliError(f"--by: {exc}") from None
    return by


def _cell(value: Any) -> str:
    return NONE if value is None else str(value)


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cost = sum(r["cost_nanos"] for r in rows)
    inp = sum(r["input_tokens"] for r in rows)
    out = sum(r["output_tokens"] for r in rows)
    return {"calls": sum(r["calls"] for r in rows), "input_tokens": inp,
            "output_tokens": out, "total_tokens": inp + out, "cost_nanos": cost,
            "cost": cost / 1e9, "unpriced_calls": sum(r["unpriced_calls"] for r in rows)}


@usage_group.command()
@click.option("--by", "by_text", default="model", show_default=True, metavar="DIMS",
              help="Comma-separated: model, alias, provider, kind, cost_source, day, week, "
                   "month, or a metadata key: meta.KEY, or KEY when it is none of those "
                   "(events without it: the row (none)).")
@zone_option(query=True)
@click.option("--start", metavar="D", help=when_help("From"))
@click.option("--end", metavar="D", help=when_help("Up to", end=True))
@where_option("Only the calls whose metadata KEY has the value VALUE (repeat for AND).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (cost as exact USD).")
@json_option
@click.option("--chart", "as_chart", is_flag=True,
              help="Draw the cost as stacked bars on the terminal: one bar per day, week or "
                   "month (else per value of the first of --by), stacked by the others.")
@click.option("--format", "fmt", type=click.Choice(FILE_FORMATS),
              help="Write the --chart picture to --output as PNG or SVG.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="The file --format writes (replaced only once it is whole).")
@pass_app
def report(app: App, by_text: str, tz: Zone, start: str | None, end: str | None,
           where: tuple[str, ...], as_csv: bool, as_json: bool, as_chart: bool,
           fmt: str | None, output: Path | None) -> None:
    """Calls, tokens and cost of the project, grouped; days, weeks and months are those
    of the --tz zone (the machine's by default), named in the title. --chart draws the
    cost as bars on the terminal; --format png|svg -o FILE writes the same chart to a file.

    Example: llmring usage report --by model,day --tz Europe/Madrid --start 2025-06-01

    Cost by customer (a metadata key): llmring usage report --by customer,model,day

    A chart: llmring usage report --by day,model --start 2025-06-01 --chart
    """
    if sum((as_csv, as_json, as_chart, fmt is not None)) > 1:
        raise CliError("choose one of --csv, --json, --chart and --format")
    if (fmt is None) != (output is None):
        raise CliError("--format png|svg writes the chart to a file: give both --format and "
                       "--output FILE")
    by = _dimensions(by_text)
    flt = where_filter(where)
    lo, hi = parse_window(start, end, tz.info)
    with app.api(create=False, reads=True) as api:
        project = api.project
        rows = api.call(ops.ROLLUP, by=by, tz=tz.name, start=ts_text(lo),
                        end=ts_text(hi), where=flt)["rows"]
    total = _total(rows)
    if as_json:
        print_json({"project": project, "by": by, "tz": tz.name, "start": ts_text(lo),
                    "end": ts_text(hi), **({"where": flt} if flt else {}), "rows": rows,
                    "total": total})
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*by, *NUMBERS])
        for r in rows:
            writer.writerow([*(r[d] for d in by), r["calls"], r["input_tokens"],
                             r["output_tokens"], r["total_tokens"],
                             f"{nanos_to_decimal(r['cost_nanos']):f}", r["unpriced_calls"]])
        return
    if not rows:
        span = f" in {window_text(lo, hi, tz)}" if start or end else f" ({tz})"
        if fmt is not None:
            raise CliError(f"No calls in project {project}{span}: no chart to write to "
                           f"{output}")
        click.echo(f"No calls in project {project}{span}.")
        return
    title = f"Usage of {project} by {', '.join(by)} ({tz})"
    if start or end:
        title = f"Usage of {project} by {', '.join(by)}, {window_text(lo, hi, tz)}"
    if flt:
        title += ", where " + ", ".join(f"{k}={v}" for k, v in flt.items())
    if as_chart or fmt is not None:
        chart = chart_of(rows, by, title.replace("Usage", "Cost", 1))
        if fmt is None:
            terminal_chart(chart, stdout_console())
            return
        assert output is not None
        try:
            write_chart(chart, fmt, output)
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"Wrote the {fmt.upper()} chart of {len(rows)} rows to {output}", err=True)
        return
    table = new_table(*by, "calls", "in tokens", "out tokens", "cost", "unpriced",
                      title=title, numeric=("calls", "in tokens", "out tokens", "cost",
                                            "unpriced"))
    for r in rows:
        table.add_row(*(_cell(r[d]) for d in by), num(r["calls"]), num(r["input_tokens"]),
                      num(r["output_tokens"]),
                      cost_cell(r["cost_nanos"], r["calls"], r["unpriced_calls"]),
                      num(r["unpriced_calls"]))
    table.rows[-1].end_section = True
    table.add_row("total", *([""] * (len(by) - 1)), num(total["calls"]),
                  num(total["input_tokens"]), num(total["output_tokens"]),
                  cost_cell(total["cost_nanos"], total["calls"], total["unpriced_calls"]),
                  num(total["unpriced_calls"]), style="bold")
    print_table(stdout_console(), table)


@usage_group.command()
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl",
              show_default=True, help="jsonl, csv or parquet: the stored events; focus-csv or "
              "focus-parquet: one FinOps FOCUS 1.2 cost row per call (docs/formats.md).")
@zone_option()
@click.option("--start", metavar="D", help=when_help("From"))
@click.option("--end", metavar="D", help=when_help("Up to", end=True))
@where_option("Only the events whose metadata KEY has the value VALUE (repeat for AND).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (replaced only once the export is whole); default "
                   "standard output.")
@pass_app
def export(app: App, fmt: str, tz: Zone, start: str | None, end: str | None,
           where: tuple[str, ...], output: Path | None) -> None:
    """Export the project's events (or its calls as FOCUS rows), in log order; dates are
    those of the --tz zone (the machine's by default).

    Example: llmring usage export --format focus-parquet --start 2025-06-01 -o june.parquet
    """
    lo, hi = parse_window(start, end, tz.info)
    flt = where_filter(where)
    with app.api(create=False, reads=True) as api:
        if api.remote:  # the server streams; the client holds the answer
            chunks: Iterator[bytes] = iter([api.call(ops.EXPORT, format=fmt, start=ts_text(lo),
                                                     end=ts_text(hi), where=flt)])
        else:  # streamed from the data directory, in bounded memory
            try:
                chunks = api.service.export_stream(api.project, format=fmt, start=lo, end=hi,
                                                   where=flt)
            except LedgerError as exc:
                raise api.error(exc) from None
        if output is None:
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            return
        part = output.with_name(output.name + ".part")
        try:
            with part.open("wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            part.replace(output)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise


@usage_group.group("dimensions")
def dimensions_group() -> None:
    """The metadata keys the project declares as dimensions: stored as columns in its
    segments, so reports by them stay fast at any size (any key can be reported by)."""


@dimensions_group.command("show")
@json_option
@pass_app
def dimensions_show(app: App, as_json: bool) -> None:
    """The project's declared dimensions."""
    with app.api(create=False) as api:
        result = api.call(ops.DIMENSIONS)
    if as_json:
        print_json(result)
        return
    keys = result["dimensions"]
    click.echo(f"Declared dimensions of {result['project']}: "
               f"{', '.join(keys) if keys else 'none'}")


@dimensions_group.command("set")
@click.argument("keys", nargs=-1, metavar="KEY...")
@json_option
@pass_app
def dimensions_set(app: App, keys: tuple[str, ...], as_json: bool) -> None:
    """Declare the project's dimensions (replacing the list; no KEY: none). Segments
    written from now on carry a column per key; older ones are read from the JSON.

    Example: llmring usage dimensions set customer team
    """
    with app.api() as api:
        result = api.call(ops.SET_DIMENSIONS, keys=[k.removeprefix("meta.") for k in keys])
    if as_json:
        print_json(result)
        return
    declared = result["dimensions"]
    click.echo(f"Declared dimensions of {result['project']}: "
               f"{', '.join(declared) if declared else 'none'}")
