"""``llmring prices …``: the project's price overrides (``ledger.api.prices``): set, import,
list and remove rows, and show how a call, or a stored event, is priced; on a data
directory or through ``--server``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from ledger.api import operations as ops
from ledger.cli.context import (
    App,
    CliError,
    json_option,
    new_table,
    pass_app,
    print_json,
    print_table,
    stdout_console,
    usd,
)

RATE = "USD/1M"


@click.group("prices")
def prices_group() -> None:
    """Price overrides: the prices a project actually pays.

    A row prices one provider's model (or a glob of models, or `*`) from a UTC day on,
    with its own rates (USD per million tokens) and/or a discount (percent) on the
    packaged genai-prices price. Events sent without a cost are priced with the row in
    force at their `ts`; their `price_id` names the row (docs/formats.md). Changing the
    rows never reprices stored events.
    """


def _row_text(row: dict[str, Any]) -> str:
    rates = [f"{name} {row[name]}" for name in ("input", "cached_input", "cache_write",
                                                 "output") if row[name] is not None]
    text = (f"{', '.join(rates)} {RATE}" if rates else "")
    if row["request"] is not None:
        text += f", request {row['request']} USD"
    if row["discount"] is not None:
        text += ("; " if text else "") + f"{row['discount']}% off"
    return text


@prices_group.command("set")
@click.option("--provider", required=True, help="The provider, e.g. openai (`*`: any).")
@click.option("--model", required=True, help="The model, a glob such as 'gpt-4o*', or `*`.")
@click.option("--since", metavar="YYYY-MM-DD", help="In force from this UTC day (default: "
              "always, until a later row of the same provider and model).")
@click.option("--input", "input_rate", metavar=RATE, help="Input rate, USD per million tokens.")
@click.option("--cached-input", metavar=RATE, help="Cached input rate (default: --input).")
@click.option("--cache-write", metavar=RATE, help="Cache write rate (default: --input).")
@click.option("--output", "output_rate", metavar=RATE, help="Output rate, USD per million "
              "tokens.")
@click.option("--request", "fee", metavar="USD", help="A fee per call, in USD.")
@click.option("--discount", metavar="PERCENT", help="Percent off the row's rates, or off the "
              "packaged price when no rates are given.")
@json_option
@pass_app
def set_price(app: App, provider: str, model: str, since: str | None,
              input_rate: str | None, cached_input: str | None, cache_write: str | None,
              output_rate: str | None, fee: str | None, discount: str | None,
              as_json: bool) -> None:
    """Add a price row, or replace the row of the same provider, model and --since.

    Examples: llmring prices set --provider openai --model gpt-4o --since 2026-01-01
    --input 2.00 --output 8.00; llmring prices set --provider anthropic --model '*'
    --discount 15
    """
    row = {"provider": provider, "model": model, "since": since, "input": input_rate,
           "cached_input": cached_input, "cache_write": cache_write, "output": output_rate,
           "request": fee, "discount": discount}
    with app.api() as api:
        answer = api.call(ops.SET_PRICES, rows=[{k: v for k, v in row.items()
                                                 if v is not None}])
    if as_json:
        print_json(answer)
        return
    (made,) = answer["set"]
    verb = "replaced" if answer["replaced"] else "added"
    click.echo(f"{verb} price row {made['id']} of project {answer['project']}: "
               f"{made['provider']}/{made['model']} from {made['since'] or 'the beginning'}: "
               f"{_row_text(made)}")


@prices_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Make the file's rows all of the project's "
              "rows (default: add them, replacing rows of the same provider, model, since).")
@json_option
@pass_app
def import_prices(app: App, file: Path, replace: bool, as_json: bool) -> None:
    """Add the price rows of FILE (JSON: a list of rows, or {"rows": [...]}).

    A row: {"provider", "model", "since", "input", "cached_input", "cache_write",
    "output", "request", "discount"}, every number as decimal text. The file is checked
    whole: one bad row, or two rows of the same provider and model from the same day,
    and nothing changes.
    """
    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{file} is not JSON: {exc}") from None
    if isinstance(data, dict) and set(data) <= {"rows", "format", "version"} and "rows" in data:
        data = data["rows"]
    if not isinstance(data, list):
        raise CliError(f"{file}: expected a JSON list of price rows or {{\"rows\": [...]}}")
    with app.api() as api:
        answer = api.call(ops.SET_PRICES, rows=data, replace=replace)
    if as_json:
        print_json(answer)
        return
    click.echo(f"imported {len(answer['set'])} price rows into project {answer['project']} "
               f"(version {answer['version']}; {len(answer['replaced'])} replaced"
               f"{' or removed' if replace else ''})")


@prices_group.command("list")
@json_option
@pass_app
def list_prices(app: App, as_json: bool) -> None:
    """List the project's price rows (their ids are named in price_id)."""
    with app.api(create=False) as api:
        answer = api.call(ops.LIST_PRICES)
    if as_json:
        print_json(answer)
        return
    if not answer["rows"]:
        click.echo(f"No price overrides in project {answer['project']}: the packaged "
                   "genai-prices prices apply.")
        return
    table = new_table("id", "provider", "model", "since", "prices",
                      title=f"Price overrides of {answer['project']} "
                            f"(version {answer['version']})", ids=("id",))
    for row in answer["rows"]:
        table.add_row(row["id"], row["provider"], row["model"], row["since"] or "-",
                      _row_text(row))
    print_table(stdout_console(), table)


@prices_group.command("remove")
@click.argument("row_id")
@json_option
@pass_app
def remove_price(app: App, row_id: str, as_json: bool) -> None:
    """Remove price row ROW_ID (see `llmring prices list`)."""
    with app.api(create=False) as api:
        answer = api.call(ops.REMOVE_PRICE, row_id=row_id)
    if as_json:
        print_json(answer)
    else:
        click.echo(f"removed price row {row_id}")


@prices_group.command("show")
@click.argument("model", required=False)
@click.option("--provider", default="", help="The provider, as events name it.")
@click.option("--at", metavar="DATE", help="The call's time: YYYY-MM-DD or ISO 8601 "
              "(naive = UTC; default: now).")
@click.option("--input", "input_tokens", type=click.IntRange(0), default=None,
              help="Input tokens (all, cached included).")
@click.option("--cached-input", "cached_input_tokens", type=click.IntRange(0), default=None)
@click.option("--cache-write", "cache_write_tokens", type=click.IntRange(0), default=None)
@click.option("--output", "output_tokens", type=click.IntRange(0), default=None,
              help="Output tokens (all, reasoning included).")
@click.option("--reasoning", "reasoning_tokens", type=click.IntRange(0), default=None)
@click.option("--log-id", help="Explain a stored event instead: recompute its price and "
              "say whether it matches what was stored.")
@json_option
@pass_app
def show_price(app: App, model: str | None, provider: str, at: str | None,
               input_tokens: int | None, cached_input_tokens: int | None,
               cache_write_tokens: int | None, output_tokens: int | None,
               reasoning_tokens: int | None, log_id: str | None, as_json: bool) -> None:
    """Explain the price of a call of MODEL (or of a stored event, --log-id).

    Example: llmring prices show gpt-4o --provider openai --at 2026-03-01 --input 1000
    --output 200
    """
    if (model is None) == (log_id is None):
        raise CliError("give MODEL or --log-id (one of them)")
    with app.api(create=False) as api:
        answer = api.call(ops.SHOW_PRICE, model=model, provider=provider or None, at=at,
                          input_tokens=input_tokens, cached_input_tokens=cached_input_tokens,
                          cache_write_tokens=cache_write_tokens, output_tokens=output_tokens,
                          reasoning_tokens=reasoning_tokens, log_id=log_id)
    if as_json:
        print_json(answer)
        return
    echo = click.echo
    echo(f"{answer['provider'] or '(any provider)'}/{answer['model']} at {answer['at']} "
         f"in project {answer['project']}")
    row = answer["override"]
    if row is not None:
        until = row["in_force"]["until"]
        echo(f"override row {row['id']}: {row['provider']}/{row['model']}, in force from "
             f"{row['since'] or 'the beginning'}{f' until {until}' if until else ''}: "
             f"{_row_text(row)}")
    packaged = answer["packaged"]
    if packaged is not None and (row is None or row["input"] is None):
        rates = ", ".join(f"{k} {v}" for k, v in packaged["rates"].items())
        echo(f"packaged row {packaged['price_id']}"
             f"{' from ' + packaged['since'] if packaged['since'] else ''}: {rates}")
    usage = ", ".join(f"{k} {v}" for k, v in answer["usage"].items() if v)
    echo(f"usage: {usage or 'no tokens'}")
    for line in answer["arithmetic"]:
        echo(f"  {line}")
    if answer["cost_nanos"] is not None:
        echo(f"cost: {usd(answer['cost_nanos'])}  price_id: {answer['price_id']}")
    stored = answer.get("log")
    if stored is not None:
        echo(f"stored: {usd(stored['cost_nanos'])} ({stored['cost_source']}) price_id: "
             f"{stored['price_id']}")
        verdict = {True: "matches", False: "DIFFERS", None: "not priced by the ledger"}
        echo(f"{verdict[stored['matches']]}: {stored['note']}")
