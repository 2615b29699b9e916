"""Walking a receipt's logs over HTTP, against a real ``llmring serve`` process (whose
fast path answers these pages): every page's body is byte for byte the embedded
transport's answer (``orjson.dumps`` of it) over the same data directory, a page at a
deep, unaligned offset is that stretch of the walk, and another project, an unknown
receipt and bad paging are refused as documented (404, 404, 422)."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from ledger.api import operations as ops
from ledger.api.transport import LocalTransport
from tests.support import serverproc
from tests.unit.test_tail_reads import events


def test_a_walk_over_http_is_the_embedded_answer_byte_for_byte(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = serverproc.start(data)
    pages: dict[tuple[int, int], bytes] = {}
    try:
        with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                          timeout=60) as alpha, httpx.Client(
                base_url=server.url, headers=server.headers("beta"), timeout=60) as beta:
            evs = events(2_400, seed=8)
            for at in range(0, len(evs), 800):
                r = alpha.post("/api/v1/log/batch", json={"events": evs[at:at + 800]})
                assert r.status_code == 200, r.text
            r = alpha.post("/api/v1/receipts/generate", json={"since_last_receipt": True})
            assert r.status_code == 200, r.text
            rid = r.json()["receipt"]["receipt_id"]
            logs = f"/api/v1/receipts/{rid}/logs"
            for limit, offset in ((1_000, 0), (1_000, 1_000), (1_000, 2_000), (333, 1_777),
                                  (1_000, 2_400)):
                r = alpha.get(logs, params={"limit": limit, "offset": offset})
                assert r.status_code == 200 and r.headers["content-type"] == (
                    "application/json")
                pages[limit, offset] = r.content
            assert beta.get(logs, params={"limit": 1_000}).status_code == 404
            assert alpha.get("/api/v1/receipts/rcpt_none/logs").status_code == 404
            for bad in ({"limit": 0}, {"limit": 1_001}, {"offset": -1}):
                r = alpha.get(logs, params=bad)
                assert r.status_code == 422 and r.json()["detail"], bad
    finally:
        assert server.stop() == 0
    walk = [log for offset in (0, 1_000, 2_000)
            for log in orjson.loads(pages[1_000, offset])["logs"]]
    assert len(walk) == 2_400 and orjson.loads(pages[333, 1_777])["logs"] == walk[1_777:2_110]
    local = LocalTransport(data, "alpha")
    try:
        for (limit, offset), body in pages.items():
            assert body == orjson.dumps(local.call(ops.RECEIPT_LOGS, receipt_id=rid,
                                                   limit=limit, offset=offset))
    finally:
        local.close()
