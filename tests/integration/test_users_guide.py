"""The users' guide runs as written: every fenced block of
``tests/fixtures/users-guide.md`` (a verbatim copy of the migration guide) that a reader
would run, rewritten only in its imports and the placeholders the guide tells the reader
to fill, against a real ``llmring serve``, with ``TZ`` set to Los Angeles, UTC and Tokyo,
on a quiet day (a fresh project with no calls) and a busy one (calls the test logged at
instants it chose, with exact costs). Each recipe's result (its printed totals, or the
documented refusal when the selection it certifies is empty) equals what the test
computes itself from those calls and the documented date rules: the Python clients read
naive datetimes and dates in the machine's zone (docs/python-api.md), the CLI's whole
days are the machine zone's days, a datetime bound is an instant and an end excludes it
(docs/http-api.md, ``ledger.model.dates``).

All recipes of one (zone, day) run in one subprocess (``tests.support.recipes``), each
on its own fresh project (so ``since_last_receipt`` recipes do not see one another);
the shell recipes run with a real ``sh`` and the ``llmring`` console script, the server
and key given by ``LLMRING_SERVER_URL``/``LLMRING_API_KEY``.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from ledger.api.apikeys import ApiKeyStore
from ledger.client.llmring import OfflineProvider
from tests.support import serverproc
from tests.support.paths import FIXTURES, REPO
from tests.support.serverproc import Server

GUIDE = FIXTURES / "users-guide.md"
GUIDE_SHA256 = "86f68ff0dcd2d2d168e700893ec4ed20d3c202b834b9a3c557ae71f5b6a35449"
CLI_DOCS = REPO / "docs" / "cli.md"
ZONES = ("America/Los_Angeles", "UTC", "Asia/Tokyo")
DAYS = ("quiet", "busy")
LLMRING = Path(sys.executable).with_name("llmring")  # the console script beside python

# -- the guide's blocks, and which of them run ---------------------------------------------
# Every fenced block is in exactly one of these tables, keyed by its position in the guide
# and checked against its first line, so a changed guide fails here first.
PYTHON = {  # run in the recipes subprocess, each on a fresh project
    1: ("from llmring import LLMRing", "After: chat, then a receipt since the last"),
    3: ('response = await ring.chat("alias", messages=[...])', "After: no receipt"),
    5: ("# You must explicitly request receipt generation", "an explicit receipt"),
    7: ('response = await ring.chat("alias", messages=[...])', "Pattern 1: per call"),
    10: ("# Use LLM normally throughout the day/week", "Pattern 2: daily batch"),
    13: ("from datetime import datetime", "Pattern 3: October billing"),
    16: ("# Option 1: Use response.usage (available immediately)", "Pattern 4: costs"),
    18: ("# Preview what would be certified", "preview, then generate"),
    20: ("uncert = await ring.server_client.get_uncertified_logs()", "uncertified logs"),
    22: ('logs = await ring.server_client.get_receipt_logs("rcpt_abc123")', "coverage"),
    23: ("# Daily at end of day", "flexible scheduling"),
    24: ("result = await ring.server_client.generate_receipt(", "descriptions and tags"),
    27: ("# Old code", "Step 4: new code"),
    30: ("# Make the conversation", "Q&A: a receipt per conversation"),
    31: ('response = await ring.chat("alias", messages=[...])', "Q&A: real-time cost"),
    32: ("uncert = await ring.server_client.get_uncertified_logs()", "Q&A: uncertified"),
    34: ("from llmring import LLMRing", "multi-project cost allocation"),
    37: ("from llmring import LLMRing", "budget monitoring"),
    38: ("import csv", "exporting for accounting"),
}
SCRIPTS = {  # written to a file and run by a shell recipe
    35: ("#!/usr/bin/env python3", "daily_receipts.py"),
}
SHELL = {  # each command run by sh, in order, each block on a fresh project
    8: ("# After making a conversation, generate its receipt", "Pattern 1 CLI"),
    11: ("# Daily batch (via cron at end of day)", "Pattern 2 CLI"),
    14: ("# End of month", "Pattern 3 CLI"),
    17: ("# Check uncertified logs and their costs", "Pattern 4 CLI"),
    19: ("llmring receipts preview --start 2025-10-01 --end 2025-10-31", "preview CLI"),
    21: ("llmring receipts uncertified --limit 20", "uncertified CLI"),
    28: ("# crontab -e", "Step 5: the daily crontab line"),
    29: ("# Check uncertified logs", "Step 6: test"),
    33: ("llmring receipts uncertified", "Q&A: uncertified CLI"),
    36: ("# Run daily at 1 AM", "the cron line of daily_receipts.py"),
}
NOT_RUN = {
    0: ("from llmring import LLMRing", "Before: the old automatic receipt"),
    2: ('response = await ring.chat("alias", messages=[...])', "Before: response.receipt"),
    4: ("# Receipts generated automatically - no action needed", "Before: comment only"),
    6: ('response = await ring.chat("alias", messages=[...])', "Before: response.receipt"),
    9: ("# Receipts generated for every conversation", "Before: response.receipt"),
    12: ("# Collect all individual receipts throughout month", "Before: response.receipt"),
    15: ("running_total = 0", "Before: response.receipt"),
    25: ("uv sync  # or pip install --upgrade llmring", "installs packages, nothing of ours"),
    26: ("# Search for receipt usage in your codebase", "greps the reader's own code"),
}
# Lines of a run block that are not run: the guide's monthly crontab line uses
# `date -d "last day of last month"`, which GNU date does not understand; docs/cli.md's
# "On a schedule" lines (DOCS_CRON) are run instead, as the working replacement.
NOT_RUN_LINES = {(28, 2): "the guide's monthly line fails on GNU date: docs/cli.md's runs"}

# The rewrites: the imports (llmring → this package), nothing else of the code.
IMPORTS = {
    "from llmring import LLMRing": "from ledger.client.llmring import LLMRing",
    "from llmring.server_client import ServerClient":
        "from ledger.client.async_api import ServerClient",
}
# The placeholders the guide tells the reader to fill, and what fills them here.
PLACEHOLDERS = {
    '"http://localhost:8000"': "the test server's URL",
    '"your-api-key"': "the key of the recipe's own fresh project",
    '"project_a_key"': "the key of the recipe's project A",
    '"project_b_key"': "the key of the recipe's project B",
    "messages=[...]": 'messages=[{"role": "user", "content": "..."}]: "your messages" '
                      "([...] is a list holding Ellipsis, which LLMRing.chat refuses)",
    '"rcpt_abc123"': "a receipt of the project (busy: one the test generated first; "
                     "quiet: there is none, the id is left as is)",
    "<receipt_id>": "the receipt the block's generate line made (quiet: rcpt_abc123)",
    "<conversation_id>": "the conversation the test logged (quiet: an id of no call)",
    "/path/to/llmring": "llmring: the console script, on PATH",
    "/path/to/project": "the directory daily_receipts.py (block 35) is written to",
    "/usr/bin/python3": "this Python (it has the package installed)",
    "/var/log/llmring_receipts.log": "a log file in that directory",
}
MESSAGE = [{"role": "user", "content": "..."}]
HELLO = [{"role": "user", "content": "Hello!"}]
BUDGET = 1000.0  # the `budget` of block 18: any total is under it
DAILY_BUDGET = 10.0  # block 37's own


@dataclass(frozen=True)
class Block:
    index: int
    lang: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0]


def guide_blocks() -> list[Block]:
    text = GUIDE.read_text()
    return [Block(i, m[1], m[2]) for i, m in
            enumerate(re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M))]


def test_every_block_of_the_guide_is_run_or_said_why_not() -> None:
    """The tables partition the guide's blocks exactly, each named by its first line."""
    blocks = guide_blocks()
    tables = (PYTHON, SCRIPTS, SHELL, NOT_RUN)
    keys = [k for t in tables for k in t]
    assert len(keys) == len(set(keys)), "a block is in two tables"
    assert sorted(keys) == [b.index for b in blocks]
    for table in tables:
        for index, (first, _) in table.items():
            assert blocks[index].first_line == first, index
    assert {b.index for b in blocks if b.lang == "python"} == set(PYTHON) | set(
        SCRIPTS) | {i for i in NOT_RUN if blocks[i].lang == "python"}
    assert all(blocks[i].lang == "bash" for i in SHELL)
    assert "last day of last month" in dict(shell_commands(blocks[28].code))[2]
    assert set(NOT_RUN_LINES) <= {(i, n) for i in SHELL
                                  for n, _ in shell_commands(blocks[i].code)}
    # tests/fixtures/users-guide.md is a verbatim copy of the published guide
    assert hashlib.sha256(GUIDE.read_bytes()).hexdigest() == GUIDE_SHA256


def rewrite(code: str, values: dict[str, str]) -> str:
    """The recipe with its imports rewritten and its placeholders filled."""
    assert set(values) <= set(PLACEHOLDERS)
    for old, new in [*IMPORTS.items(), *values.items()]:
        code = code.replace(old, new)
    assert not re.search(r"^\s*(from|import) llmring\b", code, re.M), code
    left = [p for p in PLACEHOLDERS if p in code and p not in values]
    assert not left, f"placeholders left unfilled: {left}"
    return code


# -- the calls the test logs, and what each selection must total -----------------------------
@dataclass(frozen=True)
class Call:
    """One logged call: when, what it cost (nanos), which model."""

    at: datetime
    nanos: int
    model: str
    conversation: bool = False


def nanos(cost: float) -> int:
    """USD as the ledger takes a float: its shortest text, exactly (docs/formats.md)."""
    return int(Decimal(repr(cost)) * 10**9)


def chat_call(alias: str, messages: list[dict[str, str]], at: datetime) -> Call:
    done = asyncio.run(OfflineProvider()(alias, messages))
    assert done.cost is not None
    return Call(at, nanos(done.cost), done.model, conversation=True)


MODELS = ("gpt-4o-mini", "claude-3-5-haiku")


@dataclass
class World:
    """One (zone, day): its clock and the calls logged into each busy project."""

    zone: str
    day: str
    now: datetime  # aware, in the zone

    def local(self, y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
        return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(self.zone))

    @property
    def today(self) -> date:
        return self.now.date()

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=ZoneInfo(self.zone))

    def calls(self, scale: int = 1) -> list[Call]:
        """The busy day's calls: around the guide's October 2025 and the month after,
        last month and yesterday (early, noon, late: a late call's UTC date differs
        from its local one in Los Angeles and Tokyo), and today ($8.00 of the budget
        monitor's $10)."""
        if self.day == "quiet":
            return []
        first = self.today.replace(day=1)
        last_month_end = first - timedelta(days=1)
        yesterday = self.today - timedelta(days=1)
        plan: list[tuple[datetime, str]] = [
            (self.local(2025, 9, 30, 23, 30), "5.000000001"),
            (self.local(2025, 10, 1, 0, 30), "1.111111111"),
            (self.local(2025, 10, 15, 12), "2.25"),
            (self.local(2025, 10, 31, 12), "0.4"),
            (self.local(2025, 10, 31, 23, 30), "0.333333333"),
            (self.local(2025, 11, 1, 0, 30), "0.7"),
            (self.local(2025, 11, 15, 12), "1.9"),
            (self.midnight(last_month_end.replace(day=15)) + timedelta(hours=12), "0.6"),
            (self.midnight(last_month_end) + timedelta(hours=23, minutes=30), "0.45"),
            (self.midnight(yesterday) + timedelta(minutes=30), "0.21"),
            (self.midnight(yesterday) + timedelta(hours=12), "0.32"),
            (self.midnight(yesterday) + timedelta(hours=23, minutes=30), "0.43"),
        ]
        elapsed = self.now - self.midnight(self.today)
        if elapsed > timedelta(minutes=2):  # never within the guide's second of midnight
            plan += [(self.midnight(self.today) + elapsed / 2, "3.1"),
                     (self.midnight(self.today) + elapsed * 9 / 10, "4.9")]
        calls = [Call(at.astimezone(UTC), int(Decimal(cost) * 10**9) * scale,
                      MODELS[i % 2]) for i, (at, cost) in enumerate(plan)]
        conversation = Call(self.local(2025, 11, 15, 13).astimezone(UTC), 500_000_000 * scale,
                            "gpt-4o-mini", conversation=True)
        return [*calls, conversation]


def within(calls: list[Call], start: datetime | None = None,
           end: datetime | None = None) -> list[Call]:
    return [c for c in calls if (start is None or c.at >= start)
            and (end is None or c.at < end)]


def total(calls: list[Call]) -> int:
    return sum(c.nanos for c in calls)


def usd2(nanos_: int) -> str:
    """What the guide's ``f"${x:.2f}"`` prints for a total of ``nanos_``."""
    return f"${nanos_ / 1e9:.2f}"


def usd_value(text: str) -> int:
    """A cost the CLI printed (``$1,234.561111111``), in nanos."""
    return int(Decimal(text.replace(",", "").lstrip("$")) * 10**9)


# -- the server, the projects, and the runs ---------------------------------------------------
@dataclass
class Project:
    name: str
    key: str
    calls: list[Call] = field(default_factory=list)
    conversation_id: str = "conv-of-no-call"
    receipt_id: str | None = None


@dataclass
class Run:
    """What one recipe did in one world: its projects, and its result (Python: the
    subprocess's report; shell: each command's exit status and output)."""

    world: World
    block: int | str  # a block of the guide, or a line of docs/cli.md (DOCS_CRON)
    projects: dict[str, Project]
    report: dict[str, Any] = field(default_factory=dict)
    commands: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    workdir: Path | None = None


def docs_cron() -> list[str]:
    """The commands of docs/cli.md's "On a schedule" crontab lines, as cron runs them
    (after the five time fields; ``\\%`` is ``%``)."""
    section = CLI_DOCS.read_text().split("### On a schedule", 1)[1]
    block = re.search(r"```crontab\n(.*?)```", section, re.S)
    assert block is not None
    lines = [ln for ln in block[1].splitlines() if ln.strip() and not ln.startswith("#")]
    return [ln.split(None, 5)[5].replace("\\%", "%") for ln in lines]


DOCS_CRON = ("docs daily", "docs monthly")
# Shell recipes whose commands take no date: ``TZ`` cannot change what they do (the CLI
# prints instants in UTC). Each command costs a Python start, so these, and every shell
# recipe on the quiet day (no call to place in time), run in one zone each (rotating
# through ZONES); the others run in every zone.
ZONE_FREE = (8, 11, 17, 21, 28, 29, 33, "docs daily")


def shell_runs() -> list[tuple[str, str, int | str]]:
    """(zone, day, recipe) of every shell run."""
    runs: list[tuple[str, str, int | str]] = []
    for i, label in enumerate([*SHELL, *DOCS_CRON]):
        for day in DAYS:
            every = day == "busy" and label not in ZONE_FREE
            runs += [(zone, day, label) for zone in
                     (ZONES if every else [ZONES[(i + DAYS.index(day)) % len(ZONES)]])]
    return runs


def shell_commands(code: str) -> list[tuple[int, str]]:
    """(line number, command) of a shell block: continuations joined, comments left out;
    a crontab line is its command."""
    out: list[tuple[int, str]] = []
    lines = code.replace("\\\n", " ").splitlines()
    for number, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if re.match(r"^[\d*]+ [\d*]+ [\d*]+ [\d*]+ [\d*]+ ", text):
            text = text.split(None, 5)[5].replace("\\%", "%")
        out.append((number, text))
    return out


def run_shell(server: Server, world: World, project: Project, command: str,
              cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": world.zone, "LLMRING_SERVER_URL": server.url,
           "LLMRING_API_KEY": project.key, "PATH": f"{LLMRING.parent}:{os.environ['PATH']}",
           "COLUMNS": "200"}
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


class Guide:
    """Everything run once for the module: per world, every recipe on fresh projects."""

    def __init__(self, server: Server, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.blocks = guide_blocks()
        self.store = ApiKeyStore(server.data)
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.runs: dict[tuple[str, str, int | str], Run] = {}
        self._keys = threading.Lock()

    def project(self, world: World, label: str, scale: int = 1) -> Project:
        name = f"{world.zone.split('/')[-1].lower()}-{world.day}-{label}"
        with self._keys:
            key, _ = self.store.create(name)
        project = Project(name, key, world.calls(scale))
        headers = {"X-API-Key": key}
        usage = [{"provider": "openai" if c.model == "gpt-4o-mini" else "anthropic",
                  "model": c.model, "alias": "fast", "input_tokens": 100,
                  "output_tokens": 20, "cost": str(Decimal(c.nanos) / 10**9),
                  "ts": c.at.isoformat()} for c in project.calls if not c.conversation]
        if usage:
            r = self.http.post("/api/v1/log/batch", json={"events": usage}, headers=headers)
            assert r.status_code == 200, r.text
        for c in project.calls:
            if c.conversation:
                r = self.http.post("/api/v1/conversations/log", headers=headers, json={
                    "messages": HELLO, "response": {"content": "Hi"},
                    "metadata": {"provider": "openai", "model": c.model, "alias": "fast",
                                 "input_tokens": 10, "output_tokens": 5,
                                 "cost": str(Decimal(c.nanos) / 10**9),
                                 "ts": c.at.isoformat()}})
                assert r.status_code == 200, r.text
                project.conversation_id = r.json()["conversation_id"]
        return project

    def count(self, project: Project) -> int:
        r = self.http.get("/api/v1/logs", headers={"X-API-Key": project.key})
        return int(r.json()["total"])

    def certify_all(self, project: Project) -> None:
        r = self.http.post("/api/v1/receipts/generate", json={"since_last_receipt": True},
                           headers={"X-API-Key": project.key})
        assert r.status_code == 200, r.text
        project.receipt_id = r.json()["receipt"]["receipt_id"]

    def names(self, projects: dict[str, Project]) -> dict[str, Any]:
        month_start, month_end = datetime(2025, 11, 1), datetime(2025, 12, 1)
        return {"url": self.server.url, "key": projects["own"].key, "budget": BUDGET,
                "month_start": month_start.isoformat(), "month_end": month_end.isoformat(),
                "month_name": "November 2025"}

    def values(self, projects: dict[str, Project]) -> dict[str, str]:
        own = projects["own"]
        values = {'"http://localhost:8000"': repr(self.server.url),
                  '"your-api-key"': repr(own.key), "messages=[...]": f"messages={MESSAGE!r}",
                  '"rcpt_abc123"': repr(own.receipt_id or "rcpt_abc123")}
        if "a" in projects:
            values['"project_a_key"'] = repr(projects["a"].key)
            values['"project_b_key"'] = repr(projects["b"].key)
        return values

    # -- the Python recipes of one world: one subprocess ------------------------------
    def run_python(self, world: World) -> None:
        recipes, runs = [], []
        for index in PYTHON:
            projects = {"own": self.project(world, f"b{index}")}
            if index == 34:
                projects["a"] = projects["own"]
                projects["b"] = self.project(world, f"b{index}b", scale=2)
            if index == 22 and projects["own"].calls:
                self.certify_all(projects["own"])
            run = Run(world, index, projects)
            code = rewrite(self.blocks[index].code, self.values(projects))
            recipes.append({"name": f"block-{index}", "code": code,
                            "names": self.names(projects)})
            runs.append(run)
        workdir = self.tmp / f"py-{world.zone.replace('/', '-')}-{world.day}"
        workdir.mkdir()
        done = subprocess.run([sys.executable, "-m", "tests.support.recipes"],
                              input=json.dumps(recipes), capture_output=True, text=True,
                              cwd=workdir, timeout=300,
                              env={**os.environ, "TZ": world.zone,
                                   "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        reports = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["name"] for r in reports] == [r["name"] for r in recipes], done.stderr
        for run, report in zip(runs, reports, strict=True):
            run.report, run.workdir = report, workdir
            self.runs[world.zone, world.day, run.block] = run

    # -- the shell recipes of one world -----------------------------------------------
    def run_shell_block(self, world: World, label: int | str) -> None:
        project = self.project(world, f"s{label}".replace(" ", "-"))
        run = Run(world, label, {"own": project})
        workdir = self.tmp / f"sh-{world.zone.replace('/', '-')}-{world.day}-{label}"
        workdir.mkdir()
        run.workdir = workdir
        if isinstance(label, str):
            commands = [(0, docs_cron()[DOCS_CRON.index(label)])]
        else:
            commands = [(n, c) for n, c in shell_commands(self.blocks[label].code)
                        if (label, n) not in NOT_RUN_LINES]
        if label == 36:
            script = rewrite(self.blocks[35].code, self.values({"own": project}))
            (workdir / "daily_receipts.py").write_text(script)
        for _, command in commands:
            values = {"<conversation_id>": project.conversation_id,
                      "/path/to/llmring": "llmring",
                      "/path/to/project": str(workdir), "/usr/bin/python3": sys.executable,
                      "/var/log/llmring_receipts.log": str(workdir / "receipts.log")}
            if "<receipt_id>" in command:
                listed = self.http.get("/api/v1/receipts/",
                                       headers={"X-API-Key": project.key}).json()
                values["<receipt_id>"] = (listed["receipts"][0]["receipt_id"]
                                          if listed["receipts"] else "rcpt_abc123")
            text = rewrite(command, {k: v for k, v in values.items() if k in command})
            run.commands.append(run_shell(self.server, world, project, text, workdir))
        self.runs[world.zone, world.day, label] = run

    def run_all(self) -> None:
        worlds = {(z, d): World(z, d, datetime.now(ZoneInfo(z))) for z in ZONES for d in DAYS}
        jobs: list[Callable[[], None]] = [
            lambda w=world: self.run_python(w)  # type: ignore[misc]
            for world in worlds.values()]
        jobs += [lambda w=worlds[zone, day], b=label: self.run_shell_block(w, b)  # type: ignore[misc]
                 for zone, day, label in shell_runs()]
        with ThreadPoolExecutor(max_workers=3) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result()


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guide]:
    tmp = tmp_path_factory.mktemp("guide")
    server = serverproc.start(tmp / "data", projects=())
    try:
        g = Guide(server, tmp)
        g.run_all()
        yield g
    finally:
        server.stop()


# -- what each recipe must have done ------------------------------------------------------
def chats(block: int, world: World, part: str = "own") -> list[Call]:
    """The calls a Python recipe makes itself (now) before it certifies."""
    from tests.support import recipes as r

    made = {1: [("balanced", HELLO)], 3: [("alias", MESSAGE)], 7: [("alias", MESSAGE)],
            10: [("alias", m) for m in r.CONVERSATIONS],
            13: [("alias", m) for m in r.MONTH_CONVERSATIONS], 16: [("alias", MESSAGE)],
            27: [("alias", MESSAGE)] * 2, 30: [("alias", MESSAGE)], 31: [("alias", MESSAGE)],
            34: [("balanced", m) for m in (r.PROJECT_A_TASKS if part == "own"
                                           else r.PROJECT_B_TASKS)]}
    return [chat_call(alias, list(m), world.now) for alias, m in made.get(block, [])]


def refused_as_empty(error: dict[str, Any] | None) -> None:
    """The documented refusal of an empty selection (docs/http-api.md)."""
    assert error is not None and error["type"] == "NothingToCertifyError", error
    assert error["code"] == "nothing_to_certify", error


def certified(run: Run, expected: list[Call], name: str = "result") -> dict[str, Any]:
    """The recipe certified exactly ``expected`` (none: it was refused as empty)."""
    if not expected:
        refused_as_empty(run.report["error"])
        return {}
    assert run.report["ok"], run.report["error"]
    result = run.report["values"][name]
    assert result["certified_count"] == len(expected)
    assert result["receipt"]["total_cost_nanos"] == total(expected)
    return dict(result)


def lines(run: Run) -> list[str]:
    return list(run.report["stdout"].splitlines())


def by_model(calls: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in calls:
        counts[c.model] = counts.get(c.model, 0) + 1
    return counts


def printed_by_model(line: str) -> dict[str, int]:
    """``By model: {...}`` as the guide prints the breakdown: model → calls."""
    shown = ast.literal_eval(line.removeprefix("By model: "))
    return {model: stats["calls"] for model, stats in shown.items()}


def october(world: World) -> tuple[datetime, datetime]:
    """The guide's ``datetime(2025, 10, 1)`` .. ``datetime(2025, 10, 31)``: local
    instants, the end excluded (31 October itself is not in)."""
    return world.local(2025, 10, 1), world.local(2025, 10, 31)


def check_python(guide: Guide, run: Run) -> None:
    w, own = run.world, run.projects["own"]
    logged, made = own.calls, chats(run.block, w)
    out = lines(run)
    values = run.report["values"]
    match run.block:
        case 1:
            result = certified(run, logged + made)
            assert out == [f"Generated receipt: {result['receipt']['receipt_id']}"]
        case 3:
            assert run.report["ok"] and out == [], run.report
            assert guide.count(own) == len(logged) + 1
        case 5:
            certified(run, logged)
        case 7 | 30:
            result = certified(run, made)
            assert result["receipt"]["scope"]["mode"] == "conversation"
            if run.block == 7:
                assert values["processed"] == [result["receipt"]]
        case 10:
            result = certified(run, logged + made)
            assert out[:2] == [f"Certified {len(logged + made)} conversations",
                               f"Total cost: {usd2(total(logged + made))}"]
            assert printed_by_model(out[2]) == by_model(logged + made)
        case 13:
            selected = within(logged + made, *october(w))
            certified(run, selected)
            if selected:
                assert out == [f"Monthly total: {usd2(total(selected))}",
                               f"Total calls: {len(selected)}"]
        case 16:
            (chat,) = made
            assert run.report["ok"], run.report["error"]
            assert out == [f"Running total: {usd2(chat.nanos)}",
                           f"Uncertified cost: {usd2(total(logged + made))}"]
            assert values["total_uncertified_cost"] == pytest.approx(
                total(logged + made) / 1e9, abs=1e-9)
        case 18:
            selected = within(logged, *october(w))
            assert out[:2] == [f"Would certify: {len(selected)} logs",
                               f"Total cost: {usd2(total(selected))}"]
            assert printed_by_model(out[2]) == by_model(selected)
            certified(run, selected)
        case 20 | 32:
            assert run.report["ok"], run.report["error"]
            head = "Uncertified logs" if run.block == 20 else "Uncertified"
            assert out[0] == f"{head}: {len(logged)}"
            if run.block == 20:
                assert sorted(ln.rsplit("$", 1)[1] for ln in out[1:]) == sorted(
                    f"{c.nanos / 1e9:.4f}" for c in logged)
        case 22:
            if not logged:
                assert run.report["error"]["type"] == "ReceiptNotFoundError", run.report
                return
            assert run.report["ok"], run.report["error"]
            assert out[0] == f"This receipt certified {len(logged)} logs"
            assert sorted(ln.rsplit(": ", 1)[1] for ln in out[1:]) == sorted(
                "conversation" if c.conversation else "usage" for c in logged)
        case 23:
            local_now = datetime.now(ZoneInfo(w.zone))
            again = local_now.weekday() == 6 or (local_now + timedelta(days=1)).day == 1
            if not logged or again:  # a second since-last the same day has nothing new
                refused_as_empty(run.report["error"])
            else:
                certified(run, logged)
        case 24:
            certified(run, logged)
            if logged:
                assert len(values["audit_receipts"]) == 1
        case 27:
            result = certified(run, logged + made)
            assert values["processed"] == [result["receipt"]]
        case 31:
            (chat,) = made
            assert run.report["ok"], run.report["error"]
            assert nanos(values["cost"]) == chat.nanos and values["tokens"] > 0
        case 34:
            november = (w.local(2025, 11, 1), w.local(2025, 12, 1))
            a = within(logged, *november)
            b = within(run.projects["b"].calls, *november)
            certified(run, a, "invoice_a")
            if a:
                certified(run, b, "invoice_b")
                assert out == [f"Project A: {usd2(total(a))}", f"Project B: {usd2(total(b))}"]
        case 37:
            today = within(logged, w.midnight(w.today), w.now + timedelta(minutes=1))
            assert run.report["ok"], run.report["error"]
            percentage = total(today) / 1e9 / DAILY_BUDGET * 100
            assert values["current_cost"] == pytest.approx(total(today) / 1e9, abs=1e-9)
            assert values["percentage"] == pytest.approx(percentage)
            spent = f"Spent {usd2(total(today))} of $10.00"
            expected = ([f"ALERT: ⚠️ Daily budget at {percentage:.1f}%! {spent}"]
                        if percentage >= 90 else
                        [f"WARNING: Daily budget at {percentage:.1f}%. {spent}"]
                        if percentage >= 75 else [])
            assert out == expected
        case 38:
            selected = within(logged, w.local(2025, 10, 1), w.local(2025, 11, 1))
            if not selected:
                refused_as_empty(run.report["error"])
            else:  # the receipt stays inside the recipe's function: its CSV tells
                assert run.report["ok"], run.report["error"]
                assert re.fullmatch(r"   Receipt ID: rcpt_[0-9a-f]{32}", out[1])
                assert out[0] == "✅ Exported invoice to llmring_invoice_2025_10.csv"
                assert run.workdir is not None
                rows = (run.workdir / "llmring_invoice_2025_10.csv").read_text().splitlines()
                assert rows[-1] == f",,TOTAL,,,{usd2(total(selected))}"
                calls = {r.split(",")[2]: int(r.split(",")[3]) for r in rows[1:-2]}
                assert calls == by_model(selected)
        case _:  # pragma: no cover - a block added to PYTHON without its check
            raise AssertionError(f"no check for block {run.block}")


@pytest.mark.parametrize("block", sorted(PYTHON))
@pytest.mark.parametrize("day", DAYS)
@pytest.mark.parametrize("zone", ZONES)
def test_a_python_recipe_runs_and_totals_what_the_test_computes(
        guide: Guide, zone: str, day: str, block: int) -> None:
    check_python(guide, guide.runs[zone, day, block])


# -- the shell recipes ------------------------------------------------------------------------
def cli_certified(done: subprocess.CompletedProcess[str], expected: list[Call], *,
                  since_last: bool = False) -> None:
    """``llmring receipts generate`` certified exactly ``expected``; with nothing to
    certify, ``--since-last`` exits 0 with one line, any other selection is refused."""
    assert "Traceback" not in done.stderr, done.stderr
    if not expected:
        if since_last:
            assert done.returncode == 0 and done.stdout.startswith("nothing new to certify")
        else:
            assert done.returncode == 2 and "nothing to certify" in done.stderr, done
        return
    assert done.returncode == 0, done.stderr
    counted = re.search(r"certified\s+(\d+) calls? in", done.stdout)
    cost = re.search(r"total cost\s+(\$[\d.,]+)", done.stdout)
    assert counted and cost, done.stdout
    assert int(counted[1]) == len(expected)
    assert usd_value(cost[1]) == total(expected)


def cli_uncertified(done: subprocess.CompletedProcess[str], expected: list[Call]) -> None:
    assert done.returncode == 0, done.stderr
    if not expected:
        assert "is certified by a receipt" in done.stdout
        return
    shown = re.search(r"rows 1-(\d+) of (\d+); uncertified cost (\$[\d.,]+)", done.stdout)
    assert shown, done.stdout
    assert int(shown[1]) == int(shown[2]) == len(expected)
    assert usd_value(shown[3]) == total(expected)


def machine_days(world: World, first: date, last: date) -> tuple[datetime, datetime]:
    """The CLI's ``--start FIRST --end LAST``: whole days in the machine's zone, the
    last one included."""
    return world.midnight(first), world.midnight(last + timedelta(days=1))


def check_shell(run: Run) -> None:
    w, own = run.world, run.projects["own"]
    logged = own.calls
    for done in run.commands:
        assert "Traceback" not in done.stderr or run.block == 36, done.stderr
    match run.block:
        case 8:
            (done,) = run.commands
            cli_certified(done, [c for c in logged if c.conversation])
        case 11 | 28 | "docs daily":
            (done,) = run.commands
            cli_certified(done, logged, since_last=True)
        case 14:
            (done,) = run.commands
            cli_certified(done, within(logged, *machine_days(w, date(2025, 10, 1),
                                                             date(2025, 10, 31))))
        case 17 | 21 | 33:
            (done,) = run.commands
            cli_uncertified(done, logged)
        case 19:
            (done,) = run.commands
            selected = within(logged, *machine_days(w, date(2025, 10, 1),
                                                    date(2025, 10, 31)))
            assert done.returncode == 0, done.stderr
            shown = re.search(r"would certify\s+(\d+) calls?", done.stdout)
            cost = re.search(r"total cost\s+(\$[\d.,]+)", done.stdout)
            assert shown and cost, done.stdout
            assert (int(shown[1]), usd_value(cost[1])) == (len(selected), total(selected))
        case 29:
            uncertified, generate, listing, get = run.commands
            cli_uncertified(uncertified, logged)
            cli_certified(generate, logged, since_last=True)
            if logged:
                assert listing.returncode == 0 and "rows 1-1 of 1" in listing.stdout
                assert get.returncode == 0 and re.search(r"rcpt_[0-9a-f]{32}", get.stdout)
            else:
                assert listing.returncode == 0 and "has no receipts yet" in listing.stdout
                assert get.returncode == 2 and "no receipt 'rcpt_abc123'" in get.stderr
        case 36:
            (done,) = run.commands
            assert run.workdir is not None
            log = (run.workdir / "receipts.log").read_text()
            yesterday = w.today - timedelta(days=1)
            selected = within(logged, w.midnight(yesterday),
                              w.midnight(yesterday) + timedelta(hours=23, minutes=59,
                                                                seconds=59))
            if not selected:  # the guide's script lets the refusal through: exit 1
                assert done.returncode == 1
                assert log.splitlines()[-1].startswith(
                    "ledger.errors.NothingToCertifyError: nothing to certify"), log
                return
            assert done.returncode == 0, log
            assert f"Certified: {len(selected)} logs" in log
            assert f"Total cost: {usd2(total(selected))}" in log
        case "docs monthly":  # docs/cli.md's monthly line: last month's days in the machine's zone
            (done,) = run.commands
            first = w.today.replace(day=1)
            last = first - timedelta(days=1)
            cli_certified(done, within(logged, *machine_days(w, last.replace(day=1), last)))
        case _:  # pragma: no cover
            raise AssertionError(f"no check for block {run.block}")


@pytest.mark.parametrize("zone,day,label", shell_runs())
def test_a_shell_recipe_runs_and_totals_what_the_test_computes(
        guide: Guide, zone: str, day: str, label: int | str) -> None:
    check_shell(guide.runs[zone, day, label])
