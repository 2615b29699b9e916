"""How files and folders are created under a data directory, and durable small-file
writes shared by keys, checkpoints and configuration.

Everything under a data directory is private: files are created 0600 and folders 0700
whatever the process umask (``open_private``, ``private_dir``; the mode is set exactly,
not left to the umask), and ``tighten`` makes a directory written before that private
too. The writes: atomic replacement (temporary file, fsync, rename, fsync of the
directory), exclusive creation of a private file, and durable appends of whole lines."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ledger.errors import LedgerError

FILE_MODE = 0o600  # every file under a data directory
DIR_MODE = 0o700  # every folder, the directory itself included


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (or a file's bytes) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Make folder ``path`` and any missing parent, each 0700 (an existing one is left
    as it is); return ``path``."""
    missing = []
    at = Path(path)
    while not at.is_dir():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made by someone else just now
        os.chmod(folder, DIR_MODE)  # the umask may only remove bits; make the mode exact
    return path


def open_private(path: Path | str, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` for a file that is 0600, whatever the umask and
    whatever mode an older version left it with; the descriptor."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_private(root: Path) -> bool:
    """Whether the directory ``root`` is 0700 (as one this version made, or tightened)."""
    return stat.S_IMODE(os.stat(root).st_mode) == DIR_MODE


def tighten(root: Path) -> int:
    """Make every file beneath ``root`` 0600 and every folder 0700, ``root`` itself last
    (so a crash part way leaves it to the next open); symbolic links are not followed.
    Return how many modes changed. ``LedgerError`` if one cannot be changed."""
    changed = 0

    def fix(path: str, mode: int, want: int) -> None:
        nonlocal changed
        if stat.S_IMODE(mode) != want:
            try:
                os.chmod(path, want)
            except OSError as exc:
                raise LedgerError(
                    f"cannot make {path} private ({exc.strerror or exc}); make everything "
                    f"under {root} its owner's alone: chmod -R go= {root}") from None
            changed += 1

    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                fix(path, st.st_mode, FILE_MODE)
        for name in dirs:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                fix(path, st.st_mode, DIR_MODE)
    fix(str(root), os.stat(root).st_mode, DIR_MODE)
    return changed


def write_atomic(path: Path, data: bytes, *, mode: int = FILE_MODE, sync: bool = True
                 ) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new
    content, never a mix: write a temporary file, fsync it, rename it over ``path``,
    fsync the directory (``sync=False``, for derived data: no fsync). The file is
    ``mode`` (0600 unless said), whatever the umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def create_private(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) readable by its owner only (0600), write
    ``data``, fsync the file and its directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only remove bits; make the mode exact
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    fsync_dir(path.parent)


def append_line(path: Path, line: bytes) -> None:
    """Append one line (``line`` must end in a newline) to ``path`` and fsync it. A torn
    last line left by an earlier crash (no final newline) is cut off first."""
    if not line.endswith(b"\n"):
        raise ValueError("append_line: the line must end with a newline")
    created = not path.exists()
    fd = open_private(path, os.O_RDWR)
    try:
        end = os.fstat(fd).st_size
        if end and os.pread(fd, 1, end - 1) != b"\n":
            os.ftruncate(fd, _last_newline_end(fd, end))
            end = os.fstat(fd).st_size
        os.lseek(fd, end, os.SEEK_SET)
        _write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def _last_newline_end(fd: int, end: int, block: int = 4096) -> int:
    """The offset just after the last newline before ``end`` (0 if there is none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - block)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
