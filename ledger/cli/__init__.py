"""The ``llmring`` command-line interface (docs/cli.md): a thin ``click`` layer over the
API (on the embedded data directory, or ``--server``) and, for the commands that look
after a data directory, the ledger itself. ``main`` is the console script's entry
point."""

from ledger.cli.main import cli, main

__all__ = ["cli", "main"]
