"""The optional C loops of ``ledger/model/_native.c``.

``NATIVE_MODULE`` is the compiled module when pip built it at install (a C compiler and
the Python headers were there) and the environment does not set ``LLMRING_PURE_PYTHON``,
else None. Each of its functions has a pure-Python counterpart that gives the same
results (in ``ledger.model.batch`` and ``ledger.tlog.merkle``); ``ledger.model.batch``
hands it the event schema (``configure``) when it is imported.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("LLMRING_PURE_PYTHON"):
        return None
    try:
        from ledger.model import _native
    except ImportError:  # not built: the pure-Python loops run instead
        return None
    return _native


NATIVE_MODULE: ModuleType | None = _load()
