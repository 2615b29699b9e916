"""One error root: every project error derives from ``ledger.errors.LedgerError`` with an
HTTP status and a code; the server answers them with one handler; the HTTP and embedded
clients raise the same classes for the same refusals; no server gives
``ServerUnavailableError``; the CLI reports them with an exit code, not a traceback."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import ledger
import projections
from ledger import errors
from ledger.api.apikeys import ApiKeyStore
from ledger.cli.context import CliError, Commands, cli_error
from ledger.client.async_api import EmbeddedClient, LedgerHTTPError, ServerClient
from ledger.errors import (
    ERRORS,
    EventValidationError,
    IdConflictError,
    InvalidRequestError,
    KeyRingError,
    LedgerError,
    NotFoundError,
    ReceiptNotFoundError,
    ReceiptRequestError,
    RequestError,
    ServerUnavailableError,
    TamperEvidence,
    WitnessRefusal,
    error_body,
    error_from_response,
)
from ledger.server.app import ServerConfig, ServerState, create_app
from ledger.server.fastpath import FastPath
from tests.support.serverproc import free_port

STATUSES = {400, 401, 402, 404, 405, 408, 409, 413, 415, 421, 422, 500, 503}
CALL = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10,
        "output_tokens": 2, "cost": 0.001}


def project_exception_classes() -> Iterator[type[BaseException]]:
    """Every exception class defined in ``ledger`` and ``projections``."""
    for package in (ledger, projections):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("._native"):
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    yield obj


# -- the hierarchy -----------------------------------------------------------------------
def test_every_project_error_derives_from_the_root_with_a_status_and_a_code() -> None:
    found = set(project_exception_classes())
    # CliError is click's rendering of an error (a message and an exit code), not one.
    assert found - {CliError} <= set(ERRORS)
    assert len(ERRORS) >= 31
    for cls in ERRORS:
        assert issubclass(cls, LedgerError), cls
        assert cls.status in STATUSES, cls
        assert isinstance(cls.code, str) and cls.code, cls
    assert len({cls.code for cls in ERRORS}) == len(ERRORS)


def test_the_old_names_are_the_root_and_its_classes() -> None:
    from ledger.core.facade import LedgerError as facade_root
    from ledger.model.event import IdConflictError as event_conflict
    from ledger.receipts.issuance import ReceiptNotFoundError as issuance_not_found
    from ledger.tlog.consistency import TamperEvidence as consistency_tamper

    assert ledger.LedgerError is facade_root is LedgerHTTPError is LedgerError
    assert event_conflict is IdConflictError
    assert issuance_not_found is ReceiptNotFoundError
    assert consistency_tamper is TamperEvidence


@pytest.mark.parametrize("name", [
    "EventValidationError", "IdConflictError", "TenantError", "ConsistencyFormatError",
    "NoteError", "CheckpointError", "CosignatureError", "QuorumError",
    "SignatureFormatError", "PublicKeyFormatError", "ProofError", "PolicyError",
    "ApiKeyError", "RequestError", "NotFoundError", "ReceiptRequestError",
    "ReceiptNotFoundError", "ContentError", "ConfigError", "RetentionError", "RollupError"])
def test_refusals_are_still_value_errors(name: str) -> None:
    assert issubclass(getattr(errors, name), ValueError)


@pytest.mark.parametrize("name", ["KeyRingError", "WitnessError", "ManifestError",
                                  "JournalError", "JournalDamageError", "LedgerLockedError"])
def test_failures_are_still_runtime_errors(name: str) -> None:
    assert issubclass(getattr(errors, name), RuntimeError)


def test_statuses_of_representative_errors() -> None:
    assert EventValidationError(["model: is required"]).status == 422
    assert IdConflictError("e1").status == 409
    assert NotFoundError("no log").status == ReceiptNotFoundError("x").status == 404
    assert ReceiptRequestError("x").status == RequestError("x").status == 400
    assert KeyRingError("x").status == LedgerError("x").status == 503
    assert ServerUnavailableError("x").status == 503


# -- to a response and back --------------------------------------------------------------
def sample(cls: type[LedgerError]) -> LedgerError:
    if cls is EventValidationError:
        return EventValidationError(["model: is required"], index=3)
    if cls is IdConflictError:
        return IdConflictError("evt_1", ["cost"])
    if cls is WitnessRefusal:
        return WitnessRefusal("does not extend", "held note", "offered note")
    if cls is errors.MisdirectedError:
        return errors.MisdirectedError("alpha", "http://127.0.0.1:8001")
    if cls is errors.ManifestForkError:
        return errors.ManifestForkError(
            "record 4 was written by another process",
            where="s3://ledger/p/projects/alpha/manifest/000000000004.json",
            ours='{"n":4,"op":"seal"}', theirs='{"n":4,"op":"compact"}')
    if cls is errors.JournalDamageError:
        return errors.JournalDamageError("journal/00000001.wal", 120, 4, 9,
                                         "journal/damaged/00000001-0123456789abcdef.wal")
    return cls(f"a {cls.__name__}")


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_an_error_survives_the_round_trip_through_a_response(cls: type[LedgerError]) -> None:
    exc = sample(cls)
    back = error_from_response(exc.status, error_body(exc), request="GET /x")
    assert type(back) is cls
    assert back.status == exc.status and back.request == "GET /x"
    for name in cls.evidence:
        assert getattr(back, name) == getattr(exc, name)
    if exc.status != 503:
        assert back.detail == exc.detail == str(exc)


def test_evidence_travels_in_the_body() -> None:
    body = error_body(EventValidationError(["model: is required"], index=3))
    assert body == {"detail": "event 3: model: is required", "code": "invalid_event",
                    "problems": ["model: is required"], "index": 3}
    back = error_from_response(409, error_body(IdConflictError("evt_1", ["cost"])))
    assert isinstance(back, IdConflictError) and back.event_id == "evt_1"
    assert back.fields == ["cost"]


def test_an_answer_without_a_code_maps_by_its_status() -> None:
    assert type(error_from_response(404, {"detail": "Not Found"})) is NotFoundError
    assert type(error_from_response(422, {"detail": []})) is InvalidRequestError
    assert isinstance(error_from_response(401, "nope"), errors.AuthenticationError)
    other = error_from_response(502, "<html>bad gateway</html>")
    assert type(other) is LedgerError and other.status == 502
    assert other.detail == "<html>bad gateway</html>"
    assert error_from_response(500, None).detail == "HTTP 500"


# -- the server and the embedded client agree --------------------------------------------
def served(data: Path) -> tuple[httpx.AsyncBaseTransport, str, ServerState]:
    state = ServerState(ServerConfig(data))
    app = create_app(ServerConfig(data), state=state)
    app.state.server = state  # the ASGI transport runs no lifespan
    key, _ = ApiKeyStore(data).create("p")
    return httpx.ASGITransport(app=FastPath(app)), key, state


BAD_REQUESTS: list[tuple[str, Any]] = [
    ("invalid event", lambda c: c.log_usage(provider="openai")),
    ("invalid event in a batch", lambda c: c.log_batch([CALL, {"model": "m"}])),
    ("id conflict", lambda c: c.log_usage({**CALL, "event_id": "evt_same", "cost": 9.0})),
    ("unknown log", lambda c: c.get_log("evt_missing")),
    ("unknown receipt", lambda c: c.get_receipt("rcpt_" + "f" * 32)),
    ("no selection", lambda c: c.generate_receipt()),
    ("bad date", lambda c: c.generate_receipt(start_date="2025-13-45",
                                              end_date="2025-12-31")),
    ("bad range", lambda c: c.list_logs(start="2025-10-02", end="2025-10-01")),
    ("bad paging", lambda c: c.list_logs(limit=0)),
]


def refusals(client: Any) -> dict[str, tuple[type, int]]:
    async def main() -> dict[str, tuple[type, int]]:
        out = {}
        await client.log_usage({**CALL, "event_id": "evt_same"})
        for name, call in BAD_REQUESTS:
            try:
                await call(client)
            except LedgerError as exc:
                out[name] = (type(exc), exc.status)
            else:
                out[name] = (type(None), 200)
        await client.aclose()
        return out

    return asyncio.run(main())


def test_the_server_and_the_embedded_client_raise_the_same_errors(tmp_path: Path) -> None:
    transport, key, state = served(tmp_path / "server")
    try:
        remote = refusals(ServerClient("http://ledger", key, transport=transport))
    finally:
        state.close()
    local = refusals(EmbeddedClient(tmp_path / "local", "p"))
    assert remote == local
    assert local["invalid event"] == (EventValidationError, 422)
    assert local["invalid event in a batch"] == (EventValidationError, 422)
    assert local["id conflict"] == (IdConflictError, 409)
    assert local["unknown log"] == (NotFoundError, 404)
    assert local["unknown receipt"] == (ReceiptNotFoundError, 404)
    assert local["no selection"] == local["bad date"] == (ReceiptRequestError, 400)
    assert local["bad range"] == (RequestError, 400)
    assert local["bad paging"] == (InvalidRequestError, 422)


def test_an_invalid_batch_event_names_its_index_on_both_transports(tmp_path: Path) -> None:
    async def index(client: Any) -> Any:
        try:
            await client.log_batch([CALL, CALL, {"model": "m"}])
        except EventValidationError as exc:
            return exc.index
        finally:
            await client.aclose()

    transport, key, state = served(tmp_path / "server")
    try:
        remote = asyncio.run(index(ServerClient("http://ledger", key, transport=transport)))
    finally:
        state.close()
    assert remote == asyncio.run(index(EmbeddedClient(tmp_path / "local", "p"))) == 2


def test_one_handler_answers_with_the_errors_status_and_no_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = ServerState(ServerConfig(tmp_path / "data"))
    key, _ = ApiKeyStore(tmp_path / "data").create("p")
    failures = iter([KeyRingError("the keys directory is unreadable"),
                     ZeroDivisionError("a bug")])

    def failing(*_: Any, **__: Any) -> Any:
        raise next(failures)

    state.service.get_log = failing  # type: ignore[method-assign]
    app = create_app(ServerConfig(tmp_path / "data"), state=state)
    with TestClient(app, raise_server_exceptions=False) as http:
        headers = {"X-API-Key": key}
        unavailable = http.get("/api/v1/logs/x", headers=headers)
        bug = http.get("/api/v1/logs/x", headers=headers)
        missing_key = http.get("/api/v1/logs/x")
    assert unavailable.status_code == 503
    assert unavailable.json() == {
        "detail": "the ledger cannot serve this now: the keys directory is unreadable",
        "code": "keyring_error"}
    assert bug.status_code == 500 and "Traceback" not in bug.text
    assert bug.json()["detail"] == "internal error; the server log has the details"
    assert "ZeroDivisionError" in caplog.text
    assert missing_key.status_code == 401 and missing_key.json()["code"] == "unauthorized"


def test_a_bug_is_answered_without_the_exception_escaping_the_app(tmp_path: Path) -> None:
    """An unhandled exception ends with the 500 answer: it does not propagate out of the
    app (which makes uvicorn drop the connection under the client's next request)."""
    state = ServerState(ServerConfig(tmp_path / "data"))
    key, _ = ApiKeyStore(tmp_path / "data").create("p")

    def failing(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("a bug")

    state.service.get_log = failing  # type: ignore[method-assign]
    app = create_app(ServerConfig(tmp_path / "data"), state=state)
    with TestClient(app, raise_server_exceptions=True) as http:  # an escape would raise
        bug = http.get("/api/v1/logs/x", headers={"X-API-Key": key})
        after = http.get("/health")
    assert bug.status_code == 500
    assert bug.json() == {"detail": "internal error; the server log has the details",
                          "code": "internal_error"}
    assert after.status_code == 200


# -- no server ---------------------------------------------------------------------------
def test_a_closed_port_raises_server_unavailable() -> None:
    async def main() -> None:
        async with ServerClient(f"http://127.0.0.1:{free_port()}", "llr_k",
                                timeout=5) as client:
            await client.list_logs()

    with pytest.raises(ServerUnavailableError, match="cannot reach the server") as caught:
        asyncio.run(main())
    assert caught.value.status == 503
    assert isinstance(caught.value.__cause__, httpx.TransportError)


def test_a_timeout_raises_server_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async def main() -> None:
        async with ServerClient("http://ledger", "llr_k",
                                transport=httpx.MockTransport(handler)) as client:
            await client.list_logs()

    with pytest.raises(ServerUnavailableError, match="timed out"):
        asyncio.run(main())


# -- the CLI -----------------------------------------------------------------------------
@pytest.mark.parametrize(("error", "code"), [
    (NotFoundError("no log 'x' in this project"), 2),
    (errors.LedgerLockedError("in use by pid 1"), 2),
    (ServerUnavailableError("cannot reach the server at http://x"), 2),
    (TamperEvidence("the log does not extend the checkpoint"), 1),
    (errors.ManifestError("the manifest's chain is broken"), 1),
    (errors.JournalError("could not sync"), 1),
])
def test_the_cli_reports_a_project_error_with_an_exit_code(error: LedgerError,
                                                           code: int) -> None:
    @click.group(cls=Commands)
    def group() -> None:
        """A group whose command raises the error."""

    @group.command()
    def fail() -> None:
        raise error

    result = CliRunner().invoke(group, ["fail"])
    assert result.exit_code == code
    assert result.output == f"Error: {error}\n"
    assert not isinstance(result.exception, LedgerError)  # reported, not raised


def test_the_llmring_group_maps_the_root() -> None:
    from ledger.cli.main import cli

    assert isinstance(cli, Commands)


def test_the_cli_says_when_a_server_refused() -> None:
    refused = error_from_response(401, {"detail": "invalid or revoked API key"},
                                  request="GET /api/v1/receipts/")
    message = cli_error(refused)
    assert message.exit_code == 2
    assert message.message == ("the server refused (401): invalid or revoked API key "
                               "(check --api-key / LLMRING_API_KEY)")
