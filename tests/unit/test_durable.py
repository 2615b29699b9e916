"""Files and folders made under a data directory have exact private modes whatever the
umask (``ledger.storage.durable``): files 0600, folders 0700, the id index's SQLite
side files too; ``tighten`` makes an older directory so without following links."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.storage.durable import (
    append_line,
    is_private,
    open_private,
    private_dir,
    tighten,
    write_atomic,
)
from ledger.storage.index import Index
from ledger.storage.layout import DataDir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o277])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """A umask that would open everything, the usual one, and one that would leave files
    unwritable: none of them decides a mode."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_every_way_of_making_a_file_or_folder_gives_private_modes(tmp_path: Path,
                                                                   umask: int) -> None:
    folder = private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(folder) == 0o700
    os.close(open_private(folder / "opened", os.O_WRONLY))
    write_atomic(folder / "replaced", b"x")
    write_atomic(folder / "derived", b"x", sync=False)
    append_line(folder / "lines", b"x\n")
    index = Index(DataDir(folder))
    index.begin()
    index.set_head("h")
    index.commit()
    files = ["opened", "replaced", "derived", "lines", "index.sqlite", "index.sqlite-wal",
             "index.sqlite-shm"]
    assert {name: mode(folder / name) for name in files} == dict.fromkeys(files, 0o600)
    index.close()


def test_an_open_file_left_by_an_older_version_is_made_private_when_opened(
        tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)
    os.close(open_private(path, os.O_WRONLY))
    assert mode(path) == 0o600


def test_tighten_makes_a_directory_private_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the ledger's")
    outside.chmod(0o644)
    root = tmp_path / "data"
    (root / "events" / "tenant=a").mkdir(parents=True)
    (root / "events" / "tenant=a" / "seg.parquet").write_bytes(b"x")
    (root / "link").symlink_to(outside)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert not is_private(root)
    assert tighten(root) == 4
    assert is_private(root) and mode(root / "events") == 0o700
    assert mode(root / "events" / "tenant=a" / "seg.parquet") == 0o600
    assert mode(outside) == 0o644
    assert tighten(root) == 0
