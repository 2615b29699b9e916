"""The ``llmring`` command run in-process on a data directory, isolated from the
environment's ``LLMRING_*`` settings and the machine's zone (dates are read in UTC:
``tests/integration/test_cli_zones.py`` covers the zones), and its ``--json`` answer
read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from ledger.cli import cli


def llmring(data: Path, *args: str) -> Result:
    """``llmring --data DATA ARGS…``; exceptions propagate (a traceback is a failure)."""
    runner = CliRunner(env={"LLMRING_LEDGER_DIR": None, "LLMRING_PROJECT": None, "TZ": "UTC"})
    return runner.invoke(cli, ["--data", str(data), *args], catch_exceptions=False)


def as_json(result: Result) -> Any:
    """The JSON a command printed; it must have succeeded."""
    assert result.exit_code == 0, result.output
    return json.loads(result.output)
