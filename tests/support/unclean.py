"""Stopping an open ``Ledger`` as a kill would, for the tests of recovery."""

from __future__ import annotations

import os

from ledger import Ledger


def stop_uncleanly(led: Ledger) -> None:
    """Stop as a kill would: nothing sealed, every project's journal left as it is, the
    locks released."""
    led._stop.set()
    for unit in led.units():
        unit.appender.stop()
        unit.journal.close()
        unit.index.close()
        os.close(unit._lockfd)
    os.close(led._lockfd)
