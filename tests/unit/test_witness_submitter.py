"""The log side of tlog-witness (`ledger.server.witnessing.WitnessSubmitter`) against a
real witness (`Witness.add_checkpoint`, reached through an in-memory HTTP transport):
the first submission starts from size 0; a lost state file is rebuilt from the 409
answer (`text/x.tlog.size`) by re-proving from the size the witness holds; a witness
that refuses is recorded as failing with its answer and retried later."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import cli
from ledger.server.witnessing import SubmissionPolicy, WitnessSubmitter
from ledger.tlog.policy import Policy
from ledger.tlog.signing import KeyRing
from ledger.tlog.witness import Witness
from tests.conftest import usage


def _setup(tmp_path: Path) -> tuple[Ledger, Witness, WitnessSubmitter, list[str]]:
    led = Ledger(tmp_path / "data", pricer=None, checkpoint_interval=None)
    led.append_many([usage(event_id=f"e{i}") for i in range(5)])
    led.checkpoint()
    witness = Witness(tmp_path / "witness", "witness.example/w1")
    origin = led.notary.log_origin("default")
    witness.add_log(origin, KeyRing(led.layout.keys, led.notary.origin).keys())
    policy = Policy((witness.public_key(),), 1, ("W1",), ("http://witness.test/w",))
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url == "http://witness.test/w/add-checkpoint"
        sent.append(request.content.decode().split("\n", 1)[0])
        answer = witness.add_checkpoint(request.content)
        return httpx.Response(answer.status, text=answer.body,
                              headers={"content-type": answer.content_type})

    submitter = WitnessSubmitter(led, policy, SubmissionPolicy(backoff=60))
    submitter._http = httpx.Client(transport=httpx.MockTransport(handler))
    return led, witness, submitter, sent


def test_submissions_follow_the_witness_and_rebuild_lost_state(tmp_path: Path) -> None:
    led, witness, submitter, sent = _setup(tmp_path)
    with led:
        origin = led.notary.log_origin("default")
        submitter.round()
        assert sent == ["old 0"]
        assert submitter.state.record("W1", origin)["size"] == 5
        cosigned = led.notary.latest_cosigned_note("default")
        assert cosigned is not None and "— witness.example/w1 " in cosigned

        submitter.round()  # nothing new: nothing sent
        assert sent == ["old 0"]

        led.layout.witness_state.unlink()  # the ledger forgot; the witness did not
        led.append_many([usage(event_id=f"f{i}") for i in range(3)])
        led.checkpoint()
        submitter.round()
        assert sent == ["old 0", "old 0", "old 5"]  # 409 said 5: re-proved from there
        rec = submitter.state.record("W1", origin)
        assert (rec["size"], rec["last_error"], rec["failures"]) == (8, None, 0)
        assert witness.latest(origin)["size"] == 8
    # what `llmring log witnesses` shows (the policy file is the data directory's)
    led.layout.witness_policy.write_text(
        f"witness W1 {witness.public_key().vkey()} http://witness.test/w\nquorum W1\n")
    out = CliRunner().invoke(cli, ["--data", str(led.layout.root), "log", "witnesses",
                                   "--json"])
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert (status["checkpoint_size"], status["quorum"], status["quorum_met"]) == (
        8, "witness.example/w1", True)
    assert [(w["name"], w["state"], w["cosigned_size"]) for w in status["witnesses"]] == [
        ("W1", "current", 8)]


def test_a_refusing_witness_is_recorded_and_backed_off(tmp_path: Path) -> None:
    led, witness, submitter, sent = _setup(tmp_path)
    with led:
        origin = led.notary.log_origin("default")
        (witness.directory / "logs.json").unlink()  # the witness no longer watches us
        submitter.round()
        rec = submitter.state.record("W1", origin)
        assert rec["failures"] == 1 and rec["last_error"].startswith("404")
        submitter.round()  # backing off (60 s): not sent again
        assert sent == ["old 0"]
        assert led.notary.latest_cosigned_note("default") == led.checkpoint().note
