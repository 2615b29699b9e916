"""The C allocator of a server process, tuned for a long-lived server: glibc's malloc
keeps the memory of freed large blocks (a parsed batch, a query's result) for reuse,
raising its mmap threshold as such blocks come and go, so a server's RSS grows to its
largest request and stays there. Here large blocks always come from (and go back to) the
kernel, and a process has few malloc arenas. A no-op where the C library is not glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

_log = logging.getLogger("ledger.server")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
LARGE = 256 * 1024  # blocks this large are mapped and unmapped, not kept
ARENAS = 2


def tune() -> bool:
    """Set glibc's malloc options for a server (module docstring); False where they
    cannot be set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, LARGE), (M_TRIM_THRESHOLD, LARGE), (M_ARENA_MAX, ARENAS)))
    if not done:  # pragma: no cover - a C library that refuses them
        _log.debug("malloc options not set")
    return done


__all__ = ["tune"]
