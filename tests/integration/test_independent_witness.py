"""A witness and a witness client written from the C2SP specs by someone else
(`aics-witness` from PyPI, with its own C2SP library `aics-tlog`; not in this
repository) against ours, over real HTTP: `llmring serve` submits to that witness and its
cosignatures appear on the served checkpoint; that client drives `llmring witness serve`
through every status code of c2sp.org/tlog-witness, including 20 concurrent
submissions, none of which rolls the held size back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.storage.layout import DataDir
from ledger.tlog.notary import Notary
from ledger.tlog.policy import check_quorum, parse_policy
from tests.integration.test_witness_submission import _events, _ok, _states, _until
from tests.support import independent_witness, serverproc, witnessproc

ORIGIN = "independent.example/log"
SEED = "07" * 32


@pytest.fixture(scope="module")
def aics() -> Iterator[None]:
    try:
        independent_witness.environment()
    except RuntimeError as exc:  # pragma: no cover - a machine without Python 3.12 / PyPI
        pytest.skip(f"the independent witness cannot be installed here: {exc}")
    yield


def test_our_server_submits_to_the_independent_witness(tmp_path: Path, aics: None) -> None:
    """The ledger's checkpoints, consistency proofs and signatures are accepted by a
    witness we did not write; its cosignatures verify under our policy check."""
    data = tmp_path / "data"
    notary = Notary(DataDir(data))  # the data directory's origin and first key, made now
    origin = notary.log_origin("alpha")
    log_vkey = notary.keyring.current().info.vkey()
    witness = independent_witness.start(tmp_path / "aics", "aics.example/w", {origin: log_vkey})
    server = None
    try:
        policy = f"witness AICS {witness.vkey} {witness.url}\nquorum AICS\n"
        (data / "witnesses.policy").write_text(policy)
        server = serverproc.start(data, projects=("alpha",), extra=(
            "--witness-interval", "0.1", "--witness-backoff", "0.1",
            "--witness-backoff-max", "0.5"))
        with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                          timeout=30) as c:
            for batch in ("a", "b"):  # the second round needs a consistency proof
                _ok(c.post("/api/v1/log/batch", json=_events(batch, 7)))
                size = _ok(c.get("/api/v1/log/checkpoint"))["size"]
                _until(f"the independent witness cosigns size {size}", lambda s=size: (
                    _states(c) == {"AICS": "current"}
                    and _ok(c.get("/api/v1/log/witnesses"))["checkpoint_size"] == s))
                served = _ok(c.get("/api/v1/log/checkpoint"))["cosigned_note"]
                assert check_quorum(served, parse_policy(policy)) == ["aics.example/w"]
    finally:
        if server is not None:
            server.stop()
        witness.stop()


def test_the_independent_client_drives_our_witness(tmp_path: Path, aics: None) -> None:
    """Every status code of the spec, as an outside client sees them: 404, 403, 400,
    200 (the client verifies our cosignature itself), 409 `text/x.tlog.size` with the
    held size, 409 for a fork at the same size, 422, 400 for a truncation; then 20
    concurrent clients: the largest size is cosigned and held, none rolls back."""
    log_vkey = tmp_path / "log.vkey"
    log_vkey.write_text(independent_witness.driver("vkey", SEED, ORIGIN))
    ours = witnessproc.start(tmp_path / "w", "witness.example/ours", {ORIGIN: log_vkey})
    try:
        got = independent_witness.drive(ours.url, ours.vkey, SEED, ORIGIN)
    finally:
        ours.stop()
    status = {name: step["status"] for name, step in got.items() if "status" in step}
    assert status == {"unknown_origin": 404, "untrusted_key": 403, "old_above_size": 400,
                      "malformed": 400, "first": 200, "stale_old": 409,
                      "fork_same_size": 409, "bad_proof": 422, "truncation": 400,
                      "grown": 200, "held_after": 409}
    assert got["stale_old"]["content_type"] == "text/x.tlog.size"
    assert got["stale_old"]["body"] == "10\n" and got["fork_same_size"]["body"] == "10\n"
    assert got["first"]["cosignature"].startswith("— witness.example/ours ")
    concurrent = got["concurrent"]
    assert concurrent["32"] == "cosigned"
    assert set(concurrent.values()) <= {"cosigned", "overtaken"}, concurrent
    assert got["held_after"]["body"] == "32\n"  # the largest size is held: no rollback

