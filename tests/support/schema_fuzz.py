"""The schema fuzzing of ``llmring serve`` with every schemathesis check, and the mismatches
between the OpenAPI schema and the server that are deliberate (docs/decisions.md,
"Schema fuzzing"): ``DELIBERATE`` lists each one precisely (the check, the operations,
the status and the error codes answered) with its reason. ``deliberate()`` tells the
suite's fuzz test (``tests/integration/test_server_fuzz.py``) which failures those are;
``cli_config()`` writes the same table as a schemathesis config for the long CLI run.

The long run is one command, not part of the suite (bench/README.md)::

    python -m tests.support.schema_fuzz --minutes 10

It starts ``llmring serve`` on a temporary data directory with a key, runs ``schemathesis
run --checks all`` against it for that long, and prints the failures found by kind; it
exits non-zero on any 5xx or any mismatch the table does not list.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENT_ROUTES = (("POST", "/api/v1/log"), ("POST", "/api/v1/log/batch"),
                ("POST", "/api/v1/conversations/log"))
DATE_ROUTES = (("GET", "/api/v1/logs"), ("GET", "/api/v1/exports/events"),
               ("GET", "/api/v1/usage/rollup"))
RECEIPT_SELECTION = (("POST", "/api/v1/receipts/generate"),
                     ("POST", "/api/v1/receipts/preview"))


@dataclass(frozen=True)
class Deliberate:
    """A schema-valid request the server refuses on purpose: ``check`` (a schemathesis
    check name) fails for ``operations`` answered ``status`` with one of ``codes``."""

    check: str
    operations: tuple[tuple[str, str], ...]
    status: int
    codes: tuple[str, ...]
    reason: str


DELIBERATE: tuple[Deliberate, ...] = (
    Deliberate("positive_data_acceptance", EVENT_ROUTES, 422,
               ("invalid_event", "invalid_content"),
               "an event is checked by the ledger's rules beyond JSON types: a timestamp "
               "within the accepted window (relative to now), a cost exact in nano-USD, "
               "text without control characters, a conversation's event fields in its "
               "metadata"),
    Deliberate("positive_data_acceptance", DATE_ROUTES, 400,
               ("bad_request", "invalid_rollup"),
               "a date is a string in the schema; text that is not a date, one out of "
               "range, a start not before its end, an unknown time zone or dimension are "
               "400"),
    Deliberate("positive_data_acceptance", RECEIPT_SELECTION, 400,
               ("invalid_receipt_request",),
               "exactly one selection mode, dates that parse and are ordered, known "
               "log ids and a non-empty selection cannot be stated in the schema"),
    Deliberate("positive_data_acceptance", (("GET", "/api/v1/log/consistency"),
                                            ("GET", "/api/v1/log/inclusion/{log_id}")),
               400, ("bad_request",),
               "a size beyond the log, or one no checkpoint was signed at, depends on the "
               "log's state"),
    Deliberate("positive_data_acceptance", (("POST", "/api/v1/log/cosignatures"),), 400,
               ("bad_request",),
               "only a checkpoint note the ledger signed is accepted"),
)


def deliberate(check: str, method: str, path: str, status: int, body: Any) -> bool:
    """Whether a failure of ``check`` on ``method path`` answered ``status`` with ``body``
    (its JSON) is one of ``DELIBERATE``."""
    code = body.get("code") if isinstance(body, dict) else None
    return any(d.check == check and (method, path) in d.operations and d.status == status
               and code in d.codes for d in DELIBERATE)


def cli_config() -> str:
    """``DELIBERATE`` as a schemathesis TOML config: per operation, the deliberate
    statuses added to the check's expected ones (the CLI cannot match error codes)."""
    from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES

    expected: dict[tuple[str, str], set[str]] = {}
    for d in DELIBERATE:
        assert d.check == "positive_data_acceptance", d  # the only kind so far
        for op in d.operations:
            expected.setdefault(op, set(POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES)).add(
                str(d.status))
    blocks = []
    for (method, path), statuses in sorted(expected.items()):
        blocks.append(
            "[[operations]]\n"
            f"include-method = {json.dumps(method)}\n"
            f"include-path = {json.dumps(path)}\n"
            "checks.positive_data_acceptance.expected-statuses = "
            f"{json.dumps(sorted(statuses))}\n")
    return "\n".join(blocks)


# -- the long run ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--max-response-time", type=float, default=30.0,
                        help="seconds; a slower answer is a failure")
    args = parser.parse_args(argv)
    from tests.support import serverproc

    with tempfile.TemporaryDirectory(prefix="llmring-fuzz-") as tmp:
        server = serverproc.start(Path(tmp) / "data", projects=("alpha",))
        config = Path(tmp) / "schemathesis.toml"
        config.write_text(cli_config())
        try:
            run = subprocess.run(
                [str(Path(sys.executable).parent / "schemathesis"), "--config-file",
                 str(config), "--no-color", "run", server.url + "/openapi.json",
                 "--checks", "all", "-H", f"X-API-Key: {server.keys['alpha']}",
                 "--max-time", str(int(args.minutes * 60)), "--workers", args.workers,
                 "--max-response-time", str(args.max_response_time),
                 "--suppress-health-check", "all", "--continue-on-failure"],
                capture_output=True, text=True, check=False)
        finally:
            server.stop()
        log = serverproc.log_text(server.data, int(server.url.rsplit(":", 1)[1]))
    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-4000:]
    print(summary)
    server_errors = len(re.findall(r"^\[5\d\d\]", output, re.MULTILINE))
    tracebacks = log.count("Traceback")
    print(f"5xx answers: {server_errors}; tracebacks in the server log: {tracebacks}; "
          f"schemathesis exit status: {run.returncode}")
    return 0 if run.returncode == 0 and not server_errors else 1


if __name__ == "__main__":
    sys.exit(main())
