"""An independent tlog-witness client: drives a witness (``llmring witness serve``) with a
log built only from ``aics_tlog`` (the third-party C2SP library of ``aics-witness``)
and submits with ``aics_witness.feeder.WitnessClient`` (its tlog-witness client, which
verifies the cosignatures it gets back) or with raw HTTP requests for the refusals. No
module of this repository is imported: it runs in the ``aics-witness`` environment.

    driver.py vkey SEED_HEX ORIGIN          print the log's vkey (for add-log)
    driver.py drive URL WITNESS_VKEY SEED_HEX ORIGIN
        run the scenario and print, as JSON, what the witness answered to each step
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from aics_tlog import MerkleTree
from aics_tlog.checkpoint import Checkpoint, sign_checkpoint
from aics_tlog.note import b64_encode, format_vkey, vkey_from_ed25519
from aics_witness.feeder import FeederError, WitnessAhead, WitnessClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EMPTY = MerkleTree([])


def _key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def _note(tree: MerkleTree, size: int, key: Ed25519PrivateKey, origin: str) -> str:
    root = tree.root(size) if size else EMPTY.root()
    return sign_checkpoint(Checkpoint(origin, size, root), key, origin).serialise()


def _raw(url: str, old: int, proof: list[bytes], note: str) -> tuple[int, str, str]:
    parts = urlsplit(url)
    body = "".join([f"old {old}\n", *(b64_encode(h) + "\n" for h in proof), "\n", note])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", parts.path.rstrip("/") + "/add-checkpoint", body=body.encode())
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


def drive(url: str, witness_vkey: str, seed_hex: str, origin: str) -> dict[str, Any]:
    key = _key(seed_hex)
    stranger = _key("ab" * 32)
    tree = MerkleTree([b"entry %d" % i for i in range(64)])
    fork = MerkleTree([b"forked %d" % i for i in range(64)])
    out: dict[str, Any] = {}

    def raw(name: str, old: int, proof: list[bytes], note: str) -> None:
        status, ctype, text = _raw(url, old, proof, note)
        out[name] = {"status": status, "content_type": ctype, "body": text}

    raw("unknown_origin", 0, [], _note(tree, 4, key, origin + "-unknown"))
    raw("untrusted_key", 0, [], _note(tree, 4, stranger, origin))
    raw("old_above_size", 9, [], _note(tree, 4, key, origin))
    raw("malformed", 0, [], "not a checkpoint\n")

    with WitnessClient(url, witness_vkey) as client:  # verifies the cosignature it gets
        line = client.submit(_note(tree, 10, key, origin), tree.consistency_proof)
        out["first"] = {"status": 200, "cosignature": line}
    raw("stale_old", 0, [], _note(tree, 12, key, origin))
    raw("fork_same_size", 10, [], _note(fork, 10, key, origin))
    raw("bad_proof", 10, fork.consistency_proof(10, 12), _note(tree, 12, key, origin))
    raw("truncation", 10, [], _note(tree, 8, key, origin))
    with WitnessClient(url, witness_vkey) as client:  # starts at 0, re-proves from a 409
        client.submit(_note(tree, 12, key, origin), tree.consistency_proof)
        out["grown"] = {"status": 200, "held_before": 10}

    # 20 concurrent clients, each from size 0, each re-proving from the sizes 409 names
    results: dict[int, str] = {}

    def submit(size: int) -> None:
        with WitnessClient(url, witness_vkey, max_conflicts=100) as client:
            try:
                client.submit(_note(tree, size, key, origin), tree.consistency_proof)
                results[size] = "cosigned"
            except WitnessAhead:
                results[size] = "overtaken"
            except FeederError as exc:
                results[size] = f"error: {exc}"

    threads = [threading.Thread(target=submit, args=(s,)) for s in range(13, 33)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["concurrent"] = {str(s): results.get(s, "lost") for s in range(13, 33)}
    raw("held_after", 0, [], _note(tree, 0, key, origin))
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "vkey":
        public = _key(argv[1]).public_key()
        print(format_vkey(vkey_from_ed25519(argv[2], public)))
        return 0
    if len(argv) == 5 and argv[0] == "drive":
        print(json.dumps(drive(*argv[1:])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
