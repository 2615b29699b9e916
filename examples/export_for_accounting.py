"""Advanced example of the guide: a monthly receipt exported as a CSV invoice (by
model), next to the receipt id that certifies it."""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import datetime, timedelta
from pathlib import Path

from _common import server

from ledger.client.async_api import ServerClient
from ledger.client.llmring import LLMRing


async def main(out_dir: Path) -> Path:
    url, key = server()
    async with LLMRing(server_url=url, api_key=key) as ring:
        await ring.chat("fast", messages=[{"role": "user", "content": "Classify this."}])
        await ring.chat("deep", messages=[{"role": "user", "content": "Explain this."}])

    now = datetime.now()  # local, as the clients read a time without a zone
    start_date = datetime(now.year, now.month, 1)
    end_date = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1)
    end_date = min(end_date, now + timedelta(minutes=1))
    async with ServerClient(url, key) as client:
        result = await client.generate_receipt(
            start_date=start_date, end_date=end_date,
            description=f"LLM API Usage - {now.month}/{now.year}",
            tags=["accounting", "monthly"])
    receipt = result["receipt"]
    summary = receipt["batch_summary"]
    path = out_dir / f"llmring_invoice_{now.year}_{now.month:02d}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Date", "Description", "Model", "Calls", "Tokens", "Cost"])
        for model, stats in summary["by_model"].items():
            writer.writerow([f"{now.year}-{now.month:02d}", f"LLM API - {model}", model,
                             stats["calls"], stats["tokens"], f"${stats['cost']:.6f}"])
        writer.writerow([])
        writer.writerow(["", "", "TOTAL", "", "", f"${receipt['total_cost']:.6f}"])
    print(f"Exported invoice to {path}")
    print(f"   Receipt ID: {receipt['receipt_id']}")
    return path


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
