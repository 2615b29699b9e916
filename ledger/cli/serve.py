"""``llmring serve``: run the HTTP server on the data directory."""

from __future__ import annotations

import click

from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    App,
    CliError,
    local_only,
    pass_app,
)


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
@local_only
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
