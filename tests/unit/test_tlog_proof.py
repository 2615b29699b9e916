"""c2sp.org/tlog-proof files (``ledger.tlog.tlog_proof``): ``llmring log inclusion
--format tlog-proof`` writes the spec's text (header, extra, index, one base64 hash a line,
a blank line, the checkpoint verbatim), ``llmring log verify-inclusion`` reads it back and
checks it exactly as the JSON bundle, and a changed entry, path or index is refused."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import cli
from ledger.errors import ConsistencyFormatError
from ledger.tlog.checkpoint import Verifier
from ledger.tlog.consistency import check_inclusion, prove_inclusion
from ledger.tlog.merkle import leaf_hash
from ledger.tlog.tlog_proof import HEADER, from_tlog_proof, to_tlog_proof
from tests.conftest import usage


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "data"
    with Ledger(p, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=f"e{i}") for i in range(6)])
    return p


def test_the_text_follows_the_spec_and_reads_back(path: Path) -> None:
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        bundle = prove_inclusion(led, "default", "e3")
        verifiers = led.notary.keyring.keys()
    text = to_tlog_proof(bundle)
    lines = text.split("\n")
    assert lines[0] == HEADER
    entry = base64.b64decode(lines[1].removeprefix("extra "))
    assert entry == rfc8785.dumps(bundle["event"])
    assert lines[2] == "index 3"
    assert lines[3:3 + len(bundle["audit_path"])] == [
        base64.b64encode(bytes.fromhex(h)).decode() for h in bundle["audit_path"]]
    assert text.endswith("\n\n" + bundle["checkpoint"])
    assert from_tlog_proof(text) == bundle
    cp = check_inclusion(from_tlog_proof(text), [Verifier.from_info(k) for k in verifiers])
    assert cp.size == 6 and leaf_hash(entry) == leaf_hash(rfc8785.dumps(bundle["event"]))


def test_cli_writes_a_tlog_proof_and_verifies_it_offline(path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "e4.tlog-proof"
    made = runner.invoke(cli, ["--data", str(path), "log", "inclusion", "e4", "--format",
                               "tlog-proof", "-o", str(out)])
    assert made.exit_code == 0, made.output
    assert out.read_text().startswith(HEADER + "\nextra ")
    keys = tmp_path / "keys.vkey"
    runner.invoke(cli, ["--data", str(path), "signing-keys", "export", "--format", "vkey",
                        "-o", str(keys)])
    ok = runner.invoke(cli, ["--data", str(tmp_path / "none"), "log", "verify-inclusion",
                             str(out), "--public-key", str(keys)])
    assert ok.exit_code == 0, ok.output
    assert "is entry 4" in ok.output
    lines = out.read_text().split("\n")
    zeros = base64.b64encode(b"\0" * 32).decode()
    for changed in ([*lines[:2], "index 3", *lines[3:]],  # another index
                    [*lines[:3], zeros, *lines[4:]]):  # another path
        out.write_text("\n".join(changed))
        bad = runner.invoke(cli, ["--data", str(path), "log", "verify-inclusion", str(out)])
        assert bad.exit_code == 1 and "INVALID" in bad.output, bad.output


@pytest.mark.parametrize("text", [
    "", "c2sp.org/tlog-proof@v2\nindex 0\n\nx\n1\nAAAA\n",
    HEADER + "\nindex 01\n\n", HEADER + "\nindex 0\nnot base64\n\n",
    HEADER + "\nindex 0\nAAAA\n\n", HEADER + "\nextra !!\nindex 0\n\n",
    HEADER + "\nindex 0\n\norigin\n1\n" + base64.b64encode(b"\0" * 32).decode() + "\n\n",
])
def test_a_malformed_tlog_proof_is_a_format_error(text: str) -> None:
    with pytest.raises(ConsistencyFormatError):
        from_tlog_proof(text)


def test_a_proof_without_the_entry_is_refused_saying_so(path: Path) -> None:
    with Ledger(path, pricer=None, checkpoint_interval=None) as led:
        text = to_tlog_proof(prove_inclusion(led, "default", "e1"))
    lines = text.split("\n")
    with pytest.raises(ConsistencyFormatError, match="no extra line"):
        from_tlog_proof("\n".join([lines[0], *lines[2:]]))
