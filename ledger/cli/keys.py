"""``llmring keys …``: create, list and revoke the API keys that let clients reach one
project each on ``llmring serve``."""

from __future__ import annotations

import click

from ledger.api.apikeys import ApiKeyError, ApiKeyStore
from ledger.cli.context import (
    App,
    CliError,
    json_option,
    local_only,
    new_table,
    pass_app,
    print_json,
    print_table,
    stdout_console,
    when,
)
from ledger.model.tenant import TenantError


@click.group("keys")
def keys_group() -> None:
    """API keys: each key lets a client read and write one project on `llmring serve`.

    Keys are stored only as SHA-256 hashes in DATA/api-keys.json; the key itself is
    printed once, by `create`.
    """


def _store(app: App) -> ApiKeyStore:
    return ApiKeyStore(app.data)


@keys_group.command("create")
@click.option("--project", "project", required=True, help="The project the key opens.")
@click.option("--name", default="", help="A label for the key (who or what uses it).")
@json_option
@pass_app
@local_only
def create_key(app: App, project: str, name: str, as_json: bool) -> None:
    """Create a key for PROJECT and print it (this is the only time it is shown)."""
    try:
        key, record = _store(app).create(project, name)
    except (ApiKeyError, TenantError) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json({"api_key": key, **record.public()})
        return
    click.echo(key)
    click.echo(f"created {record.key_id} for project {record.project!r}; store the key now, "
               "it is not shown again", err=True)


@keys_group.command("list")
@json_option
@pass_app
@local_only
def list_api_keys(app: App, as_json: bool) -> None:
    """List every key (id, project, prefix, status); never the keys themselves."""
    try:
        keys = _store(app).keys()
    except ApiKeyError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json({"keys": [k.public() for k in keys]})
        return
    if not keys:
        click.echo("No API keys yet: `llmring keys create --project NAME` makes one.")
        return
    table = new_table("key id", "project", "prefix", "name", "status", "created", "revoked",
                      title="API keys (times in UTC)", optional=("revoked", "name"))
    for k in keys:
        p = k.public()
        table.add_row(k.key_id, k.project, k.prefix + "…", k.name, p["status"], when(k.created_at),
                      when(k.revoked_at) if k.revoked_at else "")
    print_table(stdout_console(), table)


@keys_group.command("revoke")
@click.argument("key_id")
@json_option
@pass_app
@local_only
def revoke_key(app: App, key_id: str, as_json: bool) -> None:
    """Revoke KEY_ID (or the key itself); it stops working on the next request."""
    try:
        record = _store(app).revoke(key_id)
    except ApiKeyError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json(record.public())
    else:
        click.echo(f"revoked {record.key_id} (project {record.project!r})")
