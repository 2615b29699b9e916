"""Pattern 3 of the guide: one receipt for a billing period (here, this month so far),
previewed first."""

from __future__ import annotations

import asyncio
from datetime import date

from _common import server

from ledger.client.async_api import ServerClient
from ledger.client.llmring import LLMRing


async def main() -> None:
    url, key = server()
    async with LLMRing(server_url=url, api_key=key) as ring:
        for _ in range(3):
            await ring.chat("deep", messages=[{"role": "user", "content": "Plan the quarter."}])

    today = date.today()  # the clients read a date in the machine's zone
    month_start = today.replace(day=1)
    async with ServerClient(url, key) as client:
        preview = await client.preview_receipt(start_date=month_start, end_date=today)
        print(f"Would certify: {preview['total_logs']} logs, ${preview['total_cost']:.6f}")
        result = await client.generate_receipt(
            start_date=month_start, end_date=today,  # a date-only end includes that day
            description=f"{today:%B %Y} billing", tags=["billing", "monthly"])
        receipt = result["receipt"]
        summary = receipt["batch_summary"]
        print(f"Monthly total: ${receipt['total_cost']:.6f}")
        print(f"Total calls: {summary['total_calls']}")
        print(f"By alias: {summary['by_alias']}")


if __name__ == "__main__":
    asyncio.run(main())
