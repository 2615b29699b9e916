"""Audit a receipt's coverage and prove one call offline: list the logs a receipt
certifies, fetch the proof bundle of one, and verify it with only the server's PEM
(`llmring receipts verify proof.json --public-key ledger.pem` does the same)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from _common import server

from ledger.client.async_api import ServerClient
from ledger.receipts.verification import verify_bundle
from ledger.tlog.signing import parse_pem_keys


async def main(out_dir: Path) -> bool:
    url, key = server()
    async with ServerClient(url, key) as client:
        await client.log_usage(provider="openai", model="gpt-4o-mini", alias="fast",
                               input_tokens=900, output_tokens=120, cost=0.00021)
        result = await client.generate_receipt(since_last_receipt=True,
                                               description="Audit sample")
        receipt_id = result["receipt"]["receipt_id"]
        logs = await client.get_receipt_logs(receipt_id)
        print(f"This receipt certified {logs['total']} logs")
        for log in logs["logs"][:5]:
            print(f"  {log['id']}: {log.get('type')}")
        bundle = await client.prove(receipt_id, logs["logs"][0]["id"])
        pem = await client.get_public_key_pem()
    (out_dir / "proof.json").write_text(json.dumps(bundle, indent=2))
    (out_dir / "ledger.pem").write_text(pem)
    check = verify_bundle(bundle, parse_pem_keys(pem))  # offline: no server involved
    print(f"proof of {bundle['event']['event_id']}: {'valid' if check.valid else 'INVALID'}")
    return check.valid


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
             else 1)
