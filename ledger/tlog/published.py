"""What a project's log publishes as c2sp.org/tlog-tiles resources: the tile paths
(``<L>/<N>[.p/<W>]``, ``entries/<N>[.p/<W>]``), which tiles a signed checkpoint makes
available, the hash tiles themselves (byte slices of the stored ``level-L.bin`` files of
``ledger.tlog.tiles``, never recomputed) and the entry-bundle encoding.

Only what the latest signed checkpoint covers is published: a client verifies every tile
against a checkpoint, so a tile past it would be unverifiable (and could reveal entries
no checkpoint commits to yet). Reads open the level file, ``pread`` one range and close
it: the range is immutable once a checkpoint covers it, so readers take no lock and never
wait for writers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import EntryTooLargeError, NotFoundError
from ledger.model.tenant import is_name
from ledger.tlog.checkpoint import SignedCheckpoint
from ledger.tlog.merkle import HASH_SIZE
from ledger.tlog.notary import Notary
from ledger.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, level_file

MAX_LEVEL = 63  # C2SP tlog-tiles: <L> is 0..63
MAX_BUNDLE_ENTRY = 0xFFFF  # an entry bundle prefixes each entry with a big-endian uint16

# <N>: zero-padded 3-digit elements, all but the last prefixed with "x".
_INDEX_RE = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}")
_WIDTH_RE = re.compile(r"[1-9][0-9]{0,2}")
_LEVEL_RE = re.compile(r"0|[1-9][0-9]?")


@dataclass(frozen=True)
class TileRef:
    """One tile: ``level`` (None for an entry bundle), ``index`` N and ``width`` (256
    for a full tile, 1..255 for a partial one)."""

    level: int | None
    index: int
    width: int

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    def first(self) -> int:
        """The index, in its level, of the tile's first hash (or entry)."""
        return self.index * TILE_WIDTH

    def covers(self, size: int) -> bool:
        """True when every hash of the tile exists in a tree of ``size`` leaves: its last
        hash spans leaves up to (N·256 + W)·256^L."""
        level = self.level or 0
        return (self.first() + self.width) << (TILE_HEIGHT * level) <= size

    def path(self) -> str:
        """The tile's path below ``<prefix>/tile/``."""
        head = "entries" if self.level is None else str(self.level)
        tail = "" if self.full else f".p/{self.width}"
        return f"{head}/{encode_index(self.index)}{tail}"


def encode_index(index: int) -> str:
    """C2SP tlog-tiles ``<N>``: 1234067 → ``x001/x234/067``."""
    if index < 0:
        raise ValueError("a tile index is not negative")
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def _not_found(path: str, why: str) -> NotFoundError:
    return NotFoundError(f"no tile {path!r}: {why}")


def parse_index_and_width(text: str, full_path: str) -> tuple[int, int]:
    """``<N>[.p/<W>]`` → (N, W); a non-canonical encoding (``x01``, ``01``, a leading
    zero group before others, W of 0 or over 255) is no tile (``NotFoundError``)."""
    index_text, sep, width_text = text.partition(".p/")
    if sep:
        if not _WIDTH_RE.fullmatch(width_text) or int(width_text) >= TILE_WIDTH:
            raise _not_found(full_path, "a partial tile's width is 1 to 255, without "
                                        "leading zeros")
        width = int(width_text)
    else:
        width = TILE_WIDTH
    if not _INDEX_RE.fullmatch(index_text):
        raise _not_found(full_path, "the index is written in groups of 3 digits, all but "
                                    "the last prefixed with 'x' (x001/x234/067)")
    groups = index_text.replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":
        raise _not_found(full_path, "the index has a leading zero group")
    return int("".join(groups)), width


def parse_tile_path(level_text: str, rest: str) -> TileRef:
    """A hash tile ``<L>/<N>[.p/<W>]`` (as the route splits it) → ``TileRef``."""
    full_path = f"{level_text}/{rest}"
    if not _LEVEL_RE.fullmatch(level_text) or int(level_text) > MAX_LEVEL:
        raise _not_found(full_path, f"the level is 0 to {MAX_LEVEL}, without leading zeros")
    index, width = parse_index_and_width(rest, full_path)
    return TileRef(int(level_text), index, width)


def parse_bundle_path(rest: str) -> TileRef:
    """An entry bundle ``<N>[.p/<W>]`` (below ``tile/entries/``) → ``TileRef``."""
    index, width = parse_index_and_width(rest, f"entries/{rest}")
    return TileRef(None, index, width)


def check_published(ref: TileRef, size: int) -> None:
    """Refuse (``NotFoundError``) a tile the checkpoint of ``size`` leaves does not cover."""
    if not ref.covers(size):
        raise _not_found(ref.path(), f"the latest signed checkpoint has {size} entries, "
                                     "which do not cover it")


def read_hash_tile(tree_dir: Path, ref: TileRef, size: int) -> bytes:
    """The bytes of hash tile ``ref`` (32-byte hashes concatenated) from the level file
    in ``tree_dir``, provided the checkpoint of ``size`` leaves covers it."""
    assert ref.level is not None
    check_published(ref, size)
    length = ref.width * HASH_SIZE
    try:
        fd = os.open(level_file(tree_dir, ref.level), os.O_RDONLY)
    except FileNotFoundError:
        raise _not_found(ref.path(), "the log's tree has no such level") from None
    try:
        data = os.pread(fd, length, ref.first() * HASH_SIZE)
    finally:
        os.close(fd)
    if len(data) != length:  # the tree files lag a checkpoint only if damaged
        raise OSError(f"{level_file(tree_dir, ref.level)} is shorter than the checkpoint "
                      "it was signed at; run `llmring ledger verify`")
    return data


def encode_bundle(entries: list[bytes], ref: TileRef) -> bytes:
    """An entry bundle: each entry prefixed by its length as a big-endian uint16.
    An entry longer than 65,535 bytes cannot be written (``EntryTooLargeError``)."""
    out = bytearray()
    for n, entry in enumerate(entries):
        if len(entry) > MAX_BUNDLE_ENTRY:
            raise EntryTooLargeError(
                f"entry {ref.first() + n} has {len(entry)} bytes, more than the 65,535 an "
                "entry bundle can hold (c2sp.org/tlog-tiles); read it from the ledger's "
                "API instead (`GET /api/v1/logs/...`)")
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle (the inverse of ``encode_bundle``); ``ValueError``
    on a truncated bundle."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated entry bundle: a length prefix is cut")
        length = int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
        if pos + length > len(data):
            raise ValueError("truncated entry bundle: an entry is cut")
        out.append(data[pos:pos + length])
        pos += length
    return out


class Publisher:
    """The published view of every project's log in one data directory: its latest
    signed checkpoint (cached until the checkpoint file changes) and the tiles it
    covers. Safe to use from any thread."""

    def __init__(self, notary: Notary) -> None:
        self.notary = notary
        self._latest: dict[str, tuple[tuple[int, int, int], SignedCheckpoint]] = {}

    def latest(self, project: str) -> SignedCheckpoint:
        """The latest checkpoint signed for ``project``'s log; ``NotFoundError`` when
        there is none (an unknown project and a log never checkpointed look the same)."""
        if not is_name(project):
            raise NotFoundError(f"no log {project!r}: not a project name")
        origin = self.notary.log_origin(project)
        path = self.notary.checkpoints.path(origin)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFoundError(f"no signed checkpoint of a log {project!r}") from None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._latest.get(project)
        if cached is not None and cached[0] == key:
            return cached[1]
        signed = self.notary.checkpoints.latest(origin)
        if signed is None:
            raise NotFoundError(f"no signed checkpoint of a log {project!r}")
        self._latest[project] = (key, signed)
        return signed

    def checkpoint_note(self, project: str) -> str:
        """The latest checkpoint note of ``project``'s log with every stored witness
        cosignature."""
        return self.notary.cosigned_note(self.latest(project))

    def hash_tile(self, project: str, level: str, index: str) -> bytes:
        """The hash tile ``<level>/<index>`` of ``project``'s log."""
        ref = parse_tile_path(level, index)
        size = self.latest(project).checkpoint.size
        return read_hash_tile(self.notary.layout.tree(project), ref, size)

    def bundle(self, project: str, index: str) -> TileRef:
        """The entry bundle ``entries/<index>`` of ``project``'s log, checked against
        its latest checkpoint (the caller reads the entries)."""
        ref = parse_bundle_path(index)
        check_published(ref, self.latest(project).checkpoint.size)
        return ref


__all__ = ["MAX_LEVEL", "Publisher", "TileRef", "check_published", "decode_bundle", "encode_bundle",
           "encode_index", "parse_bundle_path", "parse_tile_path", "read_hash_tile"]
