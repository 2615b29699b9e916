"""The server's allocator settings (``ledger.server.allocator``): after ``tune`` Arrow's
buffers come from malloc (whose large blocks go back to the kernel when freed), and
``release`` gives malloc's free pages back, so freed batch memory leaves the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import ctypes.util, sys
import pyarrow as pa
from ledger.server import allocator

allocator.release()  # before tune: nothing to call, no error
glibc = "libc.so" in (ctypes.util.find_library("c") or "")
assert allocator.tune() is glibc
if glibc:
    assert pa.default_memory_pool().backend_name == "system", pa.default_memory_pool()

def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

base = rss()
keep, junk = [], []
for i in range(200_000):  # small blocks, every other one kept: a fragmented heap
    (keep if i % 50 == 0 else junk).append(bytearray(600))
del junk
before = rss()
allocator.release()
after = rss()
print(base, before, after)
if glibc:
    assert before - after > 40 * 2**20, (base, before, after)
"""


def test_tune_makes_arrow_use_malloc_and_release_returns_free_pages():
    """In a fresh process (the settings are the process's): Arrow's default pool is the
    system allocator after ``tune``, and ``release`` returns most of ~110 MiB of small
    freed blocks that sit between kept ones."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
