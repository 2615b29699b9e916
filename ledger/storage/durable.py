"""Durable small-file writes shared by keys, checkpoints and configuration: atomic
replacement (temporary file, fsync, rename, fsync of the directory), exclusive creation
of private files (mode 0600 from the first byte), and durable appends of whole lines."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ledger.storage.journal import fsync_dir


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new
    content, never a mix: write a temporary file, fsync it, rename it over ``path``,
    fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
