"""Pattern 4 of the guide: real-time cost from ``response.usage``, and the uncertified
cost from the server. The listing's ``total_cost`` covers every uncertified log; summing
``uncert["logs"]`` would count one page (100 rows) only."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from _common import server

from ledger.client.llmring import LLMRing


async def main() -> None:
    url, key = server()
    running_total = 0.0
    async with LLMRing(server_url=url, api_key=key, log_conversations=True) as ring:
        for question in ("What is a Merkle tree?", "What is Ed25519?"):
            response = await ring.chat("fast", messages=[{"role": "user",
                                                          "content": question}])
            running_total += response.usage.get("cost", 0)
            print(f"Running total: ${running_total:.6f}")
        if ring.server_client:
            uncert = await ring.server_client.get_uncertified_logs()
            total_uncertified_cost = Decimal(uncert["total_cost"])  # all pages, exact
            print(f"Uncertified logs: {uncert['total']}"
                  f" ({uncert['unpriced_logs']} without a price)")
            print(f"Uncertified cost: ${total_uncertified_cost}")
            for log in uncert["logs"][:5]:
                print(f"  {log['id']}: ${log.get('cost', 0):.6f}")


if __name__ == "__main__":
    asyncio.run(main())
