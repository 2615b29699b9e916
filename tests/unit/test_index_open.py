"""Opening the id index costs the same whatever it holds (ledger/storage/index.py): SQLite's
whole-file check runs only when the file may not be as its writer left it (not closed
cleanly, changed from outside); an index closed cleanly has its header checked alone. An
unreadable index is still found, moved aside and rebuilt from the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ledger import Ledger
from ledger.storage.index import Index
from ledger.storage.layout import DataDir
from tests.conftest import usage
from tests.support.paths import REPO


def _index_with_rows(folder: Path, n: int = 2000) -> DataDir:
    """An index with ``n`` ids, closed cleanly."""
    layout = DataDir(folder)
    index = Index(layout)
    index.begin()
    index.add_ids("t", [(f"id-{i}", i, None, i, 0, "client", None, None) for i in range(n)])
    index.commit(durable=True)
    index.close()
    return layout


def test_a_cleanly_closed_index_is_reopened_with_its_header_checked_alone(
        tmp_path: Path) -> None:
    """The clean close leaves a record of the file; the next open checks the header
    only, removes the record while the index is open, and finds every row."""
    layout = _index_with_rows(tmp_path)
    assert layout.index_closed.exists()
    index = Index(layout)
    try:
        assert not index.checked_whole
        assert not layout.index_closed.exists()  # a crash from here leaves no record
        assert len(index.lookup("t", [f"id-{i}" for i in range(2000)])) == 2000
    finally:
        index.close()
    assert layout.index_closed.exists()


def test_an_index_not_closed_cleanly_is_checked_whole(tmp_path: Path) -> None:
    """A writer that dies with the index open leaves no record: the next open runs
    SQLite's whole-file check (and keeps what was committed)."""
    layout = _index_with_rows(tmp_path)
    subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from ledger.storage.index import Index\n"
         "from ledger.storage.layout import DataDir\n"
         "index = Index(DataDir(sys.argv[1]))\n"
         "index.begin(); index.add_ids('t', [('late', 9999, None, 1, 0, 'client', None, None)])\n"
         "index.commit(durable=True)\n"
         "os._exit(0)\n", str(tmp_path)], check=True, cwd=REPO, timeout=60)
    assert not layout.index_closed.exists()
    index = Index(layout)
    try:
        assert index.checked_whole
        assert set(index.lookup("t", ["id-0", "late"])) == {"id-0", "late"}
    finally:
        index.close()


def test_an_index_changed_since_its_clean_close_is_checked_whole(tmp_path: Path) -> None:
    """The record names the file's size, time and inode: a file rewritten, touched or
    replaced since is checked whole."""
    layout = _index_with_rows(tmp_path)
    os.utime(layout.index)  # same bytes, another time
    index = Index(layout)
    assert index.checked_whole
    index.close()
    replaced = tmp_path / "copy.sqlite"
    replaced.write_bytes(layout.index.read_bytes())
    os.replace(replaced, layout.index)  # same bytes and size, another inode
    index = Index(layout)
    assert index.checked_whole
    index.close()


def test_a_header_that_does_not_give_the_file_size_is_checked_whole(tmp_path: Path) -> None:
    """Even with a matching record, a header whose page count and page size do not give
    the file's size sends the open to the whole-file check."""
    layout = _index_with_rows(tmp_path)
    record = layout.index_closed.read_bytes()
    st = os.stat(layout.index)
    with open(layout.index, "r+b") as fh:  # the page count at offset 28, one page more
        fh.seek(28)
        pages = int.from_bytes(fh.read(4), "big")
        fh.seek(28)
        fh.write((pages + 1).to_bytes(4, "big"))
    os.utime(layout.index, ns=(st.st_atime_ns, st.st_mtime_ns))
    layout.index_closed.write_bytes(record)  # as if the record still matched
    index = Index(layout)
    assert index.checked_whole
    index.close()


def test_an_index_truncated_after_a_clean_close_is_moved_aside_and_rebuilt(
        tmp_path: Path) -> None:
    """Cut in half after the ledger closed it cleanly: found on open, kept aside, and
    the ledger rebuilds it from the log (every id still known)."""
    data = tmp_path / "data"
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage(event_id=f"id-{i}") for i in range(3000)], tenant="a")
    unit = DataDir(data).project("a")
    assert unit.index_closed.exists()
    os.truncate(unit.index, unit.index.stat().st_size // 2)
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        assert led.unit("a").index.checked_whole
        again = led.append(usage(event_id="id-2999"), tenant="a")
        assert again.created is False and again.seq == 2999
    assert len(list(unit.base.glob("index.corrupt-*.sqlite"))) == 1


def test_a_ledger_reopened_after_a_clean_close_checks_no_index_whole(tmp_path: Path) -> None:
    """``Ledger(path)`` over a directory closed cleanly: no project's index is scanned."""
    data = tmp_path / "data"
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        for project in ("a", "b"):
            led.append_many([usage(event_id=f"{project}-{i}") for i in range(100)],
                            tenant=project)
    with Ledger(data, pricer=None, checkpoint_interval=None) as led:
        assert [led.unit(p).index.checked_whole for p in ("a", "b")] == [False, False]
