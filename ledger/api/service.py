"""The ledger's operations per project, answering the JSON shapes of the HTTP API
(docs/http-api.md). The server's endpoints and the embedded client
(``ledger.client.async_api``) both call this, so a script gets the same dicts from a local
data directory as from a server.

``LedgerService`` holds one open data directory: the ``Ledger`` (and with it the
directory's lock), conversation content, the signing keys, checkpoints and receipts.
Every method takes the project (tenant) explicitly; the server takes it from the API key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.api.budgets import Budgets
from ledger.api.prices import Prices
from ledger.core.facade import Ledger
from ledger.core.sealer import DEFAULT_SEAL_INTERVAL
from ledger.errors import (
    InvalidRequestError,
    LedgerError,
    NotFoundError,
    ReceiptRequestError,
    RequestError,
    RollupError,
)
from ledger.model.batch import BatchAcks
from ledger.model.dates import parse_bound
from ledger.model.event import Ack, EventIn, format_ts, parse_event, ts_to_us
from ledger.model.money import NANOS_PER_USD
from ledger.model.schema import GIVEN
from ledger.model.tenant import check_tenant
from ledger.storage.content import ContentStore, content_sha256
from ledger.tlog.published import Publisher, encode_bundle
from ledger.tlog.signing import public_keys_json

# Keys of a conversation's ``metadata`` that are event fields (the rest stay metadata):
# every field a caller gives (and its wire alias) but those the conversation log sets.
_SET_BY_CONVERSATION = ("kind", "conversation_id", "content_sha256", "metadata")
EVENT_KEYS = tuple(key for f in GIVEN if f.name not in _SET_BY_CONVERSATION
                   for key in (f.name, f.alias) if key is not None)
MAX_LIMIT = 1000
EXPORT_FORMATS = ("csv", "jsonl", "parquet", "focus-csv", "focus-parquet")


def ack_json(ack: Ack) -> dict[str, Any]:
    """The answer to a logged call: ``{log_id, cost, timestamp, …}``."""
    return {"log_id": ack.event_id, "cost": ack.cost, "timestamp": ack.ts, "seq": ack.seq,
            "cost_nanos": ack.cost_nanos, "cost_source": ack.cost_source,
            "conversation_id": ack.conversation_id, "created": ack.created}


def when(value: Any, *, name: str = "date", end: bool = False) -> datetime | None:
    """A query bound (``ledger.model.dates.parse_bound``), None when not given."""
    return None if value is None else parse_bound(value, name=name, end=end)


def window(start: Any, end: Any) -> tuple[datetime | None, datetime | None]:
    s, e = when(start, name="start"), when(end, name="end", end=True)
    if s is not None and e is not None and s >= e:
        raise RequestError("start must be before end")
    return s, e


def metadata_filter(value: Any, error: type[LedgerError] = RequestError,
                    name: str = "where") -> dict[str, str]:
    """A request's metadata filter (``ledger.model.dimensions.parse_where``): an object
    of key to value, or ``KEY=VALUE`` texts (a query string's repeated ``where``); {}
    when not given; ``error`` naming the problem otherwise."""
    from ledger.model.dimensions import DimensionNameError, parse_where, parse_where_text

    if value is None:
        return {}
    try:
        if isinstance(value, list | tuple):
            if not all(isinstance(v, str) for v in value):
                raise DimensionNameError(f"{name} must be KEY=VALUE texts or an object")
            return parse_where_text(value, name=name)
        return parse_where(value, name=name)
    except DimensionNameError as exc:
        raise error(str(exc)) from None


def check_paging(limit: int, offset: int) -> None:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:  # no bool, no float
        raise InvalidRequestError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    if type(offset) is not int or offset < 0:
        raise InvalidRequestError("offset must be an integer >= 0")


class LedgerService:
    """One open data directory and the per-project operations over it."""

    def __init__(self, data_dir: str | Path, *, ledger: Ledger | None = None,
                 accept_loss: bool = False, owns: Sequence[str] | None = None,
                 url: str | None = None,
                 seal_interval: float | None = DEFAULT_SEAL_INTERVAL,
                 iceberg: bool | None = None, seal_rows: int | None = None) -> None:
        """Open ``data_dir`` (or use the open ``ledger``); ``accept_loss``, ``owns``,
        ``url``, ``seal_interval``, ``iceberg`` and ``seal_rows`` (None: the default) as
        ``Ledger``'s."""
        self.data = Path(data_dir)
        options = {} if seal_rows is None else {"seal_rows": seal_rows}
        self.ledger = (ledger if ledger is not None
                       else Ledger(self.data, accept_loss=accept_loss, owns=owns, url=url,
                                   seal_interval=seal_interval, iceberg=iceberg, **options))
        try:
            self.notary = self.ledger.notary  # the directory's one key ring and checkpoints
            self.origin = self.notary.origin
            self.keyring = self.notary.keyring
            # Never sign with a throw-away key: the first key is created and persisted now.
            if not self.ledger.read_only:
                self.keyring.current()
            self.checkpoints = self.notary.checkpoints
            self.published = Publisher(self.notary)
            self.content = ContentStore(self.ledger.layout)
            self.receipts = _receipts_facade(self.ledger)
            self.budgets = Budgets(self.ledger)
            self.prices = Prices(self.ledger)
        except BaseException:
            if ledger is None:
                self.ledger.close()
            raise

    def close(self) -> None:
        self.ledger.close()

    # -- the project ---------------------------------------------------------------------
    def project(self, tenant: str) -> dict[str, Any]:
        """Which project the caller writes to, and the origin of its log."""
        check_tenant(tenant)
        return {"project": tenant, "origin": f"{self.origin}/{tenant}"}

    # -- logging -------------------------------------------------------------------------
    # Every append is checked against the project's hard budgets first and observed by
    # its budgets once durable (``ledger.api.budgets``).
    def log_usage(self, tenant: str, event: Mapping[str, Any] | EventIn) -> dict[str, Any]:
        self.budgets.check(tenant)
        ack = self.ledger.append(event, tenant=tenant)
        self.budgets.observe(tenant, (ack,))
        return ack_json(ack)

    async def log_usage_soon(self, tenant: str, event: Mapping[str, Any] | EventIn
                             ) -> dict[str, Any]:
        """``log_usage`` from an event loop, which it does not block while the append
        waits for its group commit. The budgets' check and observation run in the loop:
        for a project without budgets a dict lookup; a project with budgets may read its
        spend from the stored events at a period's start, so the server's fast path
        sends those through ``log_usage`` in a worker thread (``Budgets.watches``)."""
        self.budgets.check(tenant)
        acks = await self.ledger.submit([event], tenant=tenant)
        self.budgets.observe(tenant, acks)
        return ack_json(acks[0])

    def log_batch(self, tenant: str, events: Sequence[Mapping[str, Any] | EventIn]
                  ) -> dict[str, Any]:
        self.budgets.check(tenant)
        acks = self.ledger.append_many(events, tenant=tenant)
        self.budgets.observe(tenant, acks)
        if isinstance(acks, BatchAcks):  # from the batch's columns, no Ack objects
            logs = [{"log_id": e, "cost": c / NANOS_PER_USD, "timestamp": t, "seq": q,
                     "cost_nanos": c, "cost_source": src, "conversation_id": conv,
                     "created": made} for e, q, t, c, src, conv, made in acks.summaries()]
        else:
            logs = [ack_json(a) for a in acks]
        return {"logs": logs, "count": len(logs),
                "created": sum(1 for log in logs if log["created"])}

    def log_litellm(self, tenant: str, payloads: bytes | str | Sequence[Any] | Mapping[str, Any]
                    ) -> dict[str, Any]:
        """LiteLLM's logged calls (``ledger.integrations.litellm``: a request body in any
        of its ``generic_api`` formats, or parsed payloads), appended as one batch: all of
        them or, on any bad payload or id conflict, none. Answer: ``{received, accepted,
        repeated, skipped}`` (repeated: ids already recorded with the same content;
        skipped: failed calls)."""
        from ledger.integrations.litellm import read_payloads

        check_tenant(tenant)
        batch = read_payloads(payloads)
        created = self.log_batch(tenant, batch.events)["created"] if batch.events else 0
        return {"received": batch.received, "accepted": created,
                "repeated": len(batch.events) - created, "skipped": batch.skipped}

    def log_otlp(self, tenant: str, traces: bytes | Mapping[str, Any],
                 encoding: str = "application/json") -> dict[str, Any]:
        """OpenTelemetry spans (``ledger.integrations.otlp``: an OTLP/HTTP
        ``ExportTraceServiceRequest`` body in ``encoding``, protobuf or JSON, or its JSON
        already parsed): each GenAI model call appended as one event, in one batch (all
        of them or, on any bad GenAI span or id conflict, none). Answer: the
        ``ExportTraceServiceResponse``'s JSON mapping, whose ``partialSuccess`` counts
        the spans that are not GenAI model calls."""
        from ledger.integrations import otlp

        check_tenant(tenant)
        request = (otlp.decode(bytes(traces), otlp.media_type(encoding))
                   if isinstance(traces, bytes | bytearray) else otlp.from_json(traces))
        batch = otlp.read_spans(request)
        if batch.events:
            self.log_batch(tenant, batch.events)
        return otlp.answer(batch)

    def log_conversation(self, tenant: str, *, messages: Any, response: Any = None,
                         metadata: Mapping[str, Any] | None = None,
                         conversation_id: str | None = None) -> dict[str, Any]:
        """One call with its content: event fields from ``metadata`` (the rest stays
        metadata), content stored apart and committed by ``content_sha256``."""
        check_tenant(tenant)
        meta = dict(metadata or {})
        fields: dict[str, Any] = {k: meta.pop(k) for k in EVENT_KEYS if k in meta}
        if "ts" in fields:
            fields.setdefault("timestamp", fields.pop("ts"))
        digest = content_sha256(messages, response)
        fields.update(kind="conversation", conversation_id=conversation_id,
                      content_sha256=digest, metadata=meta)
        event = parse_event(fields)  # validate before anything is written
        self.budgets.check(tenant)
        ack = self.ledger.append(event, tenant=tenant)
        self.budgets.observe(tenant, (ack,))
        # Stored once the event is accepted (created, or an identical repeat, which also
        # restores content a crash may have kept from being written): a refused request
        # leaves nothing behind.
        self.content.put(tenant, messages, response)
        return {"conversation_id": ack.conversation_id, "message_id": ack.event_id,
                "receipt": None, "cost": ack.cost, "timestamp": ack.ts,
                "content_sha256": digest}

    # -- events --------------------------------------------------------------------------
    def list_logs(self, tenant: str, *, limit: int = 100, offset: int = 0,
                  start: Any = None, end: Any = None, order: str = "seq") -> dict[str, Any]:
        check_paging(limit, offset)
        if order not in ("seq", "-seq"):
            raise InvalidRequestError("order must be 'seq' (oldest first) or '-seq'")
        s, e = window(start, end)
        events = self.ledger.events(tenant, start=s, end=e, limit=limit, offset=offset,
                                    order=order)
        return {"logs": [ev.to_json_dict() for ev in events],
                "total": self.ledger.count(tenant, start=s, end=e),
                "limit": limit, "offset": offset}

    def get_log(self, tenant: str, log_id: str) -> dict[str, Any]:
        event = self.ledger.get(tenant, log_id)
        if event is None:
            raise NotFoundError(f"no log {log_id!r} in this project")
        return event.to_json_dict()

    def log_content(self, tenant: str, log_id: str) -> bytes:
        event = self.ledger.get(tenant, log_id)
        if event is None:
            raise NotFoundError(f"no log {log_id!r} in this project")
        if event.content_sha256 is None:
            raise NotFoundError(f"log {log_id!r} has no conversation content")
        data = self.content.get(tenant, event.content_sha256)
        if data is None:
            raise NotFoundError(f"the content of log {log_id!r} is no longer stored")
        return data

    # -- reports -------------------------------------------------------------------------
    def rollup(self, tenant: str, *, by: Sequence[str] = ("model",), tz: str = "UTC",
               start: Any = None, end: Any = None, where: Any = None) -> dict[str, Any]:
        """Calls, tokens and cost grouped ``by`` built-in dimensions and metadata keys
        (``projections.rollups``), of the events matching ``where`` (metadata filter)."""
        from projections.rollups import rollup

        dims = list(by)
        if len(set(dims)) != len(dims):
            raise RequestError("by: each dimension may be named once")
        flt = metadata_filter(where, RollupError)
        s, e = window(start, end)
        rows = rollup(self.ledger.snapshot(), tenant, dims, tz=tz, start=s, end=e,
                      where=flt)
        out = {"by": dims, "tz": tz, "rows": [r.as_dict() for r in rows]}
        if flt:
            out["where"] = flt
        return out

    def dimensions(self, tenant: str) -> dict[str, Any]:
        """The project's declared dimensions: ``{project, dimensions}``."""
        check_tenant(tenant)
        return {"project": tenant, "dimensions": self.ledger.dimensions.keys(tenant)}

    def set_dimensions(self, tenant: str, keys: Any) -> dict[str, Any]:
        """Declare the metadata keys stored as columns in the project's segments from now
        on (``ledger.storage.dimensions``; ``[]``: none): ``{project, dimensions}``."""
        from ledger.model.dimensions import DimensionNameError

        check_tenant(tenant)
        if not isinstance(keys, list | tuple):
            raise InvalidRequestError("keys must be a list of metadata keys")
        try:
            declared = self.ledger.dimensions.set(tenant, list(keys))
        except (DimensionNameError, ValueError) as exc:
            raise RequestError(f"keys: {exc}") from None
        return {"project": tenant, "dimensions": declared}

    def export(self, tenant: str, *, format: str = "jsonl", start: Any = None,
               end: Any = None, where: Any = None) -> bytes:
        """The project's events as CSV, JSON lines or Parquet bytes (``export_stream``
        joined)."""
        return b"".join(self.export_stream(tenant, format=format, start=start, end=end,
                                           where=where))

    def export_stream(self, tenant: str, *, format: str = "jsonl", start: Any = None,
                      end: Any = None, where: Any = None) -> Iterator[bytes]:
        """The project's events as CSV, JSON lines or Parquet, or its calls as FOCUS 1.2
        rows in CSV or Parquet (``focus-csv``, ``focus-parquet``: ``projections.focus``), a
        chunk of bytes at a time (``projections.exports``: bounded memory for any size of
        log). ``where``: only the events whose metadata matches (a metadata filter). The
        request is checked here, before the first chunk; close the stream to stop
        early."""
        from projections.exports import export_batches, export_chunks
        from projections.focus import FOCUS_FORMATS, focus_batches

        if format not in EXPORT_FORMATS:
            raise InvalidRequestError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
        flt = metadata_filter(where)
        s, e = window(start, end)
        snapshot = self.ledger.snapshot()
        if format in FOCUS_FORMATS:
            return export_chunks(focus_batches(snapshot, tenant, format=format, start=s,
                                               end=e, where=flt), FOCUS_FORMATS[format])
        return export_chunks(export_batches(snapshot, tenant, start=s, end=e, where=flt),
                             format)

    def stats(self, tenant: str) -> dict[str, Any]:
        """The project's figures: events, first and last call, cost, log size and root,
        and its storage (segments, bytes, rows still in the journal's tail)."""
        from projections.events import ENTRY_KINDS
        from projections.rollups import rollup
        from projections.snapshot import run

        check_tenant(tenant)
        snapshot = self.ledger.snapshot()
        totals = rollup(snapshot, tenant, by=[])
        result = run(snapshot, tenant,
                     f"SELECT min(ts), max(ts) FROM {{src}} WHERE {ENTRY_KINDS}")
        rows = [] if result is None else (
            result.fetchall() if hasattr(result, "fetchall") else list(result))
        first, last = (rows[0][0], rows[0][1]) if rows else (None, None)
        segs = self.ledger.live_segments(tenant)
        cost = totals[0].cost_nanos if totals else 0
        return {
            "events": totals[0].calls if totals else 0,
            "first_ts": _ts_text(first),
            "last_ts": _ts_text(last),
            "cost": cost / 1e9,
            "cost_nanos": cost,
            "unpriced": totals[0].unpriced if totals else 0,
            "log_size": self.ledger.size(tenant),
            "root": self.ledger.root(tenant).hex(),
            "segments": len(segs),
            "segment_bytes": sum(s.bytes for s in segs),
            "journal_tail_rows": snapshot.tail_rows(tenant),
        }

    # -- the project's log tree ----------------------------------------------------------
    def checkpoint(self, tenant: str) -> dict[str, Any]:
        """Sign the project's log as it is now (the stored checkpoint when unchanged);
        ``Ledger.checkpoint`` syncs the journal first and issues under the write lock.
        ``cosigned_note`` is the note with every witness cosignature stored for it."""
        signed = self.ledger.checkpoint(tenant)
        return {**signed.to_json(), "cosigned_note": self.notary.cosigned_note(signed)}

    def log_inclusion(self, tenant: str, log_id: str, size: int | None = None
                      ) -> dict[str, Any]:
        """The ``ledger-log-inclusion/v1`` bundle of one log at a signed checkpoint."""
        from ledger.tlog.consistency import prove_inclusion

        if size is not None and (type(size) is not int or size < 1):
            raise InvalidRequestError("size must be an integer of at least 1")
        try:
            return prove_inclusion(self.ledger, tenant, log_id, size=size)
        except LookupError as exc:
            raise NotFoundError(str(exc)) from None
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def add_cosignatures(self, tenant: str, note: str) -> dict[str, Any]:
        """Store the witness cosignatures on ``note``, one of this project's checkpoints
        that the ledger signed (C2SP tlog-cosignature lines)."""
        from ledger.errors import CosignatureError
        from ledger.tlog.checkpoint import NoteError, parse_checkpoint, parse_note

        try:
            origin = parse_checkpoint(parse_note(note).text).origin
        except NoteError as exc:
            raise RequestError(f"note: not a signed checkpoint note ({exc})") from None
        if origin != f"{self.origin}/{tenant}":
            raise NotFoundError(f"no checkpoint of origin {origin!r} in this project")
        try:
            added = self.notary.attach_cosignatures(note)
        except (CosignatureError, NoteError) as exc:
            raise RequestError(str(exc)) from None
        return {"added": added, "origin": origin}

    def witness_policy(self) -> Any:
        """The data directory's ``witnesses.policy`` (``ledger.tlog.policy.Policy``), or
        None without one; ``PolicyError`` when it does not parse."""
        from ledger.tlog.policy import load_policy

        path = self.ledger.layout.witness_policy
        return load_policy(path) if path.exists() else None

    def witnesses(self, tenant: str) -> dict[str, Any]:
        """The state of the project's log with each witness of ``witnesses.policy``
        (``ledger.tlog.witnessing.witness_status``); ``policy`` is null without one."""
        from ledger.tlog.witnessing import WitnessState, witness_status

        check_tenant(tenant)
        policy = self.witness_policy()
        origin = f"{self.origin}/{tenant}"
        signed = self.checkpoints.latest(origin)
        if policy is None:
            return {"origin": origin, "policy": None,
                    "checkpoint_size": None if signed is None else signed.checkpoint.size,
                    "quorum": None, "quorum_met": False, "witnesses": []}
        status = witness_status(policy, WitnessState(self.ledger.layout.witness_state),
                                origin,
                                None if signed is None else self.notary.cosigned_note(signed),
                                None if signed is None else signed.checkpoint.size)
        return {**status, "policy": self.ledger.layout.witness_policy.name}

    def consistency(self, tenant: str, first: int, second: int | None = None
                    ) -> dict[str, Any]:
        tree = self.ledger.tree(tenant)
        size = self.ledger.size(tenant)
        second = size if second is None else second
        if type(first) is not int or type(second) is not int:  # never a bool
            raise InvalidRequestError("first and second must be integers")
        if first < 0 or second < 0:
            raise InvalidRequestError("sizes must not be negative")
        if second > size:
            raise RequestError(f"second ({second}) is larger than the log ({size} entries)")
        if first > second:
            raise RequestError(f"first ({first}) must not be larger than second ({second})")
        proof = tree.consistency_proof(first, second) if 0 < first < second else []
        return {"first": first, "second": second, "first_root": tree.root(first).hex(),
                "second_root": tree.root(second).hex(), "proof": [h.hex() for h in proof]}

    # -- the logs as c2sp.org/tlog-tiles resources (``ledger.tlog.published``) -----------
    def tlog_checkpoint(self, project: str) -> str:
        """The latest signed checkpoint of ``project``'s log with its cosignatures
        (public)."""
        return self.published.checkpoint_note(project)

    def tlog_tile(self, project: str, level: str, index: str) -> bytes:
        """Hash tile ``<level>/<index>`` of ``project``'s log, as far as its latest
        checkpoint covers it (public: hashes only)."""
        return self.published.hash_tile(project, level, index)

    def tlog_entries(self, tenant: str, project: str, index: str) -> bytes:
        """Entry bundle ``<index>`` of the caller's own log: another project's log is not
        found, as every other resource of another project."""
        from projections.entries import entry_bytes

        if project != tenant:
            raise NotFoundError(f"no entry bundles of a log {project!r} for this API key "
                                "(a key reads only its own project's entries)")
        ref = self.published.bundle(project, index)
        try:
            entries = entry_bytes(self.ledger.snapshot(), project, ref.first(),
                                  ref.first() + ref.width)
        except LookupError as exc:
            raise NotFoundError(str(exc)) from None
        return encode_bundle(entries, ref)

    # -- receipts (``ledger.receipts.issuance.Receipts``) ---------------------------------
    def generate_receipt(self, tenant: str, *, conversation_id: str | None = None,
                         start_date: Any = None, end_date: Any = None,
                         log_ids: Sequence[str] | None = None,
                         since_last_receipt: bool = False, description: str | None = None,
                         tags: Sequence[str] | None = None, where: Any = None,
                         progress: Any = None) -> dict[str, Any]:
        """Certify exactly one selection with a signed receipt: ``{receipt,
        certified_count}``; ``progress(stage)`` hears of each stage. ``tags`` must be a
        list of strings (a bare string is a 422 naming the field, as over HTTP)."""
        if tags is not None and not isinstance(tags, list | tuple):
            raise InvalidRequestError(f"tags must be a list of strings, not "
                                      f"{type(tags).__name__} ({tags!r})")
        return self.receipts.generate(  # type: ignore[no-any-return]
            tenant, conversation_id=conversation_id, start_date=start_date,
            end_date=end_date, log_ids=None if log_ids is None else list(log_ids),
            since_last_receipt=since_last_receipt, description=description,
            tags=None if tags is None else list(tags),
            where=metadata_filter(where, ReceiptRequestError) or None, progress=progress)

    def preview_receipt(self, tenant: str, *, conversation_id: str | None = None,
                        start_date: Any = None, end_date: Any = None,
                        log_ids: Sequence[str] | None = None,
                        since_last_receipt: bool = False, where: Any = None
                        ) -> dict[str, Any]:
        """What ``generate_receipt`` would certify; writes nothing."""
        return self.receipts.preview(  # type: ignore[no-any-return]
            tenant, conversation_id=conversation_id, start_date=start_date,
            end_date=end_date, log_ids=None if log_ids is None else list(log_ids),
            since_last_receipt=since_last_receipt,
            where=metadata_filter(where, ReceiptRequestError) or None)

    def uncertified(self, tenant: str, *, limit: int = 100, offset: int = 0
                    ) -> dict[str, Any]:
        check_paging(limit, offset)
        return self.receipts.uncertified(tenant, limit, offset)  # type: ignore[no-any-return]

    def list_receipts(self, tenant: str, *, limit: int = 100, offset: int = 0
                      ) -> dict[str, Any]:
        check_paging(limit, offset)
        return self.receipts.list(tenant, limit, offset)  # type: ignore[no-any-return]

    def get_receipt(self, tenant: str, receipt_id: str) -> dict[str, Any]:
        return self.receipts.get(tenant, receipt_id)  # type: ignore[no-any-return]

    def receipt_logs(self, tenant: str, receipt_id: str, *, limit: int = 100,
                     offset: int = 0) -> dict[str, Any]:
        check_paging(limit, offset)
        return self.receipts.logs(  # type: ignore[no-any-return]
            tenant, receipt_id, limit, offset)

    def receipt_logs_json(self, tenant: str, receipt_id: str, *, limit: int = 100,
                          offset: int = 0) -> bytes:
        """``receipt_logs``'s answer as its JSON text (the HTTP body), byte for byte."""
        check_paging(limit, offset)
        return self.receipts.logs_json(  # type: ignore[no-any-return]
            tenant, receipt_id, limit, offset)

    def prove(self, tenant: str, receipt_id: str, log_id: str) -> dict[str, Any]:
        return self.receipts.prove(tenant, receipt_id, log_id)  # type: ignore[no-any-return]

    # -- budgets (``ledger.api.budgets``) ---------------------------------------------------
    def set_budget(self, tenant: str, name: str, *, amount: Any, period: Any,
                   tz: Any = "UTC", thresholds: Any = (75, 90, 100), webhook: Any = None,
                   webhook_secret: Any = None, hard: Any = False) -> dict[str, Any]:
        """Create or replace a budget of the project (``webhook_secret`` in the answer
        once, when the ledger made it)."""
        return self.budgets.set(tenant, name, amount=amount, period=period, tz=tz,
                                thresholds=thresholds, webhook=webhook,
                                webhook_secret=webhook_secret, hard=hard)

    def list_budgets(self, tenant: str) -> dict[str, Any]:
        return self.budgets.list(tenant)

    def remove_budget(self, tenant: str, name: str) -> dict[str, Any]:
        return self.budgets.remove(tenant, name)

    def budget_status(self, tenant: str) -> dict[str, Any]:
        return self.budgets.status(tenant)

    # -- price overrides (``ledger.api.prices``) --------------------------------------------
    def list_prices(self, tenant: str) -> dict[str, Any]:
        return self.prices.list(tenant)

    def set_prices(self, tenant: str, rows: Any, replace: Any = False) -> dict[str, Any]:
        """Add override rows (each replacing the row of the same provider, model and
        ``since``), or with ``replace`` make them all of the project's rows."""
        return self.prices.set(tenant, rows, replace=False if replace is None else replace)

    def remove_price(self, tenant: str, row_id: str) -> dict[str, Any]:
        return self.prices.remove(tenant, row_id)

    def show_price(self, tenant: str, model: str | None = None, provider: str | None = None,
                   at: Any = None, input_tokens: Any = None, cached_input_tokens: Any = None,
                   cache_write_tokens: Any = None, output_tokens: Any = None,
                   reasoning_tokens: Any = None, log_id: str | None = None
                   ) -> dict[str, Any]:
        return self.prices.show(
            tenant, model=model, provider=provider or "", at=at, log_id=log_id,
            input_tokens=input_tokens, cached_input_tokens=cached_input_tokens,
            cache_write_tokens=cache_write_tokens, output_tokens=output_tokens,
            reasoning_tokens=reasoning_tokens)

    # -- public keys ---------------------------------------------------------------------
    def public_keys(self) -> dict[str, Any]:
        return public_keys_json(self.keyring.keys())

    def verify_receipt(self, document: Any) -> dict[str, Any]:
        """Check a receipt (or ``{"receipt": …}``, or a proof bundle) against every key of
        this ledger, current and retired: ``{receipt_id, valid, algorithm, key_id, failed,
        message}``. Signs nothing and reads no project data."""
        from ledger.receipts.verification import BUNDLE_FORMAT, verify_bundle, verify_receipt

        keys = self.keyring.keys()
        if isinstance(document, dict) and document.get("format") == BUNDLE_FORMAT:
            result = verify_bundle(document, keys)
        else:
            if (isinstance(document, dict) and isinstance(document.get("receipt"), dict)
                    and "signature" not in document):
                document = document["receipt"]
            result = verify_receipt(document, keys)
        out = result.as_dict()
        return {"receipt_id": out["receipt_id"], "valid": out["valid"],
                "algorithm": out["algorithm"], "key_id": out["key_id"],
                "kind": out["kind"], "failed": out["failed"], "message": out["message"]}

    def public_key_pem(self) -> str:
        info = self.keyring.current_info()
        if info is None:  # pragma: no cover - a key is created when the service opens
            raise NotFoundError("no signing key yet")
        return info.pem()


def _ts_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_ts(ts_to_us(value.astimezone(UTC)))


def _receipts_facade(ledger: Ledger) -> Any:
    try:
        from ledger.receipts.issuance import Receipts
    except ImportError:  # pragma: no cover - a build without receipts
        return None
    return Receipts(ledger)


__all__ = ["LedgerService", "NotFoundError", "RequestError", "ack_json", "window"]
