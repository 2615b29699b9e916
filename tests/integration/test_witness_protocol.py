"""`llmring witness serve` speaks c2sp.org/tlog-witness over real HTTP to any log it is
configured with (here a log that is not a ledger: its own origin and Ed25519 key):
every status code of the spec, 409 answers carrying the held size as
`text/x.tlog.size`, forks and truncations refused, and 20 concurrent submissions that
never roll the held size back."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.tlog.cosignature import parse_cosigner_vkey
from ledger.tlog.merkle import MemoryTree, consistency_proof, leaf_hash
from ledger.tlog.signing import SigningKey
from ledger.tlog.witnessing import add_checkpoint_body, cosignatures_in
from tests.support import witnessproc

ORIGIN = "example.com/behind-the-sofa"
LOG_KEY = SigningKey.from_seed(bytes([7]) * 32, ORIGIN)
STRANGER = SigningKey.from_seed(bytes([8]) * 32, ORIGIN)  # same name, another key
TREE = MemoryTree([leaf_hash(b"entry %d" % i) for i in range(64)])
FORK = MemoryTree([leaf_hash(b"other %d" % i) for i in range(64)])


def _note(size: int, tree: MemoryTree = TREE, key: SigningKey = LOG_KEY,
          origin: str = ORIGIN) -> str:
    root = tree.subtree_hash(0, size) if size else MemoryTree([]).root()
    return sign_checkpoint(Checkpoint(origin, size, root), [key]).note


def _body(old: int, size: int, tree: MemoryTree = TREE, **kw: object) -> bytes:
    proof = consistency_proof(TREE, old, size) if 0 < old < size else []
    return add_checkpoint_body(old, proof, _note(size, tree, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[witnessproc.WitnessProcess]:
    tmp = tmp_path_factory.mktemp("witness")
    keys = tmp / "log.vkey"
    keys.write_text(LOG_KEY.info.vkey() + "\n")
    proc = witnessproc.start(tmp / "w", "witness.example/w1", {ORIGIN: keys})
    try:
        yield proc
    finally:
        proc.stop()


def _post(witness: witnessproc.WitnessProcess, body: bytes) -> httpx.Response:
    return httpx.post(witness.url + "/add-checkpoint", content=body, timeout=30)


def _held(r: httpx.Response) -> int:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "text/x.tlog.size"
    assert r.text.endswith("\n")
    return int(r.text)


def _current(witness: witnessproc.WitnessProcess) -> int:
    """The size the witness holds (a 409 names it; 200 only while it holds nothing)."""
    r = _post(witness, _body(0, 0))
    return 0 if r.status_code == 200 else _held(r)


def test_every_status_code_of_the_spec(witness: witnessproc.WitnessProcess) -> None:
    """404 unknown origin, 403 no trusted signature, 400 malformed or old > size, 200
    with a cosignature that verifies, 409 + held size when old is stale or the same size
    has another root (a fork), 422 a proof that does not verify; a refused request
    changes nothing."""
    assert _post(witness, _body(0, 3, origin="example.com/unknown")).status_code == 404
    assert _post(witness, _body(0, 3, key=STRANGER)).status_code == 403
    assert _post(witness, b"old 0\n" + _note(3).encode()).status_code == 400  # no blank
    assert _post(witness, b"old 01\n\n" + _note(3).encode()).status_code == 400
    assert _post(witness, b"old 0\nnot-base64!\n\n" + _note(3).encode()).status_code == 400
    assert _post(witness, _body(5, 3)).status_code == 400  # old size above the size

    first = _post(witness, _body(0, 8))
    assert first.status_code == 200, first.text
    key = parse_cosigner_vkey(witness.vkey)
    body = _note(8).split("\n\n", 1)[0] + "\n"
    assert [s.name for s in cosignatures_in(first.text, body, key)] == ["witness.example/w1"]

    assert _held(_post(witness, _body(0, 12))) == 8  # stale old size: re-prove from 8
    assert _held(_post(witness, _body(8, 8, tree=FORK))) == 8  # fork at the same size
    bad = add_checkpoint_body(8, consistency_proof(FORK, 8, 12), _note(12))
    assert _post(witness, bad).status_code == 422  # a proof from another tree
    assert _post(witness, _body(8, 12, tree=FORK)).status_code == 422  # a forked root
    assert _post(witness, _body(8, 5)).status_code == 400  # truncation: old > size
    assert _held(_post(witness, _body(4, 5))) == 8  # truncation from a smaller old size

    again = _post(witness, _body(8, 8))  # the same checkpoint again is cosigned afresh
    assert again.status_code == 200
    grown = _post(witness, _body(8, 12))
    assert grown.status_code == 200, grown.text
    assert _current(witness) == 12
    assert httpx.get(witness.url + "/add-checkpoint").status_code == 405
    assert httpx.post(witness.url + "/elsewhere", content=b"").status_code == 404


def test_concurrent_submissions_never_roll_back(witness: witnessproc.WitnessProcess
                                                ) -> None:
    """20 clients submit 20 different sizes at once, each re-proving from the size a 409
    answer names (as a log does): the witness ends at the largest size, and every 409
    it gave named a size at least as large as any it had cosigned before."""
    start = _current(witness)
    sizes = list(range(start + 1, start + 21))
    assert sizes[-1] <= TREE.size

    def submit(size: int) -> list[tuple[int, int]]:
        seen, old = [], start
        with httpx.Client(timeout=60) as c:
            for _ in range(50):
                if old > size:
                    return seen  # the witness is past this size: nothing to do
                r = c.post(witness.url + "/add-checkpoint", content=_body(old, size))
                if r.status_code == 200:
                    seen.append((200, size))
                    return seen
                old = _held(r)
                seen.append((409, old))
        raise AssertionError(f"size {size} neither cosigned nor overtaken")

    with ThreadPoolExecutor(20) as pool:
        results = [x for xs in pool.map(submit, sizes) for x in xs]
    assert results.count((200, sizes[-1])) == 1
    assert _current(witness) == sizes[-1]
    assert all(held >= start for code, held in results if code == 409)


def test_a_body_proof_line_must_be_a_hash(witness: witnessproc.WitnessProcess) -> None:
    """A proof line of the wrong length is malformed (400), not a failed proof."""
    short = base64.b64encode(b"x" * 31).decode()
    body = f"old 8\n{short}\n\n".encode() + _note(12).encode()
    assert _post(witness, body).status_code == 400
