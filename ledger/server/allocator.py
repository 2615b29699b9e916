"""The allocators of a server process, tuned for a long-lived server: glibc's malloc
keeps the memory of freed large blocks (a parsed batch, a query's result) for reuse,
raising its mmap threshold as such blocks come and go, so a server's RSS grows to its
largest request and stays there. Here large blocks always come from (and go back to) the
kernel, a process has few malloc arenas, Arrow's buffers come from the same malloc
(pyarrow's default pool, mimalloc, keeps freed segments: ~25 MiB more after 100,000
batch-posted events), and ``release`` gives the free pages inside malloc's heaps back
after a large request (the parsed JSON and prepared columns of a batch leave ~20 MiB of
them between the blocks that stay). A no-op where the C library is not glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import pyarrow as pa

_log = logging.getLogger("ledger.server")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
LARGE = 256 * 1024  # blocks this large are mapped and unmapped, not kept
ARENAS = 2
RELEASE_AFTER = 1024 * 1024  # a request body this large is followed by ``release``

_trim: Callable[[int], int] | None = None


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:  # pragma: no cover - a C library that cannot be loaded
        return None


def tune() -> bool:
    """Set glibc's malloc options for a server and make it Arrow's pool (module
    docstring); False where they cannot be set."""
    global _trim
    libc = _libc()
    try:
        mallopt = libc.mallopt if libc is not None else None
        trim = libc.malloc_trim if libc is not None else None
    except AttributeError:
        return False
    if mallopt is None or trim is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    done = all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, LARGE), (M_TRIM_THRESHOLD, LARGE), (M_ARENA_MAX, ARENAS)))
    if not done:  # pragma: no cover - a C library that refuses them
        _log.debug("malloc options not set")
        return False
    pa.set_memory_pool(pa.system_memory_pool())
    _trim = trim
    return True


def release() -> None:
    """Give malloc's free pages back to the kernel (``malloc_trim``; a few ms for a heap
    of 100 MiB); nothing before ``tune``."""
    if _trim is not None:
        _trim(0)


__all__ = ["RELEASE_AFTER", "release", "tune"]
