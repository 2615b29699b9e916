"""Pattern 1 of the guide: a receipt for one conversation, right after it."""

from __future__ import annotations

import asyncio

from _common import server

from ledger.client.llmring import LLMRing


async def main() -> None:
    url, key = server()
    async with LLMRing(server_url=url, api_key=key, log_conversations=True) as ring:
        response = await ring.chat("balanced", messages=[{"role": "user", "content": "Hello!"}])
        assert response.receipt is None  # receipts are generated on demand
        if ring.server_client:
            conversation_id = response.metadata.get("conversation_id")
            result = await ring.server_client.generate_receipt(
                conversation_id=conversation_id, description="Conversation receipt")
            receipt = result["receipt"]
            print(f"Generated receipt: {receipt['receipt_id']}")
            print(f"Certified {result['certified_count']} call, ${receipt['total_cost']:.6f}")


if __name__ == "__main__":
    asyncio.run(main())
