"""Shared fixtures: temporary ledgers and realistic events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger


def usage(**overrides: Any) -> dict[str, Any]:
    """A realistic usage event (provider cost given, so no price lookup is needed)."""
    event: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "alias": "fast",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cost": "0.00036",
    }
    event.update(overrides)
    return event


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def ledger(ledger_dir: Path) -> Iterator[Ledger]:
    led = Ledger(ledger_dir, pricer=None)
    yield led
    led.close()
