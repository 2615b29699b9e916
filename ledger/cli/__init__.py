"""The ``llmring`` command-line interface (DESIGN §10): a thin ``click`` layer over the
embedded ledger. ``main`` is the console script's entry point."""

from ledger.cli.main import cli, main

__all__ = ["cli", "main"]
