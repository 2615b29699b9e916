"""The ``llmring`` command group: global options (data directory, project, or a server
and its API key, which choose the API's transport once) and the registration of every
subcommand; see ``llmring --help``."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.budgets import budgets_group
from ledger.cli.context import App, CliError, Commands
from ledger.cli.demo import demo
from ledger.cli.ingest import ingest, record
from ledger.cli.keys import keys_group
from ledger.cli.ledger import ledger_group
from ledger.cli.log import log_group
from ledger.cli.prices import prices_group
from ledger.cli.receipts import receipts_group
from ledger.cli.serve import serve
from ledger.cli.signing_keys import signing_keys_group
from ledger.cli.usage import usage_group
from ledger.cli.witness import witness_group
from ledger.model.tenant import TenantError, check_tenant
from ledger.storage.objectstore import looks_like_uri


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100})
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              envvar="LLMRING_LEDGER_DIR", default="./data", show_default=True,
              show_envvar=True, help="The ledger's data directory.")
@click.option("--storage", metavar="URI", envvar="LLMRING_STORAGE", show_envvar=True,
              help="Keep the segment files on S3-compatible object storage at "
                   "s3://bucket/prefix (endpoint and credentials: AWS_ENDPOINT_URL, "
                   "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); fixed in the "
                   "data directory's config.json when it is first used.")
@click.option("--project", envvar="LLMRING_PROJECT", default="default", show_default=True,
              show_envvar=True, help="The project (tenant) to read and write.")
@click.option("--server", metavar="URL", envvar="LLMRING_SERVER_URL", show_envvar=True,
              help="Talk to `llmring serve` at URL instead of opening the data directory "
                   "(ingest, record, usage, log, receipts, budgets, prices, ledger stats).")
@click.option("--api-key", metavar="KEY", envvar="LLMRING_API_KEY", show_envvar=True,
              help="The API key for --server; it names the project.")
@click.version_option(package_name="llmring-ledger", prog_name="llmring")
@click.pass_context
def cli(ctx: click.Context, data_dir: str, storage: str | None, project: str,
        server: str | None, api_key: str | None) -> None:
    """A verifiable receipt ledger for LLM usage.

    Record calls (ingest, record), report usage, and check that the ledger's history
    was never rewritten. Works on an embedded data directory (try `llmring demo`), or
    through `llmring serve` with --server URL --api-key KEY.

    Exit codes: 0 ok, 1 a failed check, 2 a usage error.
    """
    if looks_like_uri(data_dir):
        raise CliError(f"--data {data_dir}: the data directory is a local path (it holds "
                       "the journal, manifest, index and keys); to keep the segments on "
                       "object storage give the URI as --storage: `llmring --data ./data "
                       f"--storage {data_dir} …`")
    try:
        check_tenant(project)
    except TenantError as exc:
        raise CliError(f"--project: {exc}") from None
    ctx.obj = App(data=Path(data_dir), project=project, server=server,
                  api_key=api_key, storage=storage)


cli.add_command(ingest)
cli.add_command(record)
cli.add_command(ledger_group)
cli.add_command(usage_group)
cli.add_command(receipts_group)
cli.add_command(demo)
cli.add_command(signing_keys_group)
cli.add_command(log_group)
cli.add_command(serve)
cli.add_command(keys_group)
cli.add_command(budgets_group)
cli.add_command(witness_group)
cli.add_command(prices_group)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="llmring")
