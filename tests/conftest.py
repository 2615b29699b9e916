"""Shared fixtures: temporary ledgers, realistic events, a real server and its clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger

# LiteLLM (tests/integration/test_litellm.py, and any test importing every module) reads its
# packaged cost map instead of fetching one at import: the suite never uses the network.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"


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


# A real ``llmring serve`` process per test module that asks for one, and clients of it:
# projects "alpha" and "beta" (each with its own API key) and no key at all.
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support import serverproc

    yield from serverproc.running(tmp_path_factory.mktemp("server"))


def _client(server: Any, project: str | None) -> Any:
    import httpx

    headers = server.headers(project) if project else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def alpha(server: Any) -> Iterator[Any]:
    with _client(server, "alpha") as c:
        yield c


@pytest.fixture(scope="module")
def beta(server: Any) -> Iterator[Any]:
    with _client(server, "beta") as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(server: Any) -> Iterator[Any]:
    with _client(server, None) as c:
        yield c


@pytest.fixture(params=["native", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C loops of ``ledger.model._native`` and with the pure-Python ones."""
    from ledger.model import batch

    if request.param == "python":
        monkeypatch.setattr(batch, "_native", None)
    elif batch._native is None:
        pytest.skip("ledger.model._native is not built (no C compiler at install)")
    return request.param
