"""Pattern 2 of the guide (recommended): use the LLM all day, then one batch receipt
for everything not yet certified."""

from __future__ import annotations

import asyncio

from _common import server

from ledger.client.llmring import LLMRing

CONVERSATIONS = [
    [{"role": "user", "content": "Summarize this contract."}],
    [{"role": "user", "content": "Translate 'good morning' to Spanish."}],
    [{"role": "user", "content": "Write a haiku about ledgers."}],
]


async def main() -> None:
    url, key = server()
    async with LLMRing(server_url=url, api_key=key, log_conversations=True) as ring:
        for conversation in CONVERSATIONS:
            await ring.chat("fast", messages=conversation)
        if ring.server_client:
            result = await ring.server_client.generate_receipt(
                since_last_receipt=True, description="Daily batch certification",
                tags=["daily", "compliance"])
            receipt = result["receipt"]
            print(f"Certified {result['certified_count']} conversations")
            print(f"Total cost: ${receipt['total_cost']:.6f}")
            summary = receipt["batch_summary"]
            print(f"By model: {summary['by_model']}")


if __name__ == "__main__":
    asyncio.run(main())
