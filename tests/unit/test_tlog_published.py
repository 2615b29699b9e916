"""The c2sp.org/tlog-tiles view of a log (``ledger.tlog.published``): tile paths are read
exactly as the spec writes them, every tile the latest signed checkpoint covers is the
tree's hashes byte for byte (checked against the spec's formula, MTH over leaf ranges,
computed here from scratch), nothing past that checkpoint is served, and entry bundles
are uint16 length-prefixed entries."""

from __future__ import annotations

from hashlib import sha256
from pathlib import Path

import pytest

from ledger.errors import EntryTooLargeError, NotFoundError
from ledger.storage.layout import DataDir
from ledger.tlog.notary import Notary
from ledger.tlog.published import (
    Publisher,
    TileRef,
    decode_bundle,
    encode_bundle,
    encode_index,
    parse_bundle_path,
    parse_tile_path,
)
from ledger.tlog.tiles import TreeStore


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash over leaf hashes, written from the RFC."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def expected_tile(leaves: list[bytes], level: int, index: int, width: int) -> bytes:
    """The spec: hash i of tile (L, N) is MTH(D[(N·256 + i)·256^L : (N·256 + i + 1)·256^L])."""
    span = 256 ** level
    return b"".join(mth(leaves[(index * 256 + i) * span:(index * 256 + i + 1) * span])
                    for i in range(width))


def tiles_of(size: int) -> list[tuple[int, int, int]]:
    """(level, index, width) of every full and partial tile of a tree of ``size``."""
    out = []
    level = 0
    while size >> (8 * level):
        count = size >> (8 * level)  # hashes on this level
        out += [(level, n, 256) for n in range(count // 256)]
        if count % 256:
            out.append((level, count // 256, count % 256))
        level += 1
    return out


def path_of(index: int, width: int) -> str:
    return encode_index(index) + ("" if width == 256 else f".p/{width}")


def make_log(tmp_path: Path, leaves: list[bytes], checkpoint_at: int) -> Publisher:
    layout = DataDir(tmp_path / "data")
    notary = Notary(layout)
    with TreeStore(layout.tree("alpha")) as tree:
        tree.append(leaves)
        notary.checkpoints.issue(notary.log_origin("alpha"), checkpoint_at,
                                 tree.root(checkpoint_at), notary.keyring)
    return Publisher(notary)


@pytest.mark.parametrize("size", [1, 255, 256, 257, 65_536 + 3 * 256 + 5])
def test_every_tile_is_the_trees_hashes(tmp_path: Path, size: int) -> None:
    leaves = [sha256(b"\x00" + i.to_bytes(4, "big")).digest() for i in range(size)]
    published = make_log(tmp_path, leaves, size)
    for level, index, width in tiles_of(size):
        tile = published.hash_tile("alpha", str(level), path_of(index, width))
        assert tile == expected_tile(leaves, level, index, width), (level, index, width)
        if width < 256:  # a full tile exists only once complete
            with pytest.raises(NotFoundError):
                published.hash_tile("alpha", str(level), encode_index(index))
    with pytest.raises(NotFoundError):  # no level above the top
        published.hash_tile("alpha", str(len({t[0] for t in tiles_of(size)})), "000.p/1")


def test_older_partial_widths_are_served_as_prefixes(tmp_path: Path) -> None:
    """A client holding an older checkpoint asks for narrower partial tiles."""
    leaves = [sha256(i.to_bytes(4, "big")).digest() for i in range(300)]
    published = make_log(tmp_path, leaves, 300)
    assert published.hash_tile("alpha", "0", "001.p/7") == b"".join(leaves[256:263])


def test_nothing_past_the_latest_checkpoint_is_served(tmp_path: Path) -> None:
    leaves = [sha256(i.to_bytes(4, "big")).digest() for i in range(600)]
    published = make_log(tmp_path, leaves, 300)  # the tree holds 600, signed at 300
    assert published.latest("alpha").checkpoint.size == 300
    published.hash_tile("alpha", "0", "001.p/44")
    for level, path in (("0", "001.p/45"), ("0", "001"), ("0", "002.p/1"), ("1", "000.p/2")):
        with pytest.raises(NotFoundError, match="do not cover it"):
            published.hash_tile("alpha", level, path)
    with pytest.raises(NotFoundError):
        published.bundle("alpha", "001.p/45")
    assert published.bundle("alpha", "001.p/44") == TileRef(None, 1, 44)


def test_an_unknown_project_and_a_log_never_signed_look_the_same(tmp_path: Path) -> None:
    layout = DataDir(tmp_path / "data")
    notary = Notary(layout)
    with TreeStore(layout.tree("alpha")) as tree:
        tree.append([sha256(b"x").digest()])  # entries, but no checkpoint yet
    published = Publisher(notary)
    for project in ("alpha", "nobody", "..", "a/b"):
        with pytest.raises(NotFoundError):
            published.checkpoint_note(project)
        with pytest.raises(NotFoundError):
            published.hash_tile(project, "0", "000.p/1")


def test_the_checkpoint_note_follows_a_new_checkpoint(tmp_path: Path) -> None:
    leaves = [sha256(i.to_bytes(4, "big")).digest() for i in range(10)]
    published = make_log(tmp_path, leaves, 5)
    assert published.checkpoint_note("alpha").splitlines()[1] == "5"
    notary = published.notary
    with TreeStore(notary.layout.tree("alpha")) as tree:
        notary.checkpoints.issue(notary.log_origin("alpha"), 10, tree.root(10),
                                 notary.keyring)
    assert published.checkpoint_note("alpha").splitlines()[1] == "10"
    assert published.hash_tile("alpha", "0", "000.p/10") == b"".join(leaves)


@pytest.mark.parametrize(("index", "text"), [
    (0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1_234_067, "x001/x234/067"),
    (10**9, "x001/x000/x000/000")])
def test_index_encoding_round_trips(index: int, text: str) -> None:
    assert encode_index(index) == text
    assert parse_tile_path("0", text) == TileRef(0, index, 256)
    assert parse_bundle_path(text + ".p/9") == TileRef(None, index, 9)


@pytest.mark.parametrize(("level", "rest"), [
    ("0", "x01"), ("0", "01"), ("0", "0000"), ("0", "1"), ("0", "x000/001"), ("0", "x1/001"),
    ("0", "001/002"), ("0", "001.p/0"), ("0", "001.p/256"), ("0", "001.p/01"),
    ("0", "001.p/"), ("0", "001.p/1/2"), ("0", "001.p/-1"), ("0", ""), ("0", "x001/"),
    ("01", "000"), ("64", "000"), ("-1", "000"), ("a", "000"), ("", "000"),
    ("0", "０００"), ("0", "000.P/3"), ("0", "000 "), ("0", "+00")])
def test_non_canonical_tile_paths_are_no_tiles(level: str, rest: str) -> None:
    with pytest.raises(NotFoundError):
        parse_tile_path(level, rest)


def test_entry_bundles_are_uint16_length_prefixed() -> None:
    entries = [b"", b"a", b"x" * 300, b"y" * 65_535]
    data = encode_bundle(entries, TileRef(None, 0, 4))
    assert data[:5] == b"\x00\x00\x00\x01a" and data[5:7] == (300).to_bytes(2, "big")
    assert decode_bundle(data) == entries
    with pytest.raises(ValueError):
        decode_bundle(data[:-1])
    with pytest.raises(EntryTooLargeError, match="entry 257 has 65536 bytes"):
        encode_bundle([b"ok", b"z" * 65_536], TileRef(None, 1, 2))
