"""Python clients: ``ServerClient`` talks to ``llmring serve`` over HTTP (httpx, async);
``EmbeddedClient`` has the same async methods and answers on a local data directory.
Both are an ``AsyncLedgerClient`` over one of the two transports of
``ledger.api.transport`` (each method is one operation of ``ledger.api.operations``), so
both return the JSON dicts of the HTTP API (the users' guide indexes them:
``result["receipt"]["total_cost"]``, ``uncert["logs"]`` …), and raise the same
``ledger.errors`` class for the same refusal (``NotFoundError``, ``IdConflictError`` …,
all ``LedgerError``, alias ``LedgerHTTPError``, with ``status`` and ``detail``);
``ServerClient`` raises ``ServerUnavailableError`` when no server answers.

Dates (``start_date``, ``end_date``, ``start``, ``end``) accept a ``datetime``, a
``date`` or ISO 8601 text, read in the machine's local time zone (``TZ`` honoured), as
``datetime.now()`` and ``date.today()`` are: a naive datetime is that local wall-clock
time; a date is that whole local day (from local midnight; as an end, up to the next
local midnight, so the day is included); an offset is kept (``ledger.client.local_time``).
Both transports are sent the same aware instant. (The HTTP API itself, which cannot know
the caller's zone, takes naive = UTC.)

``checkpoint()`` keeps the last checkpoint the client saw of the project's log (in
memory, and in ``state_dir`` when given, so across runs) and checks every new one: it
must be signed by the ledger's keys and extend the kept one by an RFC 9162 consistency
proof; otherwise ``ledger.tlog.consistency.TamperEvidence`` is raised (keep both notes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ledger.api import operations as ops
from ledger.api.operations import date_text
from ledger.api.refusals import LedgerHTTPError
from ledger.api.transport import AsyncHttpTransport, AsyncLocalTransport, AsyncTransport
from ledger.client.local_time import local_bound
from ledger.errors import NothingToCertifyError

if TYPE_CHECKING:
    from ledger.api.service import LedgerService

JSON = dict[str, Any]


class AsyncLedgerClient:
    """The API's operations as async methods over a transport (local or HTTP).

    ``state_dir``: where the last checkpoint seen per log is kept between runs;
    ``trusted_keys``: the ledger's public keys (``PublicKeyInfo``) to check checkpoints
    with, instead of the keys the ledger publishes on first use."""

    def __init__(self, transport: AsyncTransport, *, state_dir: str | Path | None = None,
                 trusted_keys: Sequence[Any] | None = None) -> None:
        self.transport = transport
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._trusted = list(trusted_keys) if trusted_keys is not None else None
        self._seen: dict[str, str] = {}  # log origin → the last checkpoint note seen

    async def _call(self, op: ops.Operation, /, **params: Any) -> Any:
        return await self.transport.call(op, **params)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncLedgerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the project ---------------------------------------------------------------------
    async def whoami(self) -> JSON:
        """``{project, origin}``: the project this client reads and writes."""
        return await self._call(ops.WHOAMI)  # type: ignore[no-any-return]

    # -- logging -------------------------------------------------------------------------
    async def log_usage(self, event: Mapping[str, Any] | None = None, /,
                        **fields: Any) -> JSON:
        """Log one call (``provider``, ``model``, tokens, ``cost`` in USD, …):
        ``{log_id, cost, timestamp, …}``."""
        return await self._call(ops.LOG_USAGE,  # type: ignore[no-any-return]
                                event={**(event or {}), **fields})

    async def log_conversation(self, messages: Sequence[Any], response: Any = None,
                               metadata: Mapping[str, Any] | None = None,
                               conversation_id: str | None = None) -> JSON:
        """Log one call with its messages: ``{conversation_id, message_id, receipt:
        None}``; ``metadata`` carries provider, model, alias, tokens and cost."""
        return await self._call(  # type: ignore[no-any-return]
            ops.LOG_CONVERSATION, messages=list(messages), response=response,
            metadata=dict(metadata or {}), conversation_id=conversation_id)

    async def log_batch(self, events: Sequence[Mapping[str, Any]]) -> JSON:
        """Log many events atomically: ``{logs, count, created}``."""
        return await self._call(ops.LOG_BATCH,  # type: ignore[no-any-return]
                                events=[dict(e) for e in events])

    async def get_log(self, log_id: str) -> JSON:
        return await self._call(ops.GET_LOG, log_id=log_id)  # type: ignore[no-any-return]

    async def get_log_content(self, log_id: str) -> bytes:
        """``{messages, response}`` of a conversation event as stored (JSON bytes)."""
        return bytes(await self._call(ops.LOG_CONTENT, log_id=log_id))

    async def list_logs(self, limit: int = 100, offset: int = 0, *, start: Any = None,
                        end: Any = None, order: str = "seq") -> JSON:
        return await self._call(  # type: ignore[no-any-return]
            ops.LIST_LOGS, limit=limit, offset=offset, **_window(start, end), order=order)

    # -- receipts ------------------------------------------------------------------------
    async def generate_receipt(self, conversation_id: str | None = None,
                               start_date: Any = None, end_date: Any = None,
                               log_ids: Sequence[str] | None = None,
                               since_last_receipt: bool = False,
                               description: str | None = None,
                               tags: Sequence[str] | None = None,
                               if_empty: str = "raise",
                               where: Mapping[str, str] | None = None) -> JSON | None:
        """Certify one selection (exactly one of the four modes) with a signed receipt:
        ``{receipt, certified_count}``. ``tags`` is a list of strings (a bare string is
        a ``TypeError``). ``where`` (``{"customer": "acme"}``) keeps only the calls whose
        metadata matches; the receipt's signed ``scope.where`` names it. An empty selection
        (nothing new since the last receipt: a quiet day) raises
        ``NothingToCertifyError`` (code ``nothing_to_certify``), or, with
        ``if_empty="skip"``, returns ``None``."""
        if if_empty not in ("raise", "skip"):
            raise ValueError(f"if_empty must be 'raise' or 'skip', not {if_empty!r}")
        tags = ops.string_list(tags, "tags")
        try:
            return await self._call(  # type: ignore[no-any-return]
                ops.GENERATE_RECEIPT, conversation_id=conversation_id,
                **_range(start_date, end_date), log_ids=log_ids,
                since_last_receipt=since_last_receipt, description=description, tags=tags,
                where=_where(where))
        except NothingToCertifyError:
            if if_empty == "skip":
                return None
            raise

    async def preview_receipt(self, conversation_id: str | None = None,
                              start_date: Any = None, end_date: Any = None,
                              log_ids: Sequence[str] | None = None,
                              since_last_receipt: bool = False,
                              where: Mapping[str, str] | None = None) -> JSON:
        """What ``generate_receipt`` would certify (``total_logs``, ``total_cost``,
        ``by_model`` …); writes nothing. An empty selection answers zero totals."""
        return await self._call(  # type: ignore[no-any-return]
            ops.PREVIEW_RECEIPT, conversation_id=conversation_id,
            **_range(start_date, end_date), log_ids=log_ids,
            since_last_receipt=since_last_receipt, where=_where(where))

    async def get_uncertified_logs(self, limit: int = 100, offset: int = 0) -> JSON:
        return await self._call(ops.UNCERTIFIED,  # type: ignore[no-any-return]
                                limit=limit, offset=offset)

    async def list_receipts(self, limit: int = 100, offset: int = 0) -> JSON:
        return await self._call(ops.LIST_RECEIPTS,  # type: ignore[no-any-return]
                                limit=limit, offset=offset)

    async def get_receipt(self, receipt_id: str) -> JSON:
        return await self._call(ops.GET_RECEIPT,  # type: ignore[no-any-return]
                                receipt_id=receipt_id)

    async def get_receipt_logs(self, receipt_id: str, limit: int = 100,
                               offset: int = 0) -> JSON:
        return await self._call(ops.RECEIPT_LOGS,  # type: ignore[no-any-return]
                                receipt_id=receipt_id, limit=limit, offset=offset)

    async def prove(self, receipt_id: str, log_id: str) -> JSON:
        """The offline proof bundle that ``log_id`` is certified by the receipt."""
        return await self._call(ops.PROVE,  # type: ignore[no-any-return]
                                receipt_id=receipt_id, log_id=log_id)

    async def verify_receipt(self, receipt: Mapping[str, Any]) -> JSON:
        """Ask the ledger to check a receipt's signature: ``{receipt_id, valid,
        algorithm}`` (offline: ``ledger.receipts.verification``)."""
        return await self._call(ops.VERIFY_RECEIPT,  # type: ignore[no-any-return]
                                document=dict(receipt))

    async def get_public_keys(self) -> JSON:
        return await self._call(ops.PUBLIC_KEYS)  # type: ignore[no-any-return]

    async def get_public_key_pem(self) -> str:
        return str(await self._call(ops.PUBLIC_KEY_PEM))

    # -- budgets -------------------------------------------------------------------------
    async def set_budget(self, name: str, *, amount: Any, period: str, tz: str = "UTC",
                         thresholds: Sequence[int] = (75, 90, 100),
                         webhook: str | None = None, webhook_secret: str | None = None,
                         hard: bool = False) -> JSON:
        """Create or replace budget ``name``: ``amount`` USD (decimal text, exact) per
        ``period`` (``day``, ``week`` or ``month``) in zone ``tz``, alerts at each of
        ``thresholds`` percent to ``webhook``; ``hard`` refuses logs once 100% is spent.
        The answer carries ``webhook_secret`` once when the ledger made it."""
        return await self._call(  # type: ignore[no-any-return]
            ops.SET_BUDGET, name=name, amount=amount, period=period, tz=tz,
            thresholds=list(thresholds), webhook=webhook, webhook_secret=webhook_secret,
            hard=hard)

    async def list_budgets(self) -> JSON:
        """``{budgets: [...]}`` of the project (never a secret)."""
        return await self._call(ops.LIST_BUDGETS)  # type: ignore[no-any-return]

    async def remove_budget(self, name: str) -> JSON:
        return await self._call(ops.REMOVE_BUDGET, name=name)  # type: ignore[no-any-return]

    async def budget_status(self) -> JSON:
        """Each budget this period: ``spent``, ``percent``, ``crossed``, ``refusing``,
        ``last_alert`` …"""
        return await self._call(ops.BUDGET_STATUS)  # type: ignore[no-any-return]

    # -- price overrides -----------------------------------------------------------------
    async def list_prices(self) -> JSON:
        """The project's price override rows, each with its ``id`` (docs/formats.md)."""
        return await self._call(ops.LIST_PRICES)  # type: ignore[no-any-return]

    async def set_prices(self, rows: Sequence[Mapping[str, Any]], *,
                         replace: bool = False) -> JSON:
        """Add price override rows (``replace``: they become the whole list); they price
        the calls logged from then on that arrive without a cost."""
        return await self._call(ops.SET_PRICES,  # type: ignore[no-any-return]
                                rows=[dict(r) for r in rows], replace=replace)

    async def remove_price(self, row_id: str) -> JSON:
        return await self._call(ops.REMOVE_PRICE, row_id=row_id)  # type: ignore[no-any-return]

    async def show_price(self, model: str | None = None, *, provider: str | None = None,
                         at: Any = None, input_tokens: int | None = None,
                         cached_input_tokens: int | None = None,
                         cache_write_tokens: int | None = None,
                         output_tokens: int | None = None,
                         reasoning_tokens: int | None = None,
                         log_id: str | None = None) -> JSON:
        """Which price applies to ``model`` at ``at`` (local time when naive) and, with
        token counts, the exact cost and its arithmetic; or, with ``log_id``, the price
        of a stored event recomputed and compared."""
        return await self._call(  # type: ignore[no-any-return]
            ops.SHOW_PRICE, model=model, provider=provider,
            at=local_bound(at, name="at"), input_tokens=input_tokens,
            cached_input_tokens=cached_input_tokens, cache_write_tokens=cache_write_tokens,
            output_tokens=output_tokens, reasoning_tokens=reasoning_tokens, log_id=log_id)

    # -- reports and the log tree --------------------------------------------------------
    async def usage_rollup(self, by: Sequence[str] = ("model",), tz: str = "UTC", *,
                           start: Any = None, end: Any = None,
                           where: Mapping[str, str] | None = None) -> JSON:
        """Calls, tokens and cost grouped ``by`` built-in dimensions and metadata keys
        (``"meta.customer"``, or ``"customer"``), of the calls matching ``where``."""
        return await self._call(ops.ROLLUP,  # type: ignore[no-any-return]
                                by=list(by), tz=tz, **_window(start, end),
                                where=_where(where))

    async def export_events(self, format: str = "jsonl", *, start: Any = None,
                            end: Any = None, where: Mapping[str, str] | None = None) -> bytes:
        return bytes(await self._call(ops.EXPORT, format=format, **_window(start, end),
                                      where=_where(where)))

    async def dimensions(self) -> JSON:
        """``{project, dimensions}``: the metadata keys the project declares."""
        return await self._call(ops.DIMENSIONS)  # type: ignore[no-any-return]

    async def set_dimensions(self, keys: Sequence[str]) -> JSON:
        """Declare the project's dimensions (stored as columns from now on)."""
        return await self._call(ops.SET_DIMENSIONS,  # type: ignore[no-any-return]
                                keys=ops.string_list(list(keys), "keys"))

    async def log_inclusion(self, log_id: str, size: int | None = None) -> JSON:
        """The ``ledger-log-inclusion/v1`` bundle of one log at a signed checkpoint."""
        return await self._call(ops.LOG_INCLUSION,  # type: ignore[no-any-return]
                                log_id=log_id, size=size)

    async def add_cosignatures(self, note: str) -> JSON:
        """Store the witnesses' cosignatures on one of the project's checkpoints."""
        return await self._call(ops.ADD_COSIGNATURES,  # type: ignore[no-any-return]
                                note=note)

    async def witnesses(self) -> JSON:
        """The project's log with each witness of the server's ``witnesses.policy``: the
        size each last cosigned, failures, and whether the quorum is met."""
        return await self._call(ops.WITNESSES)  # type: ignore[no-any-return]

    async def checkpoint(self) -> JSON:
        """The project's log signed now, checked against the last checkpoint this client
        saw (see the module docstring); raises ``TamperEvidence`` if it does not extend
        it, ``NoteError`` if it is not signed by the ledger's keys."""
        signed = await self._call(ops.CHECKPOINT)
        await self._check_checkpoint(str(signed["note"]))
        return signed  # type: ignore[no-any-return]

    async def _check_checkpoint(self, note: str) -> None:
        from ledger.tlog.checkpoint import Verifier, verify_checkpoint
        from ledger.tlog.consistency import FORMAT, check_extends, checkpoint_of_note
        from ledger.tlog.signing import parse_public_keys_json

        if self._trusted is None:  # trust on first use: the keys the ledger publishes
            self._trusted = parse_public_keys_json(await self.get_public_keys())
        verifiers = [Verifier.from_info(k) for k in self._trusted]
        new = verify_checkpoint(note, verifiers)
        kept = self._seen.get(new.origin) or self._load_seen(new.origin)
        if kept is not None:
            old = checkpoint_of_note(kept)
            proof: list[str] = []
            if 0 < old.size < new.size:
                answer = await self.consistency(old.size, new.size)
                proof = list(answer["proof"])
            check_extends(old, {"format": FORMAT, "new": note, "proof": proof}, verifiers)
        self._seen[new.origin] = note
        if self.state_dir is not None:
            from ledger.storage.durable import write_atomic

            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self._seen_path(new.origin), note.encode())

    def _seen_path(self, origin: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"{_seg(origin)}.note"

    def _load_seen(self, origin: str) -> str | None:
        if self.state_dir is None:
            return None
        try:
            return self._seen_path(origin).read_text()
        except FileNotFoundError:
            return None

    async def consistency(self, first: int, second: int | None = None) -> JSON:
        return await self._call(ops.CONSISTENCY,  # type: ignore[no-any-return]
                                first=first, second=second)


class ServerClient(AsyncLedgerClient):
    """An async client of ``llmring serve``; the API key names the project.

    ``ServerClient("http://localhost:8000", "llr_…")`` or
    ``ServerClient(server_url=…, api_key=…)``. Use ``async with`` or ``await
    client.aclose()`` to release connections (a client left open is harmless in a
    short script)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 server_url: str | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 state_dir: str | Path | None = None,
                 trusted_keys: Sequence[Any] | None = None) -> None:
        http = AsyncHttpTransport(base_url or server_url, api_key,  # type: ignore[arg-type]
                                  timeout=timeout, transport=transport)
        super().__init__(http, state_dir=state_dir, trusted_keys=trusted_keys)
        self.base_url = http.base_url
        self.api_key = http.api_key
        self.timeout = timeout

    async def __aenter__(self) -> ServerClient:
        return self


class EmbeddedClient(AsyncLedgerClient):
    """``ServerClient``'s methods on a local data directory, for one project. It opens
    the directory's ledger (taking its lock) on first use; ``await client.aclose()`` (or
    ``async with``) closes it; given an open ``LedgerService`` instead of a directory, it
    uses that one and leaves it open. Refusals are the ``ledger.errors`` classes the
    server's answers map back to (a library's ``ValueError`` is a ``RequestError``),
    and ``checkpoint()`` checks each checkpoint against the last it saw, as
    ``ServerClient`` does."""

    def __init__(self, data_dir: str | Path | LedgerService = "./data",
                 project: str = "default", *, state_dir: str | Path | None = None,
                 trusted_keys: Sequence[Any] | None = None) -> None:
        local = AsyncLocalTransport(data_dir, project)
        super().__init__(local, state_dir=state_dir, trusted_keys=trusted_keys)
        self.data_dir = local.local.data_dir
        self.project = local.project

    async def __aenter__(self) -> EmbeddedClient:
        return self


def _where(where: Mapping[str, str] | None) -> dict[str, str] | None:
    """A metadata filter as sent: a dict (None when not given)."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise TypeError(f"where must be a mapping of metadata key to value, not {where!r}")
    return dict(where)


def _window(start: Any, end: Any) -> dict[str, Any]:
    """A query window's bounds in local time (``ledger.client.local_time``)."""
    return {"start": local_bound(start, name="start"),
            "end": local_bound(end, end=True, name="end")}


def _range(start_date: Any, end_date: Any) -> dict[str, Any]:
    """A receipt's date range in local time (``ledger.client.local_time``)."""
    return {"start_date": local_bound(start_date, name="start_date"),
            "end_date": local_bound(end_date, end=True, name="end_date")}


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


__all__ = ["AsyncLedgerClient", "EmbeddedClient", "LedgerHTTPError", "ServerClient",
           "date_text"]
