"""One object names every path of a data directory (``DataDir``), and one ``Notary`` (key
ring, checkpoint store, cosignature store) serves an open directory: the files a ledger
writes are where the layout says, and stores keep no state shared between instances."""

from __future__ import annotations

from pathlib import Path

from ledger import Ledger
from ledger.receipts.issuance import Receipts
from ledger.storage.layout import DataDir
from ledger.tlog.checkpoint import CheckpointStore
from ledger.tlog.signing import KeyRing
from tests.conftest import usage


def test_the_layout_names_every_file_of_a_directory(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    assert d.root == tmp_path
    assert (d.lock, d.config, d.manifest, d.journal, d.index) == (
        tmp_path / "LOCK", tmp_path / "config.json", tmp_path / "manifest.jsonl",
        tmp_path / "journal", tmp_path / "index.sqlite")
    assert (d.keys, d.keys_file, d.checkpoints, d.cosignatures, d.api_keys, d.content) == (
        tmp_path / "keys", tmp_path / "keys" / "keys.json", tmp_path / "checkpoints",
        tmp_path / "cosignatures", tmp_path / "api-keys.json", tmp_path / "content")
    assert d.journal_file(12) == tmp_path / "journal" / "00000012.wal"  # the old layout's
    p = d.project("acme")
    base = tmp_path / "projects" / "acme"
    assert (p.lock, p.manifest, p.journal, p.index, p.journal_file(12)) == (
        base / "LOCK", base / "manifest.jsonl", base / "journal", base / "index.sqlite",
        base / "journal" / "00000012.wal")
    assert (p.config, p.keys, p.checkpoints) == (d.config, d.keys, d.checkpoints)  # shared
    assert d.tree("acme") == p.tree("acme") == base / "tree"
    assert d.receipt_tree("acme", "r1") == base / "rtree" / "r1.bin"
    assert p.segment_folders() == [tmp_path / k / "tenant=acme"
                                   for k in ("events", "pairs", "receipts", "membership")]
    old = d.legacy()
    assert old.tree("acme") == tmp_path / "tree" / "tenant=acme"
    assert old.receipt_tree("acme", "r1") == tmp_path / "rtree" / "tenant=acme" / "r1.bin"
    assert d.content_file("acme", "ab" * 32) == (
        tmp_path / "content" / "tenant=acme" / "ab" / f"{'ab' * 32}.json")
    assert DataDir.partition("events", "acme", "2025-06-01") == (
        "events/tenant=acme/date=2025-06-01")
    assert [DataDir.partition(k, "acme") for k in ("pairs", "receipts", "membership")] == [
        "pairs/tenant=acme", "receipts/tenant=acme", "membership/tenant=acme"]
    assert not d.holds_ledger()


def test_a_ledger_writes_where_the_layout_says(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None) as led:
        led.append_many([usage() for _ in range(3)], tenant="acme")
        led.checkpoint("acme")
        d = led.layout
    assert d == DataDir(ledger_dir) and d.holds_ledger() and not d.holds_legacy()
    p = d.project("acme")
    assert d.project_names() == ["acme"]
    for path in (d.lock, d.config, p.lock, p.manifest, p.index, d.keys_file, d.tree("acme")):
        assert path.exists(), path
    assert list(d.checkpoints.glob("*.jsonl"))
    assert list((ledger_dir / DataDir.partition("events", "acme", "x")).parent.glob(
        "date=*/seg-*.parquet"))


def test_an_open_directory_has_one_key_ring_and_one_checkpoint_store(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None) as led:
        led.append(usage(), tenant="acme")
        notary = led.notary
        assert led.notary is notary
        assert isinstance(notary.keyring, KeyRing)
        assert isinstance(notary.checkpoints, CheckpointStore)
        receipts = Receipts(led)
        assert receipts.keyring is notary.keyring
        assert receipts.checkpoints is notary.checkpoints
        signed = led.checkpoint("acme")
        assert notary.checkpoints.at_size(signed.checkpoint.origin, 1) == signed


def test_checkpoint_stores_share_no_state(tmp_path: Path) -> None:
    """Two stores of the same folder each keep their own index of sizes."""
    ring = KeyRing(tmp_path / "keys", "ledger.example")
    one, two = CheckpointStore(tmp_path / "cp"), CheckpointStore(tmp_path / "cp")
    signed = one.issue("ledger.example/a", 1, b"\x01" * 32, ring)
    assert one.at_size("ledger.example/a", 1) == signed
    assert two._size_indexes == {}
    assert two.at_size("ledger.example/a", 1) == signed
    assert one._size_indexes is not two._size_indexes
