"""``llmring serve``: run the HTTP server on the data directory."""

from __future__ import annotations

import signal

import click

from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    App,
    CliError,
    accept_loss_option,
    local_only,
    pass_app,
    report_losses,
)

SECONDS = click.FloatRange(min=0, min_open=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body", default=4 * 1024 * 1024, show_default=True,
              type=click.IntRange(1024), help="Largest request body in bytes (413 above).")
@click.option("--max-batch-body", default=64 * 1024 * 1024, show_default=True,
              type=click.IntRange(1024),
              help="Largest body of POST /api/v1/log/batch, /api/v1/integrations/litellm "
              "and /otlp/v1/traces (an OTLP body also once inflated).")
@click.option("--idle-timeout", default=5.0, show_default=True,
              type=SECONDS, help="Close a connection idle this long (no request in "
              "progress, since it opened or since its last answer).")
@click.option("--header-timeout", default=10.0, show_default=True,
              type=SECONDS, help="A request's whole head must arrive within this "
              "(408 and closed otherwise).")
@click.option("--body-timeout", default=60.0, show_default=True,
              type=SECONDS, help="A request's whole body must arrive within this after "
              "its head (408 and closed otherwise).")
@click.option("--max-connections", default=None, type=click.IntRange(1),
              help="Most connections open at once; one more closes the oldest idle one. "
              "Default and most: the file-descriptor limit less a quarter kept for the "
              "ledger.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One line per request to stderr (method, path, status, latency, "
              "project; never the API key).")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Serve GET /metrics (Prometheus; no API key: per-project costs are "
              "operator data).")
@click.option("--webhook-host", "webhook_hosts", multiple=True, metavar="HOST",
              help="Only send budget alerts to webhooks on this host name (repeat for "
              "several); default: any host (docs/http-api.md, SSRF).")
@click.option("--webhook-attempts", default=8, show_default=True, type=click.IntRange(1),
              help="Attempts to deliver one budget alert before giving up.")
@click.option("--webhook-backoff", default=1.0, show_default=True, type=SECONDS,
              help="Seconds before the first retry of an alert; each next waits twice as "
              "long (at most --webhook-backoff-max).")
@click.option("--webhook-backoff-max", default=300.0, show_default=True, type=SECONDS,
              help="Longest wait between two attempts, in seconds.")
@click.option("--webhook-timeout", default=10.0, show_default=True, type=SECONDS,
              help="Seconds one webhook request may take.")
@click.option("--witness-interval", default=1.0, show_default=True, type=SECONDS,
              help="Seconds between looks for checkpoints the witnesses of "
              "witnesses.policy have not cosigned yet.")
@click.option("--witness-backoff", default=1.0, show_default=True, type=SECONDS,
              help="Seconds before retrying a failed witness; each next waits twice as "
              "long (at most --witness-backoff-max).")
@click.option("--witness-backoff-max", default=300.0, show_default=True, type=SECONDS,
              help="Longest wait between two submissions to a failing witness.")
@click.option("--witness-timeout", default=10.0, show_default=True, type=SECONDS,
              help="Seconds one add-checkpoint request may take.")
@click.option("--owns", default=None, metavar="P1,P2",
              help="Own only these projects (comma-separated), sharing the data directory "
                   "with servers that own others; writes to another project are answered "
                   "421 with its owner's URL.")
@click.option("--url", "own_url", default=None, metavar="URL",
              help="The URL other servers send this server's projects' clients to "
                   "(recorded in owners.json; with --owns).")
@click.option("--storage", metavar="URI", default=None,
              help="As the global --storage: the object store (s3://bucket/prefix) of "
              "the data directory's segments, fixed when the directory is first used.")
@click.option("--seal-interval", default=60.0, show_default=True,
              type=click.FloatRange(min=0),
              help="Seal the unsealed events once the oldest has waited this long, so "
                   "engines reading the segments see them (0: only at 250,000 rows and on "
                   "stop).")
@click.option("--iceberg", is_flag=True, default=None,
              help="Publish the live segments as the Iceberg table ledger.events at every "
                   "seal and compaction (on by itself once the directory has the table).")
@click.option("--seal-rows", default=None, type=click.IntRange(1),
              help="seal the journal into segments once it holds this many events "
                   "(default 250,000)")
@accept_loss_option
@pass_app
@local_only
def serve(app: App, host: str, port: int, max_body: int, max_batch_body: int,
          idle_timeout: float, header_timeout: float, body_timeout: float,
          max_connections: int | None, log_level: str, access_log: bool, metrics: bool,
          webhook_hosts: tuple[str, ...], webhook_attempts: int, webhook_backoff: float,
          webhook_backoff_max: float, webhook_timeout: float, witness_interval: float,
          witness_backoff: float, witness_backoff_max: float, witness_timeout: float,
          owns: str | None, own_url: str | None, seal_interval: float,
          iceberg: bool | None, seal_rows: int | None, storage: str | None,
          accept_loss: bool) -> None:
    """Serve the ledger over HTTP (docs/http-api.md) on the data directory.

    The server holds the directory's lock while it runs; API keys (`llmring keys
    create`) can be added and revoked meanwhile. Ctrl-C or SIGTERM stops it gracefully:
    requests in flight finish, the journal is sealed and the exit status is 0. Each
    request writes one access-log line to stderr, and GET /metrics serves Prometheus
    counters (docs/http-api.md). Budget alerts are sent to their webhooks from here,
    retried with backoff; pending ones are resumed at the next start. With a
    witnesses.policy in the data directory, each project's new checkpoints are submitted
    to its witnesses (C2SP tlog-witness add-checkpoint) from a background thread, and
    their cosignatures stored (`llmring log witnesses`). Connections are
    bounded in time
    (idle, head, body) and in number, so slow or idle clients cannot exhaust the server.
    """
    import uvicorn

    from ledger.server.allocator import tune

    tune()  # before the directory is opened: every allocation after this follows it

    from ledger.core.facade import LedgerError, LedgerLockedError
    from ledger.errors import ObjectStoreError, OldLayoutError, StorageUriError
    from ledger.server import ServerConfig, create_app
    from ledger.server.app import ServerState
    from ledger.server.connections import ConnectionLimits, uvicorn_options
    from ledger.server.fastpath import FastPath
    from ledger.server.ops import Operations, configure_access_log
    from ledger.server.receipts import ReceiptLogsFastPath
    from ledger.server.tlog import TileFastPath
    from ledger.server.webhooks import DeliveryPolicy
    from ledger.server.witnessing import SubmissionPolicy
    from ledger.storage.config import ConfigError
    from ledger.storage.manifest import ManifestError
    from ledger.storage.objectstore import open_storage
    from ledger.tlog.signing import KeyRingError

    owned = None if owns is None else [p.strip() for p in owns.split(",") if p.strip()]
    if owned is not None:
        from ledger.model.tenant import is_name

        bad = [p for p in owned if not is_name(p)] or ([] if owned else ["(none)"])
        if bad:
            raise CliError(f"--owns: invalid project names: {', '.join(bad)}")
    elif own_url is not None:
        raise CliError("--url needs --owns (a server without --owns owns every project)")
    if storage and app.storage and storage != app.storage:
        raise CliError(f"--storage {storage} differs from the global --storage {app.storage}")
    try:  # checked (and fixed in config.json on first use) before the directory opens
        open_storage(app.layout, storage or app.storage)
    except (StorageUriError, ObjectStoreError) as exc:
        raise CliError(f"cannot serve {app.data}: {exc}") from None
    config = ServerConfig(app.data, max_body=max_body, max_batch_body=max_batch_body,
                          accept_loss=accept_loss, metrics=metrics, owns=owned, url=own_url,
                          seal_interval=seal_interval or None, iceberg=iceberg,
                          seal_rows=seal_rows,
                          webhooks=DeliveryPolicy(
                              attempts=webhook_attempts, backoff=webhook_backoff,
                              backoff_max=webhook_backoff_max, timeout=webhook_timeout,
                              allowed_hosts=(frozenset(h.lower() for h in webhook_hosts)
                                             if webhook_hosts else None)),
                          witnesses=SubmissionPolicy(
                              interval=witness_interval, timeout=witness_timeout,
                              backoff=witness_backoff, backoff_max=witness_backoff_max))
    try:  # open the directory first: a locked or damaged one is reported, not traced
        state = ServerState(config)
    except (LedgerLockedError, OldLayoutError) as exc:
        raise CliError(str(exc)) from None
    except (LedgerError, ManifestError, KeyRingError, ConfigError) as exc:
        raise CliError(f"cannot serve {app.data}: {exc}", EXIT_FAILED_CHECK) from None
    report_losses(state.service.ledger.accepted_losses)
    limits = ConnectionLimits(idle_timeout, header_timeout, body_timeout, max_connections)
    fastapi = create_app(config, state=state)
    asgi = Operations(TileFastPath(ReceiptLogsFastPath(FastPath(fastapi), fastapi), fastapi),
                      fastapi,
                      access_log=access_log)
    configure_access_log(access_log)
    # uvicorn raises the signal that stopped it again once it has shut down; a handler
    # of ours takes it, so a graceful SIGTERM ends with status 0, not death by signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(asgi, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=30, lifespan="on", proxy_headers=False,
                **uvicorn_options(limits))
