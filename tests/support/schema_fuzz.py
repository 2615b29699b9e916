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
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
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
    """A mismatch kept on purpose: ``check`` (a schemathesis check name) fails for
    ``operations`` answered ``status`` with one of ``codes`` (an error's; none for a
    success), for a request whose body ``request`` accepts (when given)."""

    check: str
    operations: tuple[tuple[str, str], ...]
    status: int
    codes: tuple[str, ...]
    reason: str
    request: Callable[[Any], bool] | None = None


def _lax_latency(body: Any) -> bool:
    """Whether an event of the body (one, or a batch) has a ``latency_ms`` that is a
    number or text rather than an integer."""
    events = body.get("events") if isinstance(body, dict) and "events" in body else [body]
    return any(isinstance(e, dict) and type(e.get("latency_ms")) in (float, str)
               for e in (events if isinstance(events, list) else []))


def _big_number(body: Any) -> bool:
    """Whether the body holds a JSON integer past ±2**53 anywhere."""
    if isinstance(body, dict):
        return any(_big_number(v) for v in body.values())
    if isinstance(body, list):
        return any(_big_number(v) for v in body)
    return isinstance(body, int | float) and not isinstance(body, bool) and (
        abs(body) > 2**53)


DELIBERATE: tuple[Deliberate, ...] = (
    Deliberate("positive_data_acceptance", EVENT_ROUTES, 422,
               ("invalid_event", "invalid_content"),
               "an event is checked by the ledger's rules beyond JSON types: a timestamp "
               "within the accepted window (relative to now), a cost exact in nano-USD, "
               "text without control characters, a conversation's event fields in its "
               "metadata"),
    Deliberate("positive_data_acceptance", (("POST", "/api/v1/integrations/litellm"),), 422,
               ("invalid_event",),
               "a LiteLLM payload is checked by the event's rules beyond JSON types: a "
               "startTime within the accepted window, a provider for a successful call "
               "(which `status` decides), ids without white space, names without control "
               "characters, a cost within range (docs/http-api.md, LiteLLM)"),
    Deliberate("positive_data_acceptance", DATE_ROUTES, 400,
               ("bad_request", "invalid_rollup"),
               "a date is a string in the schema; text that is not a date, one out of "
               "range, a start not before its end, an unknown time zone or dimension are "
               "400"),
    Deliberate("positive_data_acceptance", RECEIPT_SELECTION, 400,
               ("invalid_receipt_request", "nothing_to_certify"),
               "exactly one selection mode, dates that parse and are ordered, known "
               "log ids and a non-empty selection cannot be stated in the schema"),
    Deliberate("positive_data_acceptance", (("PUT", "/api/v1/usage/dimensions"),), 400,
               ("bad_request",),
               "a declared dimension is a metadata key: 1 to 128 characters without "
               "control, bidirectional or zero-width characters or commas, at most 16 a "
               "project; refused with the same 400 locally and over HTTP"),
    Deliberate("positive_data_acceptance", (("GET", "/api/v1/log/consistency"),
                                            ("GET", "/api/v1/log/inclusion/{log_id}")),
               400, ("bad_request",),
               "a size beyond the log, or one no checkpoint was signed at, depends on the "
               "log's state"),
    Deliberate("positive_data_acceptance", (("POST", "/api/v1/log/cosignatures"),), 400,
               ("bad_request",),
               "only a checkpoint note the ledger signed is accepted"),
    Deliberate("positive_data_acceptance", EVENT_ROUTES, 402, ("budget_exceeded",),
               "a hard budget an earlier request set refuses the project's logs once it "
               "is spent: it depends on the log's state"),
    Deliberate("positive_data_acceptance", (("PUT", "/api/v1/budgets/{name}"),), 422,
               ("invalid_request",),
               "a budget's amount must be a decimal more than 0 and exact in nano-USD, its "
               "zone one the query engine knows, its period day, week or month, its "
               "webhook an http(s) URL on an allowed host: beyond what the schema states"),
    Deliberate("positive_data_acceptance", (("POST", "/api/v1/prices"),
                                            ("GET", "/api/v1/prices/show")), 422,
               ("invalid_request",),
               "a price row is checked by the ledger's rules (docs/formats.md, \"Price "
               "overrides\"): known fields, exact non-negative decimal text, input and "
               "output rates together, a real date, no two rows of one model from one day; "
               "show needs a model (or a log id) and counts that follow the token "
               "convention: several fields at once, beyond what the schema states"),
    Deliberate("negative_data_rejection",
               (*EVENT_ROUTES, ("POST", "/api/v1/integrations/litellm")), 413,
               ("too_large",),
               "a body over the route's size limit is refused by its size before it is "
               "parsed: the refusal is 413, which schemathesis does not count as one"),
    Deliberate("negative_data_rejection", EVENT_ROUTES[:2], 200, (),
               "`latency_ms` also takes a finite number or numeric text, rounded "
               "(docs/formats.md), as earlier clients send it; the schema documents the "
               "integer that is stored", request=_lax_latency),
    Deliberate("negative_data_rejection", (("POST", "/otlp/v1/traces"),), 200, (),
               "a 64-bit integer as a JSON number past ±2**53: the schema states numbers "
               "as far as every JSON reader is exact (and the decimal text beyond); the "
               "receiver takes the type's whole range as a number too, as the protobuf "
               "JSON mapping asks of it", request=_big_number),
)


def deliberate(check: str, method: str, path: str, status: int, answer: Any,
               request: Any = None, *, any_request: bool = False) -> bool:
    """Whether a failure of ``check`` on ``method path`` answered ``status`` with
    ``answer`` (its JSON) to ``request`` (the request's JSON body) is one of
    ``DELIBERATE``; ``any_request``: the body is not known (the CLI's report)."""
    code = answer.get("code") if isinstance(answer, dict) and status >= 400 else None
    return any(d.check == check and (method, path) in d.operations and d.status == status
               and (code in d.codes if d.codes else code is None)
               and (d.request is None or any_request or d.request(request))
               for d in DELIBERATE)


def cli_config() -> str:
    """``DELIBERATE`` as a schemathesis TOML config: per operation, the deliberate
    statuses added to the check's expected ones (the CLI cannot match error codes)."""
    from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES

    expected: dict[tuple[str, str], set[str]] = {}
    for d in DELIBERATE:
        if d.check != "positive_data_acceptance":
            continue  # matched in the run's report (``unexpected``)
        for op in d.operations:
            expected.setdefault(op, set(POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES)).add(
                str(d.status))
    blocks = []
    for (method, path), statuses in sorted(expected.items()):
        blocks.append(
            "[[operations]]\n"
            f"include-name = {json.dumps(f'{method} {path}')}\n"
            "checks.positive_data_acceptance.expected-statuses = "
            f"{json.dumps(sorted(statuses))}\n")
    return "\n".join(blocks)


# -- the long run ------------------------------------------------------------------------
def _failure_checks() -> dict[str, tuple[str, ...]]:
    """Each schemathesis failure code (``ST202`` …) with the checks reporting it."""
    from schemathesis.checks import load_all_checks
    from schemathesis.core.failures import Failure

    load_all_checks()
    found, todo = {}, [Failure]
    while todo:
        cls = todo.pop()
        found[cls.code] = cls.checks
        todo += cls.__subclasses__()
    return found


_UNKNOWN = object()
"""A request body the report does not show."""


def failures(output: str) -> list[tuple[str, str, int, Any, Any]]:
    """The failures in a ``schemathesis run`` output: (failure code, ``METHOD path``,
    status, the answer's JSON or None, the request's JSON body from the report's curl
    line or ``_UNKNOWN``), one per failure code of each reported case."""
    found: list[tuple[str, str, int, Any, Any]] = []
    operation, codes, lines = "", [], output.splitlines()
    for i, line in enumerate(lines):
        if header := re.match(r"^_{3,} (.+?) _{3,}$", line):
            operation, codes = header.group(1), []
        elif code := re.match(r"^- (ST\d+) ", line):
            codes.append(code.group(1))
        elif status := re.match(r"^\[(\d{3})\] ", line):
            body = next((t.strip() for t in lines[i + 1:i + 4] if t.strip()), "")
            try:
                answer = json.loads(body.strip("`"))
            except ValueError:  # shortened in the report: its code, when it shows
                named = re.search(r'"code":\s*"([a-z_]+)"', body)
                answer = {"code": named.group(1)} if named else None
            curl = next((t for t in lines[i + 1:i + 12] if t.strip().startswith("curl ")),
                        "")
            found += [(c, operation, int(status.group(1)), answer, _curl_body(curl))
                      for c in codes]
            codes = []
    return found


def _curl_body(curl: str) -> Any:
    """The JSON body of a report's ``curl … -d '…'`` line, or ``_UNKNOWN``."""
    try:
        args = shlex.split(curl)
        return json.loads(args[args.index("-d") + 1])
    except (ValueError, IndexError):
        return _UNKNOWN


def unexpected(output: str) -> list[tuple[str, str, int, Any, Any]]:
    """The failures of a run that ``DELIBERATE`` does not list."""
    checks = _failure_checks()
    left = []
    for code, operation, status, answer, body in failures(output):
        method, _, path = operation.partition(" ")
        if not any(deliberate(check, method, path, status, answer,
                              None if body is _UNKNOWN else body,
                              any_request=body is _UNKNOWN)
                   for check in checks.get(code, ())):
            left.append((code, operation, status, answer, body))
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--max-response-time", type=float, default=30.0,
                        help="seconds; a slower answer is a failure")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="write schemathesis' whole output there")
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
                 "--suppress-health-check", "all", "--continue-on-failure",
                 "--output-truncate", "false"],
                capture_output=True, text=True, check=False, cwd=tmp)  # its cache there
        finally:
            server.stop()
        log = serverproc.log_text(server.data, int(server.url.rsplit(":", 1)[1]))
    output = run.stdout + run.stderr
    if args.output:
        args.output.write_text(output)
    for line in output.splitlines():  # each failure: its operation, kind, status, request
        if re.match(r"^_{3,} .+ _{3,}$|^- ST\d+|^\[\d{3}\]|^\s+curl ", line):
            print(line[:300])
    print(output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-4000:])
    server_errors = len(re.findall(r"^\[5\d\d\]", output, re.MULTILINE))
    tracebacks = log.count("Traceback")
    found, left = failures(output), unexpected(output)
    for code, operation, status, answer, _ in left:
        print(f"NOT DELIBERATE: {code} {operation} -> {status} {str(answer)[:200]}")
    print(f"5xx answers: {server_errors}; tracebacks in the server log: {tracebacks}; "
          f"failures: {len(found)}, of them deliberate (docs/decisions.md): "
          f"{len(found) - len(left)}, not deliberate: {len(left)}")
    ok = not server_errors and not tracebacks and not left and "SUMMARY" in output
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
