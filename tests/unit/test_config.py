"""The data directory's config.json and its ledger origin (ledger.storage.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.storage.config import DEFAULT_ORIGIN, ORIGIN_ENV, ConfigError, ledger_origin


@pytest.fixture(autouse=True)
def no_origin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ORIGIN_ENV, raising=False)


def test_the_default_origin_is_written_on_first_use(tmp_path: Path) -> None:
    assert ledger_origin(tmp_path / "data") == DEFAULT_ORIGIN == "llmring-ledger.local"
    assert json.loads((tmp_path / "data" / "config.json").read_text()) == {
        "origin": DEFAULT_ORIGIN}


def test_the_environment_sets_the_origin_of_a_new_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ORIGIN_ENV, "ledger.example.com")
    assert ledger_origin(tmp_path) == "ledger.example.com"


def test_the_file_decides_once_it_exists(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ledger_origin(tmp_path)
    monkeypatch.setenv(ORIGIN_ENV, "ledger.example.com")
    assert ledger_origin(tmp_path) == DEFAULT_ORIGIN


@pytest.mark.parametrize("origin", ["", "has space", "a+b", "line\nbreak"])
def test_an_invalid_origin_is_refused(tmp_path: Path, origin: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"origin": origin}))
    with pytest.raises(ConfigError, match="invalid ledger origin"):
        ledger_origin(tmp_path)


def test_a_damaged_config_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ledger_origin(tmp_path)
