"""The HTTP server as a real ``llmring serve`` process: authentication, logging (usage,
conversations, batches), tenant isolation, limits and errors, public keys, checkpoints,
rollups and exports."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
import rfc8785

from ledger.tlog.checkpoint import Verifier, verify_checkpoint
from ledger.tlog.merkle import verify_consistency
from ledger.tlog.signing import parse_pem_keys, parse_public_keys_json
from tests.support import serverproc
from tests.support.serverproc import Server


def usage(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "alias": "fast",
                             "input_tokens": 1200, "output_tokens": 300, "cost": 0.00036}
    event.update(overrides)
    return event


def total(client: httpx.Client) -> int:
    r = client.get("/api/v1/logs", params={"limit": 1})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


# -- authentication ------------------------------------------------------------------------
def test_health_needs_no_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/log"), ("POST", "/api/v1/log/batch"),
    ("POST", "/api/v1/conversations/log"), ("GET", "/api/v1/logs"),
    ("GET", "/api/v1/logs/x"), ("GET", "/api/v1/usage/rollup"),
    ("GET", "/api/v1/exports/events"), ("GET", "/api/v1/log/checkpoint"),
    ("GET", "/api/v1/log/consistency?first=0")])
def test_every_project_endpoint_refuses_a_missing_key(anonymous: httpx.Client, method: str,
                                                      path: str) -> None:
    r = anonymous.request(method, path, json=usage())
    assert r.status_code == 401
    assert "API key" in r.json()["detail"]


def test_a_wrong_key_is_refused(server: Server) -> None:
    r = httpx.post(server.url + "/api/v1/log", json=usage(),
                   headers={"X-API-Key": "llr_" + "A" * 43})
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid or revoked API key"


def test_a_bearer_token_authenticates_like_x_api_key(server: Server) -> None:
    r = httpx.get(server.url + "/api/v1/logs",
                  headers={"Authorization": f"Bearer {server.keys['alpha']}"})
    assert r.status_code == 200


def test_a_key_created_while_serving_works_and_stops_when_revoked(server: Server) -> None:
    key = serverproc.create_key(server.data, "gamma")
    r = httpx.post(server.url + "/api/v1/log", json=usage(), headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    key_id = orjson.loads(serverproc.cli(server.data, "keys", "list", "--json").stdout
                          )["keys"][-1]["key_id"]
    serverproc.cli(server.data, "keys", "revoke", key_id)
    r = httpx.post(server.url + "/api/v1/log", json=usage(), headers={"X-API-Key": key})
    assert r.status_code == 401


def test_keys_are_stored_only_as_hashes(server: Server) -> None:
    text = (server.data / "api-keys.json").read_text()
    for key in server.keys.values():
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() in text


# -- logging -------------------------------------------------------------------------------
def test_a_usage_log_answers_log_id_cost_and_timestamp(alpha: httpx.Client) -> None:
    r = alpha.post("/api/v1/log", json=usage(cost=0.1, latency_ms=120, origin="app"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cost"] == 0.1
    assert body["cost_nanos"] == 100_000_000
    assert body["timestamp"].endswith("Z")
    stored = alpha.get(f"/api/v1/logs/{body['log_id']}").json()
    assert stored["tenant"] == "alpha"
    assert stored["latency_ms"] == 120


def test_the_tenant_cannot_be_set_in_the_body(alpha: httpx.Client) -> None:
    before = total(alpha)
    r = alpha.post("/api/v1/log", json=usage(tenant="beta"))
    assert r.status_code == 422
    assert "tenant cannot be set" in r.json()["detail"]
    assert total(alpha) == before


def test_a_repeated_event_id_is_stored_once(alpha: httpx.Client) -> None:
    before = total(alpha)
    first = alpha.post("/api/v1/log", json=usage(event_id="retry-1")).json()
    again = alpha.post("/api/v1/log", json=usage(event_id="retry-1")).json()
    assert again["log_id"] == first["log_id"] and again["created"] is False
    assert total(alpha) == before + 1


def test_a_reused_event_id_with_other_content_is_a_409(alpha: httpx.Client) -> None:
    alpha.post("/api/v1/log", json=usage(event_id="conflict-1"))
    r = alpha.post("/api/v1/log", json=usage(event_id="conflict-1", input_tokens=5))
    assert r.status_code == 409
    assert "input_tokens" in r.json()["detail"]


def test_a_conversation_and_its_usage_log_are_one_event(alpha: httpx.Client) -> None:
    before = total(alpha)
    messages = [{"role": "user", "content": "Hello!"}]
    response = {"content": "Hi there", "model": "gpt-4o-mini"}
    conv = alpha.post("/api/v1/conversations/log", json={
        "messages": messages, "response": response,
        "metadata": {"provider": "openai", "model": "gpt-4o-mini", "alias": "balanced",
                     "input_tokens": 10, "output_tokens": 5, "cost": 0.0002,
                     "session": "s-1"}}).json()
    assert conv["receipt"] is None
    paired = alpha.post("/api/v1/log", json=usage(
        id_at_origin=conv["conversation_id"],
        metadata={"conversation_id": conv["conversation_id"]})).json()
    assert paired["log_id"] == conv["message_id"]
    assert paired["created"] is False
    assert total(alpha) == before + 1
    event = alpha.get(f"/api/v1/logs/{conv['message_id']}").json()
    assert event["kind"] == "conversation"
    assert event["metadata"] == {"session": "s-1"}
    assert (event["input_tokens"], event["cost_nanos"]) == (10, 200_000)


def test_conversation_content_is_stored_apart_and_committed_by_hash(
        alpha: httpx.Client) -> None:
    messages = [{"role": "user", "content": "What is 2+2?"}]
    response = {"content": "4"}
    conv = alpha.post("/api/v1/conversations/log", json={
        "messages": messages, "response": response,
        "metadata": {"provider": "anthropic", "model": "claude-3-5-haiku", "cost": 0.001}}
    ).json()
    expected = hashlib.sha256(rfc8785.dumps({"messages": messages, "response": response}))
    assert conv["content_sha256"] == expected.hexdigest()
    event = alpha.get(f"/api/v1/logs/{conv['message_id']}").json()
    assert event["content_sha256"] == expected.hexdigest()
    content = alpha.get(f"/api/v1/logs/{conv['message_id']}/content")
    assert orjson.loads(content.content) == {"messages": messages, "response": response}
    assert "What is 2+2" not in orjson.dumps(event).decode()


def test_a_batch_is_appended_in_order(alpha: httpx.Client) -> None:
    before = total(alpha)
    events = [usage(input_tokens=i) for i in range(50)]
    r = alpha.post("/api/v1/log/batch", json={"events": events})
    assert r.status_code == 200, r.text
    logs = r.json()["logs"]
    assert [entry["seq"] for entry in logs] == sorted(entry["seq"] for entry in logs)
    assert r.json()["created"] == 50
    assert total(alpha) == before + 50


def test_a_batch_with_one_bad_event_records_nothing(alpha: httpx.Client) -> None:
    before = total(alpha)
    events = [usage(), usage(), usage(input_tokens=-1)]
    r = alpha.post("/api/v1/log/batch", json={"events": events})
    assert r.status_code == 422
    assert "events.2.input_tokens" in r.json()["detail"]
    assert total(alpha) == before


# -- isolation -----------------------------------------------------------------------------
def test_another_projects_log_id_is_not_found(alpha: httpx.Client, beta: httpx.Client
                                              ) -> None:
    log_id = alpha.post("/api/v1/log", json=usage()).json()["log_id"]
    for path in (f"/api/v1/logs/{log_id}", f"/api/v1/logs/{log_id}/content"):
        r = beta.get(path)
        assert r.status_code == 404
        assert "alpha" not in r.text


def test_listings_rollups_and_exports_hold_only_the_callers_project(
        alpha: httpx.Client, beta: httpx.Client) -> None:
    alpha.post("/api/v1/log", json=usage(model="only-in-alpha", cost=1))
    beta.post("/api/v1/log", json=usage(model="only-in-beta", cost=2))
    for client, mine, theirs in ((alpha, "only-in-alpha", "only-in-beta"),
                                 (beta, "only-in-beta", "only-in-alpha")):
        listing = client.get("/api/v1/logs", params={"limit": 1000}).text
        rollup = client.get("/api/v1/usage/rollup", params={"by": "model"}).text
        export = client.get("/api/v1/exports/events", params={"format": "jsonl"}).text
        for text in (listing, rollup, export):
            assert mine in text and theirs not in text


def test_a_conversation_id_of_another_project_does_not_pair(alpha: httpx.Client,
                                                            beta: httpx.Client) -> None:
    conv = alpha.post("/api/v1/conversations/log", json={
        "messages": [], "response": None,
        "metadata": {"provider": "openai", "model": "gpt-4o", "cost": 0.01}}).json()
    r = beta.post("/api/v1/log", json=usage(id_at_origin=conv["conversation_id"])).json()
    assert r["created"] is True
    assert r["log_id"] != conv["message_id"]


def test_checkpoints_are_per_project(alpha: httpx.Client, beta: httpx.Client) -> None:
    a = alpha.get("/api/v1/log/checkpoint").json()
    b = beta.get("/api/v1/log/checkpoint").json()
    assert a["origin"].endswith("/alpha") and b["origin"].endswith("/beta")


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"{not json", b"[]", b'"text"', b"null", b"{}",
                                  b'{"provider": "x"}', b'{"provider": "x", "model": "y", '
                                  b'"input_tokens": "many"}',
                                  b'{"provider": "x", "model": "y", "timestamp": "yesterday"}',
                                  b'{"provider": "x", "model": "y", "cost": -1}',
                                  b'{"provider": "x", "model": "y", "metadata": []}'])
def test_malformed_usage_logs_are_422_and_change_nothing(alpha: httpx.Client,
                                                         body: bytes) -> None:
    before = total(alpha)
    r = alpha.post("/api/v1/log", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert total(alpha) == before


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"offset": -1},
                                    {"order": "ts"}])
def test_bad_paging_and_dates_are_422(alpha: httpx.Client, params: dict[str, Any]) -> None:
    r = alpha.get("/api/v1/logs", params=params)
    assert r.status_code == 422
    assert r.json()["detail"]


def test_a_bad_date_is_400_saying_what_a_date_looks_like(alpha: httpx.Client) -> None:
    r = alpha.get("/api/v1/logs", params={"start": "not-a-date"})
    assert r.status_code == 400
    assert "YYYY-MM-DD" in r.json()["detail"]


def test_a_start_after_the_end_is_400(alpha: httpx.Client) -> None:
    r = alpha.get("/api/v1/logs", params={"start": "2025-02-01", "end": "2025-01-01"})
    assert r.status_code == 400
    assert "before" in r.json()["detail"]


def test_an_unknown_rollup_dimension_or_zone_is_400(alpha: httpx.Client) -> None:
    r = alpha.get("/api/v1/usage/rollup", params={"by": "meta.colour\x01"})
    assert r.status_code == 400 and "colour" in r.json()["detail"]
    r = alpha.get("/api/v1/usage/rollup", params={"by": "day", "tz": "Mars/Olympus"})
    assert r.status_code == 400 and "time zone" in r.json()["detail"]


def test_a_huge_body_is_413_and_changes_nothing(alpha: httpx.Client) -> None:
    before = total(alpha)
    body = orjson.dumps(usage(metadata={"blob": "x" * (5 * 1024 * 1024)}))
    r = alpha.post("/api/v1/log", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]
    assert total(alpha) == before


def test_an_unknown_log_id_is_404(alpha: httpx.Client) -> None:
    r = alpha.get("/api/v1/logs/no-such-log")
    assert r.status_code == 404
    assert "no-such-log" in r.json()["detail"]


def test_a_consistency_proof_beyond_the_log_is_400(alpha: httpx.Client) -> None:
    r = alpha.get("/api/v1/log/consistency", params={"first": 10**9})
    assert r.status_code == 400


# -- keys, checkpoints, exports ------------------------------------------------------------
def test_public_keys_are_served_without_a_key(anonymous: httpx.Client) -> None:
    keys = parse_public_keys_json(anonymous.get("/api/v1/receipts/public-keys.json").json())
    pem = anonymous.get("/receipts/public-key.pem")
    assert pem.headers["content-type"].startswith("application/x-pem-file")
    assert [k.public_key for k in parse_pem_keys(pem.text)] == [keys[-1].public_key]
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    load_pem_public_key(pem.content)


def test_a_checkpoint_verifies_with_the_published_keys(alpha: httpx.Client,
                                                       anonymous: httpx.Client) -> None:
    alpha.post("/api/v1/log", json=usage())
    signed = alpha.get("/api/v1/log/checkpoint").json()
    keys = parse_public_keys_json(anonymous.get("/api/v1/receipts/public-keys.json").json())
    cp = verify_checkpoint(signed["note"], [Verifier.from_info(k) for k in keys])
    assert cp.size == signed["size"] == total_entries(alpha)


def total_entries(client: httpx.Client) -> int:
    return int(client.get("/api/v1/log/consistency", params={"first": 0}).json()["second"])


def test_a_consistency_proof_links_two_checkpoints(alpha: httpx.Client) -> None:
    old = alpha.get("/api/v1/log/checkpoint").json()
    alpha.post("/api/v1/log/batch", json={"events": [usage() for _ in range(7)]})
    new = alpha.get("/api/v1/log/checkpoint").json()
    proof = alpha.get("/api/v1/log/consistency",
                      params={"first": old["size"], "second": new["size"]}).json()
    assert proof["first_root"] == old["root"] and proof["second_root"] == new["root"]
    verify_consistency(old["size"], new["size"], bytes.fromhex(old["root"]),
                       bytes.fromhex(new["root"]), [bytes.fromhex(h) for h in proof["proof"]])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_hold_every_event_with_its_leaf_hash(beta: httpx.Client, fmt: str) -> None:
    beta.post("/api/v1/log", json=usage())
    r = beta.get("/api/v1/exports/events", params={"format": fmt})
    assert r.status_code == 200
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(r.text)))
    elif fmt == "jsonl":
        rows = [orjson.loads(line) for line in r.text.splitlines()]
    else:
        rows = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert len(rows) == total(beta)
    assert all(len(row["leaf_hash"]) == 64 for row in rows)


def test_the_openapi_schema_lists_every_endpoint(anonymous: httpx.Client) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/log", "/api/v1/log/batch", "/api/v1/conversations/log",
                 "/api/v1/receipts/public-keys.json", "/receipts/public-key.pem"):
        assert path in paths


# -- lifecycle -----------------------------------------------------------------------------
def test_sigterm_closes_the_ledger_and_keeps_every_acknowledged_event(tmp_path: Path
                                                                      ) -> None:
    server = serverproc.start(tmp_path / "data", projects=("solo",))
    try:
        r = httpx.post(server.url + "/api/v1/log/batch", headers=server.headers("solo"),
                       json={"events": [usage() for _ in range(20)]})
        assert r.status_code == 200
    finally:
        assert server.stop() == 0  # graceful (SIGTERM): exit status 0
    from ledger import Ledger

    with Ledger(tmp_path / "data", pricer=None) as led:
        assert led.count("solo") == 20
        journals = (tmp_path / "data" / "projects").glob("*/journal/*")
        assert not any(p.stat().st_size for p in journals)


def test_a_chunked_body_without_content_length_is_accepted(alpha: httpx.Client) -> None:
    body = orjson.dumps(usage(model="chunked-model"))

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    r = alpha.post("/api/v1/log", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert alpha.get(f"/api/v1/logs/{r.json()['log_id']}").json()["model"] == "chunked-model"


def test_a_chunked_huge_body_is_413(alpha: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    r = alpha.post("/api/v1/log", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_the_fast_path_and_the_app_answer_the_same_shape(alpha: httpx.Client) -> None:
    fast = alpha.post("/api/v1/log", json=usage()).json()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the FastAPI route answers
        yield orjson.dumps(usage())

    routed = alpha.post("/api/v1/log", content=chunks(),
                        headers={"Content-Type": "application/json"}).json()
    assert set(fast) == set(routed)


def test_serving_a_directory_in_use_is_refused_with_the_reason(tmp_path: Path) -> None:
    from ledger import Ledger

    with Ledger(tmp_path / "data", pricer=None):
        result = serverproc.cli(tmp_path / "data", "serve", "--port",
                                str(serverproc.free_port()), check=False)
    assert result.returncode == 2
    assert "in use by another process" in result.stderr
    assert "Traceback" not in result.stderr


def _witness_for(tmp_path: Path, anonymous: httpx.Client, origin: str):
    from ledger.tlog.witness import Witness

    keys = parse_public_keys_json(anonymous.get("/api/v1/receipts/public-keys.json").json())
    w = Witness(tmp_path / "witness", "witness.example/w1")
    w.add_log(origin, keys)
    return w


def test_witness_cosignatures_are_stored_and_served(alpha: httpx.Client,
                                                    anonymous: httpx.Client,
                                                    tmp_path: Path) -> None:
    from ledger.tlog.checkpoint import parse_note

    alpha.post("/api/v1/log", json=usage())
    signed = alpha.get("/api/v1/log/checkpoint").json()
    witness = _witness_for(tmp_path, anonymous, signed["origin"])
    cosigned = witness.cosign(signed["note"], [])  # the witness's first checkpoint
    r = alpha.post("/api/v1/log/cosignatures", json={"note": cosigned})
    assert r.status_code == 200, r.text
    assert r.json()["added"]
    served = alpha.get("/api/v1/log/checkpoint").json()["cosigned_note"]
    key = witness.public_key()
    assert any(key.matches(s) for s in parse_note(served).signatures)


def test_cosignatures_on_another_projects_checkpoint_are_not_found(
        alpha: httpx.Client, beta: httpx.Client, anonymous: httpx.Client,
        tmp_path: Path) -> None:
    alpha.post("/api/v1/log", json=usage())
    signed = alpha.get("/api/v1/log/checkpoint").json()
    cosigned = _witness_for(tmp_path, anonymous, signed["origin"]).cosign(signed["note"], [])
    r = beta.post("/api/v1/log/cosignatures", json={"note": cosigned})
    assert r.status_code == 404


@pytest.mark.parametrize("note", ["not a note", "x\n1\nAAAA\n\n— nobody AAAA\n"])
def test_a_malformed_cosigned_note_is_a_400(alpha: httpx.Client, note: str) -> None:
    r = alpha.post("/api/v1/log/cosignatures", json={"note": note})
    assert r.status_code == 400 and r.json()["detail"]


def test_a_note_the_ledger_never_signed_is_refused(alpha: httpx.Client,
                                                   anonymous: httpx.Client,
                                                   tmp_path: Path) -> None:
    signed = alpha.get("/api/v1/log/checkpoint").json()
    lines = signed["note"].split("\n")
    lines[1] = str(int(lines[1]) + 1000)  # another size, same origin
    forged = "\n".join(lines)
    r = alpha.post("/api/v1/log/cosignatures", json={"note": forged})
    assert r.status_code == 400
    assert "never signed" in r.json()["detail"]


def test_a_logs_inclusion_in_the_log_verifies_offline(alpha: httpx.Client,
                                                     anonymous: httpx.Client) -> None:
    from ledger.tlog.consistency import check_inclusion

    log_id = alpha.post("/api/v1/log", json=usage()).json()["log_id"]
    r = alpha.get(f"/api/v1/log/inclusion/{log_id}")
    assert r.status_code == 200, r.text
    keys = parse_public_keys_json(anonymous.get("/api/v1/receipts/public-keys.json").json())
    cp = check_inclusion(r.json(), [Verifier.from_info(k) for k in keys])
    assert cp.origin.endswith("/alpha")


def test_another_projects_log_inclusion_is_not_found(alpha: httpx.Client,
                                                     beta: httpx.Client) -> None:
    log_id = alpha.post("/api/v1/log", json=usage()).json()["log_id"]
    assert beta.get(f"/api/v1/log/inclusion/{log_id}").status_code == 404
