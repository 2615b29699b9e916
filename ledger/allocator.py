"""The C allocator's settings for a process that writes a ledger.

A batch append allocates tens of thousands of short byte strings (canonical bytes,
journal frames) that are all freed together once the batch is durable. With glibc's
defaults the freed top of the heap goes back to the kernel at once and the next batch
faults every page in again, which doubled the cost of encoding a batch. ``tune()`` raises
glibc's trim threshold and top pad (``mallopt``) so that memory is kept for reuse; it
does nothing on other C libraries, and nothing after the first call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
TRIM_THRESHOLD = 256 * 1024 * 1024  # freed heap kept before it is returned to the kernel
TOP_PAD = 64 * 1024 * 1024  # extra heap requested whenever it grows

_done = False


def tune() -> bool:
    """Apply the settings once per process; True if glibc accepted them."""
    global _done
    if _done:
        return True
    _done = True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(M_TOP_PAD, TOP_PAD))
