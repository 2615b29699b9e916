"""``llmring budgets …``: set, list, remove and watch the budgets of a project
(``ledger.api.budgets``), on a data directory or through ``--server``."""

from __future__ import annotations

from typing import Any

import click

from ledger.api import operations as ops
from ledger.cli.context import (
    App,
    CliError,
    json_option,
    machine_zone,
    new_table,
    pass_app,
    print_json,
    print_table,
    stdout_console,
    usd,
)
from ledger.model.periods import PERIODS


@click.group("budgets")
def budgets_group() -> None:
    """Budgets: spend per day, week or month of a project, with alerts.

    Each threshold crossed (e.g. 75%, 90%, 100% of the amount) is recorded once per
    period and POSTed, signed, to the budget's webhook by `llmring serve`; a hard
    budget refuses the project's logs once it is spent (docs/http-api.md).
    """


def _thresholds(text: str) -> list[int]:
    try:
        levels = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        levels = []
    if not levels:
        raise CliError(f"--thresholds: {text!r} is not a list of whole percentages, e.g. "
                       "75,90,100")
    return levels


def _percents(levels: list[int]) -> str:
    return ", ".join(f"{t}%" for t in levels) or "-"


@budgets_group.command("set")
@click.argument("name")
@click.option("--amount", required=True, metavar="USD",
              help="The budget per period in USD, e.g. 10 or 2.50 (exact).")
@click.option("--period", required=True, type=click.Choice(PERIODS),
              help="The calendar period (weeks start on Monday).")
@click.option("--tz", default=None, metavar="ZONE",
              help="The IANA time zone of the period, e.g. Europe/Paris (default: the "
              "machine's zone, as for every CLI date; shown in the output).")
@click.option("--thresholds", "thresholds_text", default="75,90,100", show_default=True,
              metavar="P,P,…", help="Alert at these percentages of the amount.")
@click.option("--webhook", metavar="URL", help="POST each alert here (JSON, signed).")
@click.option("--webhook-secret", metavar="SECRET",
              help="The HMAC key of the signature (default: the ledger makes one and "
              "prints it once).")
@click.option("--hard", is_flag=True, help="Refuse the project's logs once 100% is spent "
              "(HTTP 402 budget_exceeded) until the period ends.")
@json_option
@pass_app
def set_budget(app: App, name: str, amount: str, period: str, tz: str | None,
               thresholds_text: str, webhook: str | None, webhook_secret: str | None,
               hard: bool, as_json: bool) -> None:
    """Create or replace budget NAME of the project.

    Example: llmring budgets set daily --amount 10 --period day --tz Europe/Paris
    --thresholds 75,90,100 --webhook https://hooks.example.com/llm
    """
    levels = _thresholds(thresholds_text)
    with app.api() as api:
        answer = api.call(ops.SET_BUDGET, name=name, amount=amount, period=period,
                          tz=tz or machine_zone(),
                          thresholds=levels, webhook=webhook, webhook_secret=webhook_secret,
                          hard=hard)
    if as_json:
        print_json(answer)
        return
    kind = "hard budget" if answer["hard"] else "budget"
    click.echo(f"{kind} {answer['name']} of project {answer['project']}: "
               f"{usd(answer['amount_nanos'])} per {answer['period']} ({answer['tz']}), "
               f"alerts at {_percents(answer['thresholds'])}"
               + (f" to {answer['webhook']}" if answer["webhook"] else ""))
    if "webhook_secret" in answer:
        click.echo(f"webhook secret (shown once, store it): {answer['webhook_secret']}")


@budgets_group.command("list")
@json_option
@pass_app
def list_budgets(app: App, as_json: bool) -> None:
    """List the project's budgets."""
    with app.api(create=False) as api:
        project = api.project
        budgets = api.call(ops.LIST_BUDGETS)["budgets"]
    if as_json:
        print_json({"project": project, "budgets": budgets})
        return
    if not budgets:
        click.echo(f"No budgets in project {project}.")
        return
    table = new_table("name", "amount", "period", "tz", "alerts at", "hard", "webhook",
                      title=f"Budgets of {project}", numeric=("amount",), ids=("name",),
                      optional=("webhook",))
    for b in budgets:
        table.add_row(b["name"], usd(b["amount_nanos"]), b["period"], b["tz"],
                      _percents(b["thresholds"]), "yes" if b["hard"] else "no",
                      b["webhook"] or "-")
    print_table(stdout_console(), table)


@budgets_group.command("remove")
@click.argument("name")
@json_option
@pass_app
def remove_budget(app: App, name: str, as_json: bool) -> None:
    """Remove budget NAME of the project."""
    with app.api(create=False) as api:
        answer = api.call(ops.REMOVE_BUDGET, name=name)
    if as_json:
        print_json(answer)
    else:
        click.echo(f"removed budget {name}")


def _alert(state: dict[str, Any]) -> str:
    last = state["last_alert"]
    if last is None:
        return "-"
    if last["state"] == "none":
        return f"{last['threshold']}% (no webhook)"
    return f"{last['threshold']}% {last['state']}" + (
        f" ({last['attempts']} failed)" if last["attempts"] else "")


@budgets_group.command("status")
@json_option
@pass_app
def budget_status(app: App, as_json: bool) -> None:
    """Each budget this period: spent, percent, thresholds crossed, refusing, and the
    delivery of its last alert."""
    with app.api(create=False) as api:
        answer = api.call(ops.BUDGET_STATUS)
    if as_json:
        print_json(answer)
        return
    budgets = answer["budgets"]
    if not budgets:
        click.echo(f"No budgets in project {answer['project']}.")
        return
    table = new_table("name", "period from", "spent", "amount", "percent", "crossed",
                      "refusing", "last alert", title=f"Budgets of {answer['project']}",
                      numeric=("spent", "amount", "percent"), ids=("name", "period from"),
                      optional=("last alert",))
    for b in budgets:
        table.add_row(b["name"], b["current_period"]["start"], usd(b["spent_nanos"]),
                      usd(b["amount_nanos"]), f"{b['percent']:.2f}%",
                      _percents(b["crossed"]), "yes" if b["refusing"] else "no",
                      _alert(b))
    print_table(stdout_console(), table)
