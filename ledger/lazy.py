"""Modules imported on their first use instead of at import time.

A server that has started and not been used yet should not hold what only some requests
need: ``pyarrow.compute`` (its kernels registered: ~8 MiB), ``pyarrow.parquet`` and
``pyarrow.fs`` (the S3, GCS and Azure file systems: ~4 MiB) are first needed by a read,
a seal or a segment, not to open a fresh directory and answer ``/health``.
``lazy("pyarrow.compute")`` stands for the module: its first attribute read imports it
(once; the import lock makes concurrent first uses safe) and every name read is kept on
the stand-in, so a later ``pc.equal`` costs what a module attribute costs.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module by name, imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # copy, pickle and inspect probing the stand-in
            raise AttributeError(attribute)
        value = getattr(importlib.import_module(self._lazy_name), attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<module {self._lazy_name!r}, imported on first use>"


def lazy(name: str) -> Any:
    """The stand-in of module ``name`` (module docstring); typed ``Any`` for its users,
    which import the real module under ``TYPE_CHECKING`` for their annotations."""
    return LazyModule(name)


__all__ = ["LazyModule", "lazy"]
