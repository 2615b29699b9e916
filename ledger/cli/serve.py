"""``llmring serve`` (run the HTTP server on the data directory) and ``llmring keys …``
(create, list and revoke the API keys that let clients reach one project each)."""

from __future__ import annotations

import click

from ledger.api.apikeys import ApiKeyError, ApiKeyStore
from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    App,
    CliError,
    json_option,
    new_table,
    pass_app,
    print_json,
    print_table,
    stdout_console,
)
from ledger.model.tenant import TenantError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body", default=4 * 1024 * 1024, show_default=True,
              type=click.IntRange(1024), help="Largest request body in bytes (413 above).")
@click.option("--max-batch-body", default=64 * 1024 * 1024, show_default=True,
              type=click.IntRange(1024), help="Largest body of POST /api/v1/log/batch.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@pass_app
def serve(app: App, host: str, port: int, max_body: int, max_batch_body: int,
          log_level: str) -> None:
    """Serve the ledger over HTTP (docs/http-api.md) on the data directory.

    The server holds the directory's lock while it runs; API keys (`llmring keys
    create`) can be added and revoked meanwhile. Ctrl-C or SIGTERM stops it gracefully:
    requests in flight finish and the journal is sealed.
    """
    import uvicorn

    from ledger.core.facade import LedgerError, LedgerLockedError
    from ledger.server import ServerConfig, create_app
    from ledger.server.app import ServerState
    from ledger.server.fastpath import FastPath
    from ledger.storage.config import ConfigError
    from ledger.storage.manifest import ManifestError
    from ledger.tlog.signing import KeyRingError

    config = ServerConfig(app.data, max_body=max_body, max_batch_body=max_batch_body)
    try:  # open the directory first: a locked or damaged one is reported, not traced
        state = ServerState(config)
    except LedgerLockedError as exc:
        raise CliError(str(exc)) from None
    except (LedgerError, ManifestError, KeyRingError, ConfigError) as exc:
        raise CliError(f"cannot serve {app.data}: {exc}", EXIT_FAILED_CHECK) from None
    asgi = FastPath(create_app(config, state=state))
    uvicorn.run(asgi, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=30, lifespan="on", proxy_headers=False)


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
def list_api_keys(app: App, as_json: bool) -> None:
    """List every key (id, project, prefix, status); never the keys themselves."""
    try:
        keys = _store(app).keys()
    except ApiKeyError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json({"keys": [k.public() for k in keys]})
        return
    table = new_table("key id", "project", "prefix", "name", "status", "created", "revoked")
    for k in keys:
        p = k.public()
        table.add_row(k.key_id, k.project, k.prefix + "…", k.name, p["status"], k.created_at,
                      k.revoked_at or "")
    print_table(stdout_console(), table)


@keys_group.command("revoke")
@click.argument("key_id")
@json_option
@pass_app
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
