"""The Python clients: ``ServerClient`` against a real server process, and
``EmbeddedClient`` on a local data directory, answering the same shapes."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.client.async_api import EmbeddedClient, LedgerHTTPError, ServerClient, date_text
from tests.support import serverproc
from tests.support.serverproc import Server

CALL = {"provider": "openai", "model": "gpt-4o-mini", "alias": "fast", "input_tokens": 100,
        "output_tokens": 20, "cost": 0.0025}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_dates_are_sent_as_iso_text() -> None:
    assert date_text(date(2025, 10, 1)) == "2025-10-01"
    assert date_text(datetime(2025, 10, 1, 9, 30)) == "2025-10-01T09:30:00"
    assert date_text("2025-10-01T00:00:00Z") == "2025-10-01T00:00:00Z"
    with pytest.raises(TypeError):
        date_text(20251001)


def test_a_client_needs_a_url_and_a_key() -> None:
    with pytest.raises(ValueError, match="URL"):
        ServerClient(api_key="k")
    with pytest.raises(ValueError, match="keys create"):
        ServerClient("http://127.0.0.1:1")


def test_the_guides_daily_batch_pattern(server: Server) -> None:
    async def main() -> dict[str, Any]:
        async with ServerClient(server.url, server.keys["alpha"]) as client:
            for i in range(3):
                await client.log_usage(CALL, input_tokens=100 + i)
            return await client.generate_receipt(since_last_receipt=True,
                                                 description="Daily batch certification",
                                                 tags=["daily", "compliance"])

    result = run(main())
    assert result["certified_count"] == 3
    assert result["receipt"]["total_cost"] == pytest.approx(0.0075)
    assert result["receipt"]["batch_summary"]["by_model"]["gpt-4o-mini"]["calls"] == 3


def test_date_ranges_accept_datetimes_dates_and_text(server: Server) -> None:
    # The clients read a date, and a datetime without a zone, in the machine's zone.
    today = datetime.now().date()

    async def main() -> list[int]:
        client = ServerClient(server_url=server.url, api_key=server.keys["beta"])
        await client.log_usage(CALL)
        out = []
        for start, end in ((datetime.combine(today, datetime.min.time()),
                            datetime.now(UTC) + timedelta(minutes=1)),
                           (today, today), (today.isoformat(), today.isoformat())):
            preview = await client.preview_receipt(start_date=start, end_date=end)
            out.append(preview["total_logs"])
        await client.aclose()
        return out

    assert run(main()) == [1, 1, 1]


def test_receipt_reads_proofs_and_verification(server: Server) -> None:
    async def main() -> None:
        async with ServerClient(server.url, server.keys["alpha"]) as client:
            conv = await client.log_conversation(
                [{"role": "user", "content": "Hello!"}], {"content": "Hi"},
                metadata={**CALL, "alias": "balanced"})
            assert conv["receipt"] is None
            result = await client.generate_receipt(conversation_id=conv["conversation_id"],
                                                   description="Conversation receipt")
            rid = result["receipt"]["receipt_id"]
            assert (await client.get_receipt(rid))["receipt_id"] == rid
            logs = await client.get_receipt_logs(rid)
            assert [x["id"] for x in logs["logs"]] == [conv["message_id"]]
            listed = await client.list_receipts(limit=10)
            assert rid in [r["receipt_id"] for r in listed["receipts"]]
            bundle = await client.prove(rid, conv["message_id"])
            assert bundle["format"] == "ledger-proof/v1"
            assert (await client.verify_receipt(result["receipt"]))["valid"] is True
            assert "BEGIN PUBLIC KEY" in await client.get_public_key_pem()
            assert (await client.get_public_keys())["keys"]
            uncert = await client.get_uncertified_logs(limit=5)
            assert set(uncert) >= {"logs", "total", "limit", "offset"}

    run(main())


def test_refusals_raise_ledger_http_error_with_status_and_detail(server: Server) -> None:
    async def main() -> list[tuple[int, str]]:
        out = []
        async with ServerClient(server.url, server.keys["alpha"]) as client:
            for call in (client.get_receipt("rcpt_" + "f" * 32),
                         client.generate_receipt(),
                         client.log_usage(provider="openai")):
                try:
                    await call
                except LedgerHTTPError as exc:
                    out.append((exc.status, str(exc.detail)))
        async with ServerClient(server.url, "llr_wrong") as client:
            try:
                await client.list_receipts()
            except LedgerHTTPError as exc:
                out.append((exc.status, str(exc.detail)))
        return out

    errors = run(main())
    assert [s for s, _ in errors] == [404, 400, 422, 401]
    assert "exactly one" in errors[1][1] and "model" in errors[2][1]


def test_a_client_survives_several_event_loops(server: Server) -> None:
    client = ServerClient(server.url, server.keys["alpha"])
    first = run(client.log_usage(CALL))
    second = run(client.log_usage(CALL))
    assert first["log_id"] != second["log_id"]


def test_the_embedded_client_answers_the_servers_shapes(server: Server, tmp_path: Path
                                                        ) -> None:
    async def session(client: Any) -> dict[str, Any]:
        shapes: dict[str, Any] = {}
        shapes["log"] = await client.log_usage(CALL)
        shapes["conversation"] = await client.log_conversation(
            [{"role": "user", "content": "x"}], {"content": "y"}, metadata=CALL)
        shapes["batch"] = await client.log_batch([CALL, CALL])
        shapes["preview"] = await client.preview_receipt(since_last_receipt=True)
        shapes["generate"] = await client.generate_receipt(since_last_receipt=True)
        rid = shapes["generate"]["receipt"]["receipt_id"]
        shapes["get"] = await client.get_receipt(rid)
        shapes["logs"] = await client.get_receipt_logs(rid, limit=2)
        shapes["list"] = await client.list_receipts()
        shapes["uncertified"] = await client.get_uncertified_logs()
        shapes["verify"] = await client.verify_receipt(shapes["get"])
        shapes["rollup"] = await client.usage_rollup(["model", "day"])
        try:
            await client.get_receipt("rcpt_" + "0" * 32)
        except LedgerHTTPError as exc:
            shapes["missing"] = exc.status
        await client.aclose()
        return shapes

    remote = run(session(ServerClient(server.url, serverproc.create_key(server.data, "emb"))))
    local = run(session(EmbeddedClient(tmp_path / "data", "emb")))
    for name, value in remote.items():
        if isinstance(value, dict):
            assert set(local[name]) == set(value), name
        else:
            assert local[name] == value, name
    assert local["generate"]["certified_count"] == remote["generate"]["certified_count"] == 4


def test_the_client_checks_each_checkpoint_extends_the_last_it_saw(server: Server,
                                                                    tmp_path: Path) -> None:
    async def main() -> tuple[int, int]:
        async with ServerClient(server.url, server.keys["alpha"],
                                state_dir=tmp_path / "seen") as client:
            first = await client.checkpoint()
            await client.log_usage(CALL)
            await client.log_usage(CALL)
            second = await client.checkpoint()  # checked against the first
            return first["size"], second["size"]

    first, second = run(main())
    assert second == first + 2
    assert len(list((tmp_path / "seen").glob("*.note"))) == 1


def test_a_checkpoint_that_does_not_extend_the_kept_one_raises_tamper_evidence(
        server: Server, tmp_path: Path) -> None:
    import shutil

    from ledger import Ledger
    from ledger.tlog.consistency import TamperEvidence

    state = tmp_path / "seen"

    async def checkpoint() -> dict[str, Any]:
        async with ServerClient(server.url, server.keys["alpha"], state_dir=state) as c:
            return await c.checkpoint()

    honest = run(checkpoint())  # creates the server's signing key if needed
    # A fork: the same key and origin, another history, larger than the honest log. A
    # client that kept the fork's checkpoint must not accept the honest server's log.
    fork = tmp_path / "fork"
    fork.mkdir()
    shutil.copytree(server.data / "keys", fork / "keys")
    shutil.copy(server.data / "config.json", fork / "config.json")
    with Ledger(fork, pricer=None, checkpoint_interval=None) as led:
        led.append_many([{"provider": "x", "model": "y", "cost": "0"}
                         for _ in range(honest["size"] - 1)], tenant="alpha")
        forked = led.checkpoint("alpha")
    (next(state.glob("*.note"))).write_text(forked.note)
    with pytest.raises(TamperEvidence, match="does not extend"):
        run(checkpoint())
