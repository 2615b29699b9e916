"""The c2sp.org/tlog-tiles read API of a real ``llmring serve``: the checkpoint and hash
tiles are public, entry bundles need the project's own key, tiles equal the tree's
hashes and stop at the latest signed checkpoint, no path is ever a 500, and an
independent verifier (Go, x/mod sumdb note/tlog, ``tests/independent``) proves inclusion
and consistency from the tiles alone."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ledger.tlog.checkpoint import Verifier, verify_checkpoint
from ledger.tlog.merkle import leaf_hash, root_from_leaf_hashes
from ledger.tlog.published import decode_bundle
from ledger.tlog.signing import SigningKey, parse_public_keys_json
from tests.support import serverproc, tlogverify
from tests.support.serverproc import Server

FIRST = 300  # events before the first checkpoint: one full level-0 tile and a partial one


def usage(i: int) -> dict[str, Any]:
    return {"model": "gpt-4o", "provider": "openai", "input_tokens": i, "output_tokens": 1,
            "cost": "0.001"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serverproc.running(tmp_path_factory.mktemp("tlog"))


@pytest.fixture(scope="module")
def alpha(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.headers("alpha"),
                      timeout=60) as client:
        assert client.post("/api/v1/log/batch", json={
            "events": [usage(i) for i in range(FIRST - 1)]}).status_code == 200
        client.post("/api/v1/receipts/generate", json={"since_last_receipt": True}
                    ).raise_for_status()  # entry FIRST - 1 is the receipt
        assert client.get("/api/v1/log/checkpoint").json()["size"] == FIRST
        yield client


def public(server: Server, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/tlog/{path}", timeout=30, **kw)


def served_size(server: Server) -> int:
    return int(public(server, "alpha/checkpoint").text.splitlines()[1])


def test_the_checkpoint_is_public_signed_text(server: Server, alpha: httpx.Client) -> None:
    answer = public(server, "alpha/checkpoint")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["cache-control"] == "public, max-age=5"
    keys = parse_public_keys_json(httpx.get(
        server.url + "/api/v1/receipts/public-keys.json").json())
    cp = verify_checkpoint(answer.text, [Verifier.from_info(k) for k in keys],
                           origin="llmring-ledger.local/alpha")
    assert cp.size >= FIRST


def test_hash_tiles_are_public_immutable_and_make_the_signed_root(
        server: Server, alpha: httpx.Client) -> None:
    note = public(server, "alpha/checkpoint").text
    size = int(note.splitlines()[1])
    full = public(server, "alpha/tile/0/000")
    assert full.status_code == 200 and len(full.content) == 256 * 32
    assert full.headers["content-type"] == "application/octet-stream"
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    partial = public(server, f"alpha/tile/0/001.p/{size - 256}")
    assert partial.status_code == 200
    leaves = [(full.content + partial.content)[i:i + 32] for i in range(0, size * 32, 32)]
    assert root_from_leaf_hashes(leaves) == base64.b64decode(note.splitlines()[2])
    level1 = public(server, "alpha/tile/1/000.p/1").content
    assert level1 == root_from_leaf_hashes(leaves[:256])


def test_entry_bundles_need_the_projects_own_key(server: Server, alpha: httpx.Client
                                                 ) -> None:
    path = "alpha/tile/entries/000"
    assert public(server, path).status_code == 401
    assert public(server, path, headers={"X-API-Key": "nope"}).status_code == 401
    other = public(server, path, headers=server.headers("beta"))
    assert other.status_code == 404 and "own project" in other.json()["detail"]
    for path, tile in (("000", "0/000"), (f"001.p/{FIRST - 256}", f"0/001.p/{FIRST - 256}")):
        answer = alpha.get(f"/tlog/alpha/tile/entries/{path}")
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "private, max-age=31536000, immutable"
        entries = decode_bundle(answer.content)
        hashes = public(server, f"alpha/tile/{tile}").content
        assert b"".join(leaf_hash(e) for e in entries) == hashes
    last = orjson.loads(entries[-1])  # the receipt entry: its signed receipt's JSON
    assert last["receipt_id"].startswith("rcpt_") and last["tenant"] == "alpha"
    first = orjson.loads(decode_bundle(alpha.get("/tlog/alpha/tile/entries/000").content)[0])
    assert first["input_tokens"] == 0 and first["tenant"] == "alpha"


def test_tiles_past_the_signed_checkpoint_are_not_served(server: Server,
                                                         alpha: httpx.Client) -> None:
    size = served_size(server)
    alpha.post("/api/v1/log/batch", json={"events": [usage(i) for i in range(3)]}
               ).raise_for_status()  # the log grows; no checkpoint is asked for
    past = f"0/{size // 256:03d}.p/{size % 256 + 1}"
    answers = [public(server, f"alpha/tile/{past}"),
               alpha.get(f"/tlog/alpha/tile/entries/{past[2:]}")]
    if served_size(server) == size:  # (a cadence checkpoint may have signed meanwhile)
        assert [a.status_code for a in answers] == [404, 404]
        assert "do not cover it" in answers[0].json()["detail"]
    alpha.get("/api/v1/log/checkpoint").raise_for_status()
    assert public(server, f"alpha/tile/{past}").status_code == 200


BAD_PATHS = [
    "alpha/tile/0/x01", "alpha/tile/0/0", "alpha/tile/0/0000", "alpha/tile/0/x000/001",
    "alpha/tile/0/000.p/0", "alpha/tile/0/000.p/256", "alpha/tile/0/000.p/007",
    "alpha/tile/0/000.p/", "alpha/tile/0/000.p/1/2", "alpha/tile/64/000",
    "alpha/tile/01/000", "alpha/tile/-1/000", "alpha/tile/9999999999999999999999/000",
    "alpha/tile/0/x999/x999/x999/x999/x999/x999/x999/999", "alpha/tile/0/%00",
    "alpha/tile/0/..%2F..%2Fkeys", "alpha/tile/0/", "alpha/tile/", "alpha/tile/data/000",
    "alpha/tile/5/000", "nobody/checkpoint", "nobody/tile/0/000", "..%2Fkeys/checkpoint",
    "%2e%2e/checkpoint", "a%00b/checkpoint", ("x" * 5000) + "/checkpoint",
    "alpha/tile/0/000.p/1%00"]


@pytest.mark.parametrize("path", BAD_PATHS, ids=range(len(BAD_PATHS)))
def test_a_bad_or_missing_tile_is_404_never_500(server: Server, alpha: httpx.Client,
                                                path: str) -> None:
    answer = public(server, path)
    assert answer.status_code == 404, answer.text
    assert answer.json()["code"] == "not_found"
    if "/tile/0/" in path:
        keyed = alpha.get("/tlog/" + path.replace("/tile/0/", "/tile/entries/"))
        assert keyed.status_code == 404, keyed.text


def test_tiles_take_only_get(server: Server, alpha: httpx.Client) -> None:
    assert httpx.post(f"{server.url}/tlog/alpha/tile/0/000").status_code == 405
    assert httpx.delete(f"{server.url}/tlog/alpha/checkpoint").status_code == 405


# -- the independent verifier ----------------------------------------------------------------
@pytest.fixture(scope="module")
def verifier() -> Path:
    why = tlogverify.missing()
    if why is not None:
        pytest.skip(f"the independent Go verifier cannot be built: {why}")
    return tlogverify.binary()


def vkey_of(server: Server) -> str:
    lines = serverproc.cli(server.data, "signing-keys", "export", "--format", "vkey"
                           ).stdout.splitlines()
    return lines[0]  # the current key comes first


def test_an_independent_go_verifier_proves_inclusion_and_consistency(
        server: Server, alpha: httpx.Client, verifier: Path, tmp_path: Path) -> None:
    prefix = f"{server.url}/tlog/alpha"
    vkey = vkey_of(server)
    key = server.keys["alpha"]
    old = tmp_path / "old.checkpoint"
    first = tlogverify.run("-prefix", prefix, "-vkey", vkey, "-api-key", key,
                           "-entries", "0,255,256", "-save", str(old))
    assert first.returncode == 0, first.stderr
    old_size = int(old.read_text().splitlines()[1])
    alpha.post("/api/v1/log/batch", json={"events": [usage(i) for i in range(600)]}
               ).raise_for_status()
    size = alpha.get("/api/v1/log/checkpoint").json()["size"]
    assert size >= old_size + 600
    last = size - 1
    second = tlogverify.run("-prefix", prefix, "-vkey", vkey, "-api-key", key,
                            "-entries", f"0,{FIRST - 1},{old_size},{last}", "-old", str(old))
    assert second.returncode == 0, second.stderr
    assert f"size={size} " in second.stdout and f"consistent_from={old_size}" in second.stdout
    assert "proved=4" in second.stdout


def test_the_go_verifier_refuses_another_key_and_a_fork(
        server: Server, alpha: httpx.Client, verifier: Path, tmp_path: Path) -> None:
    prefix = f"{server.url}/tlog/alpha"
    stranger = SigningKey.generate("llmring-ledger.local").info.vkey()
    wrong = tlogverify.run("-prefix", prefix, "-vkey", stranger)
    assert wrong.returncode == 1 and "signature" in wrong.stderr
    # A fork: a checkpoint of size 2 signed with the ledger's own key whose root is not
    # the log's; the served tiles cannot prove the current checkpoint extends it.
    from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
    from ledger.tlog.signing import KeyRing

    key = KeyRing(server.data / "keys", "llmring-ledger.local").current()
    forged = sign_checkpoint(Checkpoint("llmring-ledger.local/alpha", 2,
                                        sha256(b"another history").digest()), [key])
    (tmp_path / "forged").write_text(forged.note)
    refused = tlogverify.run("-prefix", prefix, "-vkey", key.info.vkey(),
                             "-old", str(tmp_path / "forged"))
    assert refused.returncode == 1 and "consistency" in refused.stderr, refused.stderr


def test_the_go_verifier_checks_per_log_key_names(
        tmp_path: Path, verifier: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory created with per-log key names signs each log under its origin; the
    exported vkey carries that name, and x/mod's note (exact name match) accepts it."""
    monkeypatch.setenv("LLMRING_LOG_KEY_NAMES", "1")
    srv = serverproc.start(tmp_path / "data", projects=("alpha",))
    try:
        with httpx.Client(base_url=srv.url, headers=srv.headers("alpha")) as client:
            client.post("/api/v1/log/batch", json={"events": [usage(i) for i in range(3)]}
                        ).raise_for_status()
            client.get("/api/v1/log/checkpoint").raise_for_status()
        note = public(srv, "alpha/checkpoint").text
        assert "\n— llmring-ledger.local/alpha " in note
        vkey = serverproc.cli(srv.data, "--project", "alpha", "signing-keys", "export",
                              "--format", "vkey").stdout.splitlines()[0]
        assert vkey.startswith("llmring-ledger.local/alpha+")
        checked = tlogverify.run("-prefix", f"{srv.url}/tlog/alpha", "-vkey", vkey,
                                 "-api-key", srv.keys["alpha"], "-entries", "0,2")
        assert checked.returncode == 0, checked.stderr
    finally:
        srv.stop()
