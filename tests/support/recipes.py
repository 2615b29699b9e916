"""Run Python recipes of the users' guide in this process, as a new user would paste
them into an async program: ``python -m tests.support.recipes < recipes.json``.

The input is a JSON list of recipes ``{name, code, names}``: ``code`` is the recipe with
its imports rewritten; ``names`` are the values the guide assumes a reader already has
(``ring``'s server and key, ``budget``, ``month_start`` …, see ``prelude``). Each recipe
runs in a fresh namespace, top-level ``await`` allowed, inside one event loop; the
process's ``TZ`` is the caller's. One JSON line per recipe is printed: ``{name, ok,
error: {type, code, message} | null, stdout, values}``, where ``values`` are the
JSON-able results the recipe left in its namespace (``result``, ``preview`` …)."""

from __future__ import annotations

import ast
import asyncio
import calendar
import contextlib
import inspect
import io
import json
import sys
from datetime import datetime
from typing import Any

from ledger.client.llmring import LLMRing

REPORTED = ("result", "preview", "uncert", "logs", "receipts", "audit_receipts",
            "invoice_a", "invoice_b", "current_cost", "percentage", "running_total",
            "total_uncertified_cost", "cost", "tokens", "receipt", "processed")


def message(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# The work the guide's loops go through, each a list of messages.
CONVERSATIONS = [message("Summarise our Q3 numbers."), message("Draft a reply.")]
MONTH_CONVERSATIONS = [message("Plan the month."), message("Review the plan.")]
PROJECT_A_TASKS = [message("Task A1"), message("Task A2")]
PROJECT_B_TASKS = [message("Task B1")]
COMPLEX_TASK = message("Prove the four colour theorem.")


def prelude(names: dict[str, Any]) -> dict[str, Any]:
    """The names a recipe uses but the guide defines elsewhere or leaves to the reader:
    the ring (``ring``: logging conversations to the recipe's project), the work to do
    (``conversations``, ``project_a_tasks`` …, each a list of messages), what to do
    with a receipt (``process_receipt`` keeps it in ``processed``), a budget, the
    current local year and month (``calendar`` for the guide's month-end check), and
    the billing month of the multi-project example (``month_start`` …)."""
    processed: list[Any] = []
    now = datetime.now()
    return {
        "__name__": "recipe", "datetime": datetime, "calendar": calendar,
        "ring": LLMRing(server_url=names["url"], api_key=names["key"],
                        log_conversations=True),
        "conversations": CONVERSATIONS, "month_conversations": MONTH_CONVERSATIONS,
        "project_a_tasks": PROJECT_A_TASKS, "project_b_tasks": PROJECT_B_TASKS,
        "complex_task": COMPLEX_TASK,
        "all_receipts": [],
        "processed": processed, "process_receipt": processed.append,
        "budget": float(names["budget"]),
        "year": now.year, "month": now.month,
        "month_start": datetime.fromisoformat(names["month_start"]),
        "month_end": datetime.fromisoformat(names["month_end"]),
        "month_name": names["month_name"],
    }


def jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


async def run(recipe: dict[str, Any]) -> dict[str, Any]:
    namespace = prelude(recipe["names"])
    out = io.StringIO()
    error = None
    try:
        code = compile(recipe["code"], recipe["name"], "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        with contextlib.redirect_stdout(out):
            done = eval(code, namespace)  # the guide's recipe, by design
            if inspect.iscoroutine(done):
                await done
    except Exception as exc:  # reported, not raised: every recipe gets its run
        error = {"type": type(exc).__name__, "code": getattr(exc, "code", None),
                 "message": str(exc)}
    finally:
        await namespace["ring"].close()
    values = {k: jsonable(namespace[k]) for k in REPORTED if k in namespace}
    return {"name": recipe["name"], "ok": error is None, "error": error,
            "stdout": out.getvalue(), "values": values}


async def main() -> None:
    for recipe in json.load(sys.stdin):
        print(json.dumps(await run(recipe)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
