"""Offline verification: signatures over every signed field, proof bundles, tampered
events, key rotation, and the fast receipt-tree builder (docs/formats.md)."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from ledger import Ledger
from ledger.receipts.issuance import Receipts
from ledger.receipts.verification import verify_bundle, verify_receipt
from ledger.tlog.merkle import root_from_leaf_hashes, tree_levels_from_buffer
from tests.conftest import usage


@pytest.fixture
def receipts(ledger: Ledger) -> Receipts:
    return Receipts(ledger)


@pytest.fixture
def signed(ledger: Ledger, receipts: Receipts) -> dict[str, Any]:
    ledger.append_many([usage(ts=f"2025-10-0{1 + i % 3}T10:00:00Z", conversation_id=f"c{i}",
                              model=("gpt-4o", "gpt-4o-mini")[i % 2]) for i in range(7)])
    return receipts.generate(since_last_receipt=True, description="d", tags=["t"])["receipt"]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every leaf path of a JSON value (keys and list indexes)."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _paths(v, (*prefix, k))] or [prefix]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def _altered(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.01
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return "x"
    return ["x"]


def _set(obj: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def test_a_fresh_receipt_verifies(receipts, signed):
    result = verify_receipt(signed, receipts.public_keys())
    assert result.valid, result.message


def test_changing_any_signed_field_breaks_verification(receipts, signed):
    keys = receipts.public_keys()
    paths = [p for p in _paths(signed) if p[0] != "signature"]
    assert len(paths) > 40
    for path in paths:
        tampered = copy.deepcopy(signed)
        target: Any = tampered
        for key in path[:-1]:
            target = target[key]
        _set(tampered, path, _altered(target[path[-1]]))
        result = verify_receipt(tampered, keys)
        assert not result.valid, path
        assert result.failed in ("signature", "key"), path


def test_removing_or_adding_a_field_breaks_verification(receipts, signed):
    keys = receipts.public_keys()
    removed = {k: v for k, v in signed.items() if k != "description"}
    assert verify_receipt(removed, keys).failed == "signature"
    assert verify_receipt({**signed, "extra": 1}, keys).failed == "signature"


def test_unknown_key_is_reported_as_such(receipts, signed, tmp_path):
    from ledger.tlog.signing import KeyRing

    ring = KeyRing(tmp_path / "other-keys", "other.example")
    ring.current()
    result = verify_receipt(signed, ring.keys())
    assert (result.valid, result.failed) == (False, "key")
    assert signed["key_id"] in result.message


def test_receipts_signed_before_a_key_rotation_verify_after_it(ledger, receipts, signed):
    old_key = signed["key_id"]
    receipts.keyring.rotate()
    ledger.append(usage())
    newer = receipts.generate(since_last_receipt=True)["receipt"]
    keys = receipts.public_keys()
    assert newer["key_id"] != old_key
    assert verify_receipt(signed, keys).valid
    assert verify_receipt(newer, keys).valid


def test_a_pem_public_key_verifies_a_receipt(receipts, signed, tmp_path):
    from ledger.tlog.signing import load_public_keys

    pem = tmp_path / "key.pem"
    pem.write_text(receipts.keyring.current().info.pem())
    assert verify_receipt(signed, load_public_keys(pem)).valid


# -- proof bundles -------------------------------------------------------------------------
def test_every_event_of_a_random_receipt_has_a_proof_that_verifies(ledger, receipts):
    rng = random.Random(7)
    acks = ledger.append_many([usage(ts=f"2025-10-{1 + i % 28:02d}T10:00:00Z")
                               for i in range(700)])
    chosen = sorted(rng.sample(range(700), 613))
    rid = receipts.generate(log_ids=[acks[i].event_id for i in chosen])["receipt"]["receipt_id"]
    keys = receipts.public_keys()
    for leaf_index, i in enumerate(chosen):
        bundle = receipts.prove("default", rid, acks[i].event_id)
        assert bundle["leaf_index"] == leaf_index and bundle["tree_size"] == 613
        result = verify_bundle(bundle, keys)
        assert result.valid, (i, result.message)


def test_a_receipt_over_thousands_of_scattered_events_proves_and_audits(ledger, receipts):
    from ledger.core.audit import verify_directory

    acks = ledger.append_many([usage() for _ in range(10_000)])
    every_other = [a.event_id for a in acks[::2]]  # 5,000 runs of one event
    r = receipts.generate(log_ids=every_other)["receipt"]
    assert r["certified_count"] == 5_000
    keys = receipts.public_keys()
    for i in (0, 2_571, 4_999):
        assert verify_bundle(receipts.prove("default", r["receipt_id"], every_other[i]),
                             keys).valid
    assert receipts.uncertified(limit=1, offset=4_999)["logs"][0]["id"] == acks[-1].event_id
    assert verify_directory(ledger.path).ok


def test_proofs_are_rebuilt_when_the_tile_cache_is_lost(ledger, receipts):
    acks = ledger.append_many([usage() for _ in range(600)])
    rid = receipts.generate(since_last_receipt=True)["receipt"]["receipt_id"]
    for p in (ledger.path / "projects").rglob("rtree/*.bin"):
        p.unlink()
    assert verify_bundle(receipts.prove("default", rid, acks[517].event_id),
                         receipts.public_keys()).valid


def test_a_corrupt_tile_cache_is_detected_and_rebuilt(ledger, receipts):
    acks = ledger.append_many([usage() for _ in range(600)])
    rid = receipts.generate(since_last_receipt=True)["receipt"]["receipt_id"]
    cache = next((ledger.path / "projects").rglob("rtree/*.bin"))
    cache.write_bytes(bytes(len(cache.read_bytes())))
    assert verify_bundle(receipts.prove("default", rid, acks[3].event_id),
                         receipts.public_keys()).valid


@pytest.mark.parametrize(("field", "value"), [
    ("cost_nanos", 1), ("input_tokens", 1), ("output_tokens", 99_999), ("model", "gpt-5")])
def test_a_bundle_whose_event_was_edited_fails_at_the_leaf(receipts, signed, ledger, field,
                                                            value):
    event_id = receipts.logs("default", signed["receipt_id"])["logs"][3]["id"]
    bundle = receipts.prove("default", signed["receipt_id"], event_id)
    bundle["event"][field] = value
    result = verify_bundle(bundle, receipts.public_keys())
    assert (result.valid, result.failed) == (False, "leaf")


def test_an_edited_event_with_a_matching_leaf_hash_fails_at_the_path(receipts, signed):
    from hashlib import sha256

    from ledger.model.event import canonical_json

    event_id = receipts.logs("default", signed["receipt_id"])["logs"][0]["id"]
    bundle = receipts.prove("default", signed["receipt_id"], event_id)
    bundle["event"]["cost_nanos"] = 0
    bundle["leaf_hash"] = sha256(b"\0" + canonical_json(bundle["event"],
                                                        reference=True)).hexdigest()
    result = verify_bundle(bundle, receipts.public_keys())
    assert (result.valid, result.failed) == (False, "path")
    assert "does not reach" in result.message


def test_an_altered_audit_path_fails_at_the_path(receipts, signed):
    event_id = receipts.logs("default", signed["receipt_id"])["logs"][2]["id"]
    bundle = receipts.prove("default", signed["receipt_id"], event_id)
    bundle["audit_path"][0] = "00" * 32
    assert verify_bundle(bundle, receipts.public_keys()).failed == "path"
    bundle["audit_path"] = bundle["audit_path"][1:]
    assert verify_bundle(bundle, receipts.public_keys()).failed == "path"


def test_a_bundle_with_a_tampered_receipt_fails_at_the_signature(receipts, signed):
    event_id = receipts.logs("default", signed["receipt_id"])["logs"][0]["id"]
    bundle = receipts.prove("default", signed["receipt_id"], event_id)
    bundle["receipt"]["total_cost"] = 0.0
    assert verify_bundle(bundle, receipts.public_keys()).failed == "signature"


def test_the_bundle_carries_a_verified_log_inclusion_proof(receipts, signed):
    event_id = receipts.logs("default", signed["receipt_id"])["logs"][0]["id"]
    bundle = receipts.prove("default", signed["receipt_id"], event_id)
    assert bundle["log_proof"]["tree_size"] == signed["log_checkpoint"]["size"]
    result = verify_bundle(bundle, receipts.public_keys())
    assert any("signed log checkpoint" in c for c in result.checks)
    bundle["log_proof"]["audit_path"][0] = "11" * 32
    assert verify_bundle(bundle, receipts.public_keys()).failed == "log_proof"


def test_proving_an_event_the_receipt_does_not_certify_is_an_error(ledger, receipts, signed):
    from ledger.receipts.issuance import ReceiptNotFoundError

    other = ledger.append(usage())
    with pytest.raises(ReceiptNotFoundError, match="not certified by receipt"):
        receipts.prove("default", signed["receipt_id"], other.event_id)


# -- the fast tree builder -------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 255, 256, 257, 511, 512, 1000, 1025])
def test_buffer_tree_builder_matches_the_reference_root(n):
    rng = random.Random(n)
    leaves = [rng.randbytes(32) for _ in range(n)]
    root, tiles = tree_levels_from_buffer(b"".join(leaves), keep=8)
    assert root == root_from_leaf_hashes(leaves)
    for i in range(n // 256):
        assert tiles[32 * i:32 * i + 32] == root_from_leaf_hashes(leaves[256 * i:256 * i + 256])
