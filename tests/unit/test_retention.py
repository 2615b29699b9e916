"""Retention: old conversation content is deleted, events keep their content_sha256, and
every receipt, proof and the audit still verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import cli
from ledger.core.audit import verify_directory
from ledger.core.retention import RetentionError, parse_age, prune_content
from ledger.receipts.issuance import Receipts
from ledger.receipts.verification import verify_bundle
from ledger.storage.content import ContentStore
from ledger.storage.layout import DataDir
from tests.conftest import usage

NOW = datetime.now(UTC)


def _ts(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def _conversation(led: Ledger, store: ContentStore, event_id: str, text: str,
                  days_ago: int) -> str:
    digest = store.put("a", [{"role": "user", "content": text}], {"content": "ok"})
    led.append(usage(event_id=event_id, kind="conversation", content_sha256=digest,
                     ts=_ts(days_ago)), tenant="a")
    return digest


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "data"
    store = ContentStore(DataDir(path))
    with Ledger(path, pricer=None) as led:
        digests = {
            "old": _conversation(led, store, "old", "an old question", 120),
            "shared": _conversation(led, store, "shared-old", "asked twice", 100),
            "new": _conversation(led, store, "new", "a recent question", 2),
        }
        _conversation(led, store, "shared-new", "asked twice", 1)
        Receipts(led).generate("a", since_last_receipt=True)
    return path, digests


def test_content_older_than_the_age_is_deleted_and_newer_is_kept(data) -> None:
    path, digests = data
    with Ledger(path, pricer=None) as led:
        result = prune_content(led, "a", timedelta(days=90))
    store = ContentStore(DataDir(path))
    assert (result.files, result.kept_shared) == (1, 1)
    assert store.get("a", digests["old"]) is None
    assert store.get("a", digests["shared"]) is not None  # a newer call names it too
    assert store.get("a", digests["new"]) is not None


def test_receipts_proofs_and_the_audit_still_verify_after_pruning(data) -> None:
    path, digests = data
    with Ledger(path, pricer=None) as led:
        prune_content(led, "a", timedelta(days=90))
        receipts = Receipts(led)
        receipt = receipts.list("a")["receipts"][0]
        bundle = receipts.prove("a", receipt["receipt_id"], "old")
        keys = receipts.public_keys()
        assert led.get("a", "old").content_sha256 == digests["old"]
    assert verify_bundle(bundle, keys).valid
    report = verify_directory(path)
    assert report.ok, [str(p) for p in report.problems]


def test_a_dry_run_deletes_nothing(data) -> None:
    path, digests = data
    with Ledger(path, pricer=None) as led:
        result = prune_content(led, "a", timedelta(days=90), dry_run=True)
    assert result.files == 1 and result.dry_run
    assert ContentStore(DataDir(path)).get("a", digests["old"]) is not None


def test_pruning_twice_deletes_nothing_more(data) -> None:
    path, _ = data
    with Ledger(path, pricer=None) as led:
        prune_content(led, "a", timedelta(days=90))
        assert prune_content(led, "a", timedelta(days=90)).files == 0


@pytest.mark.parametrize(("text", "expected"), [("90d", timedelta(days=90)),
                                                ("12h", timedelta(hours=12)),
                                                ("2w", timedelta(weeks=2))])
def test_ages_are_read_with_their_unit(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["90", "0d", "-3d", "ninety days", "3y"])
def test_an_unreadable_age_is_refused(text: str) -> None:
    with pytest.raises(RetentionError, match="90d"):
        parse_age(text)


def test_cli_prune_content_json_and_a_bad_age(data) -> None:
    path, _ = data
    runner = CliRunner()
    result = runner.invoke(cli, ["--data", str(path), "--project", "a", "ledger",
                                 "prune-content", "--older-than", "90d", "--json"])
    assert result.exit_code == 0, result.output
    assert '"files_deleted": 1' in result.output
    bad = runner.invoke(cli, ["--data", str(path), "--project", "a", "ledger",
                              "prune-content", "--older-than", "soon"])
    assert bad.exit_code == 2 and "--older-than" in bad.output
