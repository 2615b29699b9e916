"""The CLI against a server: ``--server URL --api-key KEY`` (or ``LLMRING_SERVER_URL`` /
``LLMRING_API_KEY``) makes the ``receipts`` commands call ``llmring serve`` through
``ledger.client.async_api.ServerClient`` instead of opening the data directory. The API key names
the project; ``--project`` is then ignored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ledger.cli.context import App, CliError, cli_error
from ledger.client.async_api import ServerClient
from ledger.errors import LedgerError


class RemoteReceipts:
    """``ledger.receipts.issuance.Receipts``' methods used by the CLI, over HTTP. The tenant
    argument is ignored: the server takes the project from the API key."""

    def __init__(self, url: str, api_key: str) -> None:
        self.client = ServerClient(url, api_key)

    def _run(self, coro: Any) -> Any:
        try:
            return asyncio.run(coro)
        except LedgerError as exc:
            raise cli_error(exc) from None

    def generate(self, _tenant: str, *, progress: Any = None, **request: Any) -> Any:
        return self._run(self.client.generate_receipt(**request))

    def preview(self, _tenant: str, **request: Any) -> Any:
        return self._run(self.client.preview_receipt(**request))

    def uncertified(self, _tenant: str, limit: int = 100, offset: int = 0) -> Any:
        return self._run(self.client.get_uncertified_logs(limit=limit, offset=offset))

    def uncertified_cost(self, _tenant: str) -> dict[str, Any]:
        try:
            p = self.preview(_tenant, since_last_receipt=True)
        except CliError:
            return {"total_logs": 0, "total_cost": 0.0, "total_cost_nanos": 0,
                    "total_tokens": 0}
        return {k: p[k] for k in ("total_logs", "total_cost", "total_cost_nanos",
                                  "total_tokens")}

    def list(self, _tenant: str, limit: int = 100, offset: int = 0) -> Any:
        return self._run(self.client.list_receipts(limit=limit, offset=offset))

    def get(self, _tenant: str, receipt_id: str) -> Any:
        return self._run(self.client.get_receipt(receipt_id))

    def logs(self, _tenant: str, receipt_id: str, limit: int = 100, offset: int = 0) -> Any:
        return self._run(self.client.get_receipt_logs(receipt_id, limit=limit, offset=offset))

    def prove(self, _tenant: str, receipt_id: str, log_id: str) -> Any:
        return self._run(self.client.prove(receipt_id, log_id))

    def public_keys(self) -> Any:
        return self._run(self.client.get_public_keys())


@contextmanager
def receipts_backend(app: App) -> Iterator[Any]:
    """The open ledger (embedded) or a ``RemoteReceipts`` (with ``--server``)."""
    if app.server:
        if not app.api_key:
            raise CliError("--server needs --api-key (or LLMRING_API_KEY); create a key "
                           "with `llmring keys create --project NAME` on the server's "
                           "data directory")
        yield RemoteReceipts(app.server, app.api_key)
        return
    with app.open(create=False) as led:
        yield led
