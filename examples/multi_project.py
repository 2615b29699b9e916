"""Advanced example of the guide: one API key per project, separate invoices. Needs a
second key in ``LLMRING_API_KEY_B`` (another project)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import date

from _common import server

from ledger.client.async_api import ServerClient
from ledger.client.llmring import LLMRing


async def main() -> None:
    url, key_a = server()
    key_b = os.environ.get("LLMRING_API_KEY_B") or sys.exit("set LLMRING_API_KEY_B")
    for key, tasks in ((key_a, ["Draft the newsletter."]),
                       (key_b, ["Review the PR.", "Write release notes."])):
        async with LLMRing(server_url=url, api_key=key, log_conversations=True) as ring:
            for task in tasks:
                await ring.chat("balanced", messages=[{"role": "user", "content": task}])

    today = date.today()  # the clients read a date in the machine's zone
    month_start = today.replace(day=1)
    invoices = {}
    for name, key in (("A", key_a), ("B", key_b)):
        async with ServerClient(url, key) as client:
            invoices[name] = await client.generate_receipt(
                start_date=month_start, end_date=today,
                description=f"Project {name} - {today:%B %Y}",
                tags=[f"project-{name.lower()}", "invoice"])
    for name, invoice in invoices.items():
        receipt = invoice["receipt"]
        print(f"Project {name}: {receipt['tenant']} ${receipt['total_cost']:.6f} "
              f"({invoice['certified_count']} calls)")


if __name__ == "__main__":
    asyncio.run(main())
