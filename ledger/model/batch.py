"""Batch preparation: many submitted events validated and encoded column by column.

``prepare_batch`` gives, for a list of submitted events, exactly what ``parse_event``
followed by ``prepare`` gives for each of them (the same ids, canonical bytes, leaf
hashes, digests and errors; the test suite checks this on generated events), at a
fraction of the cost: the checks run once per column (a type test over a list, one
regular-expression scan over the joined strings, ``max`` of the lengths), timestamps
are converted and formatted by Arrow and NumPy, and generated ids are made in bulk.

An event the column checks do not clear (an unusual type, a lax spelling, a nested or
float-bearing ``metadata``, anything invalid) is handed to the per-event path
(``parse_event`` + ``prepare``) on its own, so an error names the same field, with the
same words and the same event index, as before.

The checks (``_scan``) and the encoding (``_encode``) run in C when ``ledger.model._native`` was
built at install (a C compiler was there; ``NATIVE``), else in the pure-Python code here
(``_scan_python``, ``_encode_python``); the results are the same (the tests run both and
compare each with the per-event path). ``LLMRING_PURE_PYTHON=1`` in the environment
turns the C loops off. Prices are looked up per model, not per event
(``PriceBook.price_columns``).

The result, a ``PreparedBatch``, is columnar: it turns into the Arrow table of the rows
appended (``table``) and the journal payload of the batch without building a Python
object per event.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

import numpy as np
import orjson
import pyarrow as pa

from ledger.model.event import (
    CANONICAL_VERSION,
    EARLIEST_TS,
    FUTURE_SKEW,
    GENERATED_MARK,
    MAX_ID,
    MAX_METADATA_BYTES,
    MAX_SAFE_INT,
    MAX_TEXT,
    Ack,
    EventIn,
    EventValidationError,
    Prepared,
    Pricer,
    format_ts,
    new_event_id,
    parse_event,
    prepare,
    ts_to_us,
    us_to_datetime,
)
from ledger.model.money import MAX_COST_NANOS, usd_to_nanos
from ledger.model.native import NATIVE_MODULE as _native  # _scan and _encode in C, when built
from ledger.model.pricing import is_packaged_book
from ledger.storage.segments import EVENT_SCHEMA

NATIVE = _native is not None
"""Whether batches are prepared by the C loops of ``ledger.model._native``."""

# Keys an event may carry (field names and the ``timestamp`` alias of ``ts``).
EVENT_KEYS = frozenset(EventIn.model_fields) | {"timestamp"}
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
           "reasoning_tokens")
_BAD_TEXT = re.compile("[\x00-\x1f\ud800-\udfff]")
_BAD_ID = re.compile(r"[\x00-\x1f\ud800-\udfff]|\s")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_SHA256 = re.compile(r"(?:[0-9a-f]{64}\n)*")
# RFC 3339 with a time zone, as ``datetime.fromisoformat`` and pydantic read it alike.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_TS_TYPE = pa.timestamp("us", tz="UTC")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ONE_BY_ONE = 4  # smaller batches are prepared one event at a time
_FEW = 16  # fewer values than this are converted one by one (no array set-up)


@dataclass(slots=True)
class PreparedBatch:
    """Validated events ready to append, one list per column (``i``-th event at ``[i]``).
    ``digest`` is empty for an event whose id the ledger generated."""

    tenant: str
    event_id: list[str]
    generated: list[bool]
    ts_us: list[int]
    ts_text: list[str]
    ts_given: list[bool]
    cost_given: list[bool]
    kind: list[str]
    conversation_id: list[str | None]
    provider: list[str]
    model: list[str]
    alias: list[str]
    profile: list[str]
    input_tokens: list[int]
    output_tokens: list[int]
    cached_input_tokens: list[int]
    cache_write_tokens: list[int]
    reasoning_tokens: list[int]
    cost_nanos: list[int]
    cost_source: list[str]
    price_id: list[str | None]
    latency_ms: list[int | None]
    origin: list[str | None]
    id_at_origin: list[str | None]
    metadata: list[dict[str, Any]]
    metadata_json: list[str]
    content_sha256: list[str | None]
    canonical: list[bytes]
    leaf_hash: list[bytes]
    digest: list[bytes]

    def __len__(self) -> int:
        return len(self.event_id)

    def extend(self, other: PreparedBatch) -> None:
        """Append the events of ``other`` (of the same tenant) after these."""
        for name in self.__slots__:
            column = getattr(self, name)
            if isinstance(column, list):
                column.extend(getattr(other, name))

    def fields(self, i: int) -> dict[str, Any]:
        """The canonical fields of event ``i`` (as ``Prepared.fields``)."""
        return {
            "event_id": self.event_id[i],
            "tenant": self.tenant,
            "kind": self.kind[i],
            "conversation_id": self.conversation_id[i],
            "provider": self.provider[i],
            "model": self.model[i],
            "alias": self.alias[i],
            "profile": self.profile[i],
            "input_tokens": self.input_tokens[i],
            "output_tokens": self.output_tokens[i],
            "cached_input_tokens": self.cached_input_tokens[i],
            "cache_write_tokens": self.cache_write_tokens[i],
            "reasoning_tokens": self.reasoning_tokens[i],
            "cost_nanos": self.cost_nanos[i],
            "cost_source": self.cost_source[i],
            "price_id": self.price_id[i],
            "latency_ms": self.latency_ms[i],
            "origin": self.origin[i],
            "id_at_origin": self.id_at_origin[i],
            "metadata": self.metadata[i],
            "content_sha256": self.content_sha256[i],
            "ts": self.ts_text[i],
        }

    def prepared(self, i: int) -> Prepared:
        """Event ``i`` as a ``Prepared`` (for the rare per-event decisions)."""
        return Prepared(
            event_id=self.event_id[i], generated_id=self.generated[i], tenant=self.tenant,
            ts_us=self.ts_us[i], ts_given=self.ts_given[i], cost_given=self.cost_given[i],
            fields=self.fields(i), metadata_json=self.metadata_json[i],
            canonical=self.canonical[i], leaf_hash=self.leaf_hash[i], digest=self.digest[i])

    def table(self, seqs: np.ndarray, recorded_us: int,
              positions: Sequence[int] | None = None) -> pa.Table:
        """The rows of the events at ``positions`` (all, in order, when None) as an Arrow
        table of ``EVENT_SCHEMA``; ``seqs``: each row's ``seq``."""
        n = len(self) if positions is None else len(positions)

        def col(values: list[Any]) -> list[Any]:
            return values if positions is None else [values[i] for i in positions]

        seq = np.asarray(seqs, dtype=np.int64)
        recorded = np.full(n, recorded_us, dtype=np.int64)
        columns = [
            col(self.event_id), seq, col(self.ts_us), recorded, col(self.kind),
            col(self.conversation_id), col(self.provider), col(self.model), col(self.alias),
            col(self.profile), col(self.input_tokens), col(self.output_tokens),
            col(self.cached_input_tokens), col(self.cache_write_tokens),
            col(self.reasoning_tokens), col(self.cost_nanos), col(self.cost_source),
            col(self.price_id), col(self.latency_ms), col(self.origin),
            col(self.id_at_origin), col(self.metadata_json), col(self.content_sha256),
            col(self.leaf_hash),
        ]
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns, EVENT_SCHEMA, strict=True)]
        return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)

    def slice(self, start: int, end: int) -> PreparedBatch:
        """Events ``start`` to ``end`` (exclusive) as a batch of their own."""
        return PreparedBatch(self.tenant, *(getattr(self, name)[start:end]
                                            for name in self.__slots__[1:]))

    def rows(self, first_seq: int, recorded_us: int,
             positions: Sequence[int] | None = None) -> list[tuple[Any, ...]]:
        """The rows of the events at ``positions`` (all when None) as tuples in
        ``ROW_FIELDS`` order, numbered from ``first_seq`` (for small appends)."""
        out = []
        for k, i in enumerate(range(len(self)) if positions is None else positions):
            out.append((
                self.event_id[i], first_seq + k, self.ts_us[i], recorded_us, self.kind[i],
                self.conversation_id[i], self.provider[i], self.model[i], self.alias[i],
                self.profile[i], self.input_tokens[i], self.output_tokens[i],
                self.cached_input_tokens[i], self.cache_write_tokens[i],
                self.reasoning_tokens[i], self.cost_nanos[i], self.cost_source[i],
                self.price_id[i], self.latency_ms[i], self.origin[i], self.id_at_origin[i],
                self.metadata_json[i], self.content_sha256[i], self.leaf_hash[i]))
        return out

    @classmethod
    def from_prepared(cls, tenant: str, items: Sequence[Prepared]) -> PreparedBatch:
        """Columns of events prepared one by one."""
        rows = [(
            p.event_id, p.generated_id, p.ts_us, f["ts"], p.ts_given, p.cost_given, f["kind"],
            f["conversation_id"], f["provider"], f["model"], f["alias"], f["profile"],
            f["input_tokens"], f["output_tokens"], f["cached_input_tokens"],
            f["cache_write_tokens"], f["reasoning_tokens"], f["cost_nanos"],
            f["cost_source"], f["price_id"], f["latency_ms"], f["origin"], f["id_at_origin"],
            f["metadata"], p.metadata_json, f["content_sha256"], p.canonical, p.leaf_hash,
            p.digest) for p in items for f in (p.fields,)]
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(29)]
        return cls(tenant, *columns)


def prepare_batch(events: Sequence[Any], *, tenant: str, received_us: int | Sequence[int],
                  pricer: Pricer | None) -> PreparedBatch:
    """Validate and prepare ``events`` (mappings or ``EventIn``); raise
    ``EventValidationError`` (with the index of the first bad event) if any is invalid.
    ``received_us``: when the events arrived (the ``ts`` of an event without one), for
    all of them or one per event."""
    n = len(events)
    if isinstance(received_us, int):
        received_us = [received_us] * n
    if n < _ONE_BY_ONE:  # the column set-up costs more than it saves
        return PreparedBatch.from_prepared(tenant, [
            _prepare_one(e, i, tenant, received_us[i], pricer) for i, e in enumerate(events)])
    s = _scan(events, list(received_us))
    (event_id, conversation_id, provider, model, kind, ts_us, cost_nanos, cost_source,
     cost_given) = (s.event_id, s.conversation_id, s.provider, s.model, s.kind, s.ts_us,
                    s.cost_nanos, s.cost_source, s.cost_given)
    tokens = [s.input_tokens, s.output_tokens, s.cached_input_tokens, s.cache_write_tokens,
              s.reasoning_tokens]

    # -- the events the column checks did not clear: one by one -------------------------
    fallback: dict[int, Prepared] = {}
    for i, slow in enumerate(s.slow):
        if slow:
            fallback[i] = _prepare_one(events[i], i, tenant, received_us[i], pricer)

    # -- defaults: ids and prices --------------------------------------------------------
    generated = [False] * n
    need_ids = [i for i in range(n) if event_id[i] is None and i not in fallback]
    conv_ids = [i for i in range(n) if kind[i] == "conversation"
                and conversation_id[i] is None and i not in fallback]
    fresh = new_event_ids([ts_us[i] // 1000 for i in need_ids + conv_ids])
    for k, i in enumerate(need_ids):
        event_id[i] = fresh[k]
        generated[i] = True
    for k, i in enumerate(conv_ids, start=len(need_ids)):
        conversation_id[i] = fresh[k]
    price_id = list(s.price_id)
    unpriced = [i for i in range(n) if not cost_given[i] and i not in fallback]
    if is_packaged_book(pricer):  # many at a time, the time in µs (no datetime per event)
        pricer.price_columns(provider, model, *tokens, ts_us, unpriced, cost_nanos, price_id)
        for i in unpriced:
            if cost_nanos[i] is None:
                cost_nanos[i], cost_source[i], price_id[i] = 0, "unpriced", None
            else:
                cost_source[i] = "price_table"
    else:
        for i in unpriced:
            priced = None
            if pricer is not None:
                try:
                    priced = pricer.price(
                        provider[i], model[i], tokens[0][i], tokens[1][i], tokens[2][i],
                        tokens[3][i], tokens[4][i], us_to_datetime(ts_us[i]))
                except ValueError:
                    priced = None
            if priced is None:
                cost_nanos[i], cost_source[i], price_id[i] = 0, "unpriced", None
            else:
                cost_nanos[i], cost_source[i], price_id[i] = (
                    priced.cost_nanos, "price_table", priced.price_id)

    # -- the events prepared one by one take their place in the columns ----------------
    for i, p in fallback.items():
        event_id[i], generated[i], ts_us[i] = p.event_id, p.generated_id, p.ts_us
        f = p.fields
        s.ts_text[i] = f["ts"]
        s.ts_given[i], cost_given[i] = p.ts_given, p.cost_given
        kind[i], conversation_id[i] = f["kind"], f["conversation_id"]
        provider[i], model[i], s.alias[i], s.profile[i] = (
            f["provider"], f["model"], f["alias"], f["profile"])
        for k, name in enumerate(_TOKENS):
            tokens[k][i] = f[name]
        cost_nanos[i], cost_source[i], price_id[i] = (
            f["cost_nanos"], f["cost_source"], f["price_id"])
        s.latency_ms[i], s.origin[i], s.id_at_origin[i] = (
            f["latency_ms"], f["origin"], f["id_at_origin"])
        s.metadata[i], s.metadata_json[i] = f["metadata"], p.metadata_json
        s.content_sha256[i] = f["content_sha256"]

    # -- canonical bytes, leaf hashes, digests -------------------------------------------
    canonical, leaf, digest = _encode(
        tenant, CANONICAL_VERSION,
        (s.alias, tokens[3], tokens[2], s.content_sha256, conversation_id, cost_nanos,
         cost_source, event_id, s.id_at_origin, tokens[0], kind, s.latency_ms,
         s.metadata_json, model, s.origin, tokens[1], price_id, s.profile, provider,
         tokens[4], s.ts_text),
        s.ts_given, cost_given, [not g for g in generated], s.slow)
    for i, p in fallback.items():  # the per-event path's bytes (e.g. floats in metadata)
        canonical[i], leaf[i], digest[i] = p.canonical, p.leaf_hash, p.digest

    return PreparedBatch(
        tenant=tenant, event_id=event_id, generated=generated, ts_us=ts_us,
        ts_text=s.ts_text, ts_given=s.ts_given, cost_given=cost_given, kind=kind,
        conversation_id=conversation_id, provider=provider, model=model, alias=s.alias,
        profile=s.profile, input_tokens=tokens[0], output_tokens=tokens[1],
        cached_input_tokens=tokens[2], cache_write_tokens=tokens[3],
        reasoning_tokens=tokens[4], cost_nanos=cost_nanos, cost_source=cost_source,
        price_id=price_id, latency_ms=s.latency_ms, origin=s.origin,
        id_at_origin=s.id_at_origin, metadata=s.metadata, metadata_json=s.metadata_json,
        content_sha256=s.content_sha256, canonical=canonical, leaf_hash=leaf, digest=digest)


@dataclass(slots=True)
class _Scanned:
    """The columns the checks made (``ledger.model._native.scan`` returns them in this order).
    An event marked ``slow`` has placeholders in the other columns: the per-event path
    decides it."""

    slow: list[bool]
    event_id: list[Any]
    conversation_id: list[Any]
    id_at_origin: list[Any]
    provider: list[Any]
    model: list[Any]
    alias: list[Any]
    profile: list[Any]
    price_id: list[Any]
    origin: list[Any]
    kind: list[Any]
    content_sha256: list[Any]
    input_tokens: list[Any]
    output_tokens: list[Any]
    cached_input_tokens: list[Any]
    cache_write_tokens: list[Any]
    reasoning_tokens: list[Any]
    latency_ms: list[Any]
    cost_nanos: list[Any]
    cost_source: list[Any]
    cost_given: list[bool]
    ts_us: list[int]
    ts_given: list[bool]
    ts_text: list[str]
    metadata: list[Any]
    metadata_json: list[str]


def _scan(events: Sequence[Any], received_us: list[int]) -> _Scanned:
    """The column checks: ``_native.scan`` when built, else ``_scan_python``."""
    if _native is None:
        return _scan_python(events, received_us)
    low = ts_to_us(EARLIEST_TS)
    high = ts_to_us(datetime.now(UTC) + FUTURE_SKEW)
    limits = (MAX_ID, MAX_TEXT, MAX_METADATA_BYTES, MAX_SAFE_INT, MAX_COST_NANOS)
    return _Scanned(*_native.scan(
        events if type(events) is list else list(events), EVENT_KEYS, received_us, low,
        high, _usd_nanos, limits))


def _scan_python(events: Sequence[Any], received_us: list[int]) -> _Scanned:
    """Which events are plain (a dict of known keys whose values pass the checks, run
    once per column) and their columns; the others are marked slow."""
    n = len(events)
    slow = [not (type(e) is dict and e.keys() <= EVENT_KEYS and not (
        "ts" in e and "timestamp" in e)) for e in events]
    get = _Columns(events, slow)

    # -- texts ---------------------------------------------------------------------------
    event_id = get("event_id")
    _check_texts(event_id, slow, get.skipped, MAX_ID, _BAD_ID, optional=True, min_len=1)
    conversation_id = get("conversation_id")
    _check_texts(conversation_id, slow, get.skipped, MAX_ID, _BAD_ID, optional=True, min_len=1)
    id_at_origin = get("id_at_origin")
    _check_texts(id_at_origin, slow, get.skipped, MAX_ID, _BAD_ID, optional=True)
    provider = get("provider")
    _check_texts(provider, slow, get.skipped, MAX_TEXT, _BAD_TEXT, min_len=1)
    model = get("model")
    _check_texts(model, slow, get.skipped, MAX_TEXT, _BAD_TEXT, min_len=1)
    alias = get("alias", "")
    _check_texts(alias, slow, get.skipped, MAX_TEXT, _BAD_TEXT)
    profile = get("profile", "default")
    _check_texts(profile, slow, get.skipped, MAX_TEXT, _BAD_TEXT)
    price_id = get("price_id")
    _check_texts(price_id, slow, get.skipped, MAX_TEXT, _BAD_TEXT, optional=True)
    origin = get("origin")
    _check_texts(origin, slow, get.skipped, MAX_TEXT, _BAD_TEXT, optional=True)
    kind = get("kind", "usage")
    for i, k in enumerate(kind):
        if (k != "usage" and k != "conversation") or type(k) is not str:
            slow[i] = True
    content = get("content_sha256")
    _check_sha256(content, slow)

    # -- integers ------------------------------------------------------------------------
    tokens = [get(name, 0) for name in _TOKENS]
    for column in tokens:
        _check_ints(column, slow, optional=False)
    latency = get("latency_ms")
    _check_ints(latency, slow, optional=True)
    cost_nanos_in = get("cost_nanos")
    _check_ints(cost_nanos_in, slow, optional=True)

    # -- cost ----------------------------------------------------------------------------
    cost_in = get("cost")
    cost_source_in = get("cost_source")
    cost_nanos: list[Any] = [None] * n
    cost_source: list[Any] = [None] * n
    cost_given = [False] * n
    for i in range(n):
        if slow[i]:
            continue
        c, cn, src = cost_in[i], cost_nanos_in[i], cost_source_in[i]
        if src is not None and src != "provider" and src != "client":
            slow[i] = True
            continue
        if c is not None:
            nanos = _usd_nanos(c)
            if nanos is None or (cn is not None and cn != nanos):
                slow[i] = True
                continue
            cn = nanos
        if cn is None:
            if src is not None:
                slow[i] = True
            continue
        cost_given[i] = True
        cost_nanos[i] = cn
        cost_source[i] = src or "client"

    # -- timestamps ----------------------------------------------------------------------
    ts_in = get("ts")
    ts_alias = get("timestamp")
    ts_values: list[Any] = [None] * n
    ts_given = [False] * n
    for i in range(n):
        value = ts_in[i] if ts_in[i] is not None else ts_alias[i]
        if value is None or slow[i]:
            continue
        ts_given[i] = True
        if type(value) is str:
            if _RFC3339.fullmatch(value) is None:
                slow[i] = True
                continue
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                slow[i] = True
                continue
        elif type(value) is not datetime:
            slow[i] = True
            continue
        tz = value.tzinfo
        if tz is not None and tz is not UTC and value.utcoffset() is None:
            slow[i] = True  # a time zone without an offset: as pydantic sees it
            continue
        ts_values[i] = value
    ts_us = _timestamps_us(ts_values, received_us)
    low = ts_to_us(EARLIEST_TS)
    high = ts_to_us(datetime.now(UTC) + FUTURE_SKEW)
    for i in range(n):
        if ts_given[i] and not (low <= ts_us[i] <= high):
            slow[i] = True

    # -- metadata ------------------------------------------------------------------------
    metadata = get("metadata")
    metadata_json: list[str] = [""] * n
    for i, meta in enumerate(metadata):
        if slow[i]:
            continue
        if meta is None:
            if "metadata" in events[i]:
                slow[i] = True
                continue
            meta = metadata[i] = {}
        text = _simple_metadata_json(meta)
        if text is None:
            slow[i] = True
        else:
            metadata_json[i] = text

    return _Scanned(
        slow, event_id, conversation_id, id_at_origin, provider, model, alias, profile,
        price_id, origin, kind, content, *tokens, latency, cost_nanos, cost_source,
        cost_given, ts_us, ts_given, _format_ts(ts_us), metadata, metadata_json)


def _encode(tenant: str, version: int, columns: tuple[list[Any], ...], ts_given: list[bool],
            cost_given: list[bool], want_digest: list[bool],
            skip: list[bool]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Canonical bytes, leaf hashes and digests: ``_native.encode`` when built, else
    ``_encode_python``."""
    if _native is None:
        return _encode_python(tenant, version, columns, ts_given, cost_given, want_digest,
                              skip)
    return _native.encode(tenant, version, columns, ts_given, cost_given, want_digest, skip)


def _encode_python(tenant: str, version: int, columns: tuple[list[Any], ...],
                   ts_given: list[bool], cost_given: list[bool], want_digest: list[bool],
                   skip: list[bool]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The canonical bytes (RFC 8785) and leaf hash of each event, and the idempotency
    digest of those in ``want_digest`` (``b""`` for the others, and for all three of
    the events in ``skip``). ``columns``: the events' values in the canonical key order
    (alias, cache_write_tokens, cached_input_tokens, content_sha256, conversation_id,
    cost_nanos, cost_source, event_id, id_at_origin, input_tokens, kind, latency_ms,
    metadata JSON text, model, origin, output_tokens, price_id, profile, provider,
    reasoning_tokens, ts text)."""
    (alias, cache_write, cached, content, conversation, cost_nanos, cost_source, event_id,
     id_at_origin, input_tokens, kind, latency, metadata_json, model, origin, output_tokens,
     price_id, profile, provider, reasoning, ts_text) = columns
    texts = _JsonTexts()
    alias_j, cost_source_j, event_id_j, kind_j, model_j, profile_j, provider_j = (
        texts.inner(c) for c in (alias, cost_source, event_id, kind, model, profile, provider))
    content_j, conversation_j, id_at_origin_j, origin_j, price_id_j = (
        texts.nullable(c) for c in (content, conversation, id_at_origin, origin, price_id))
    latency_j = ["null" if v is None else str(v) for v in latency]
    tenant_j = texts.inner([tenant])[0]
    canonical, leaf = _canonical(
        tenant_j, version, alias_j, cache_write, cached, content_j, conversation_j,
        cost_nanos, cost_source_j, event_id_j, id_at_origin_j, input_tokens, kind_j,
        latency_j, metadata_json, model_j, origin_j, output_tokens, price_id_j, profile_j,
        provider_j, reasoning, ts_text)
    digest = [b""] * len(canonical)
    sha256 = hashlib.sha256
    for i, wanted in enumerate(want_digest):
        if skip[i]:
            canonical[i] = leaf[i] = b""
            continue
        if not wanted:
            continue
        if cost_given[i]:
            cost_part = (f'"cost_nanos":{cost_nanos[i]},"cost_source":"{cost_source_j[i]}",'
                         f'"event_id":"{event_id_j[i]}"')
            price_part = price_id_j[i]
        else:
            cost_part = f'"cost_nanos":null,"cost_source":null,"event_id":"{event_id_j[i]}"'
            price_part = "null"
        ts_part = f'"{ts_text[i]}"' if ts_given[i] else "null"
        digest[i] = sha256((
            f'{{"alias":"{alias_j[i]}","cache_write_tokens":{cache_write[i]},'
            f'"cached_input_tokens":{cached[i]},"content_sha256":{content_j[i]},'
            f'"conversation_id":{conversation_j[i]},{cost_part},'
            f'"id_at_origin":{id_at_origin_j[i]},"input_tokens":{input_tokens[i]},'
            f'"kind":"{kind_j[i]}","latency_ms":{latency_j[i]},'
            f'"metadata":{metadata_json[i]},"model":"{model_j[i]}","origin":{origin_j[i]},'
            f'"output_tokens":{output_tokens[i]},"price_id":{price_part},'
            f'"profile":"{profile_j[i]}","provider":"{provider_j[i]}",'
            f'"reasoning_tokens":{reasoning[i]},"tenant":"{tenant_j}","ts":{ts_part}}}'
        ).encode()).digest()[:16]
    return canonical, leaf, digest


def _canonical(tenant: str, version: int,
               *columns: list[Any]) -> tuple[list[bytes], list[bytes]]:
    """Canonical bytes (RFC 8785) and leaf hashes of the events given by ``columns`` in the
    canonical key order, each already JSON text: strings escaped (quoted where the column
    may be null), integers as such, metadata as its canonical text (see ``_JsonTexts``).
    One f-string per event gives the bytes ``orjson.dumps`` gives for the sorted dict
    (the tests compare both), at half the cost."""
    sha256 = hashlib.sha256
    canonical: list[bytes] = []
    leaf: list[bytes] = []
    add_canonical = canonical.append
    add_leaf = leaf.append
    for (alias, cache_write, cached, content, conv, cost, source, eid, id_at_origin,
         input_tokens, kind, latency, meta, model, origin, output_tokens, price_id,
         profile, provider, reasoning, ts) in zip(*columns, strict=True):
        body = (
            f'{{"alias":"{alias}","cache_write_tokens":{cache_write},'
            f'"cached_input_tokens":{cached},"content_sha256":{content},'
            f'"conversation_id":{conv},"cost_nanos":{cost},"cost_source":"{source}",'
            f'"event_id":"{eid}","id_at_origin":{id_at_origin},"input_tokens":{input_tokens},'
            f'"kind":"{kind}","latency_ms":{latency},"metadata":{meta},"model":"{model}",'
            f'"origin":{origin},"output_tokens":{output_tokens},"price_id":{price_id},'
            f'"profile":"{profile}","provider":"{provider}","reasoning_tokens":{reasoning},'
            f'"tenant":"{tenant}","ts":"{ts}","v":{version}}}').encode()
        add_canonical(body)
        add_leaf(sha256(b"\x00" + body).digest())
    return canonical, leaf


class _JsonTexts:
    """Columns of strings as JSON text for the canonical f-strings. A column is checked
    once (one scan of its joined values): values with nothing to escape are used as they
    are; a column with a quote, backslash or control character is escaped by ``orjson``
    (RFC 8785 escapes exactly those; other characters, astral ones included, are written
    as UTF-8)."""

    _ESCAPE = re.compile(r'["\\\x00-\x1f]')

    def inner(self, column: list[str]) -> list[str]:
        """The escaped text between the quotes, for a column without nulls."""
        if self._ESCAPE.search("".join(column)) is None:
            return column
        dumps = orjson.dumps
        return [dumps(v).decode()[1:-1] for v in column]

    def nullable(self, column: list[str | None]) -> list[str]:
        """The whole JSON value (quoted string or ``null``) of each entry."""
        present = [v for v in column if v is not None]
        if self._ESCAPE.search("".join(present)) is None:
            return ["null" if v is None else f'"{v}"' for v in column]
        dumps = orjson.dumps
        return ["null" if v is None else dumps(v).decode() for v in column]


def _prepare_one(event: Any, index: int, tenant: str, received_us: int,
                 pricer: Pricer | None) -> Prepared:
    parsed = parse_event(event, index=index)
    try:
        return prepare(parsed, tenant=tenant, received_us=received_us, pricer=pricer)
    except EventValidationError as exc:
        raise EventValidationError(exc.problems, index=index) from None


class _Columns:
    """``columns(key, default)``: the values of ``key`` in every event (None in the events
    already marked slow, which are not plain dicts)."""

    def __init__(self, events: Sequence[Any], slow: list[bool]) -> None:
        self.rows = [None if s else e for e, s in zip(events, slow, strict=True)]
        self.skipped = sum(slow)

    def __call__(self, key: str, default: Any = None) -> list[Any]:
        if not self.skipped:
            return [e.get(key, default) for e in self.rows]  # type: ignore[union-attr]
        return [e.get(key, default) if e is not None else None for e in self.rows]


def _check_texts(values: list[Any], slow: list[bool], skipped: int, limit: int,
                 bad: re.Pattern[str], *, optional: bool = False, min_len: int = 0) -> None:
    """Mark as slow the events whose value is not a clean ``str`` of allowed length."""
    present = [v for v in values if v is not None]
    ok = all(type(v) is str for v in present)
    if ok and present:
        lengths = list(map(len, present))
        ok = max(lengths) <= limit and min(lengths) >= min_len
        ok = ok and bad.search("".join(present)) is None
    if ok and not optional:
        ok = len(present) == len(values) - skipped
    if ok:
        return
    for i, v in enumerate(values):
        if slow[i]:
            continue
        if v is None:
            slow[i] = not optional
        elif type(v) is not str or not (min_len <= len(v) <= limit) or bad.search(v):
            slow[i] = True


def _check_sha256(values: list[Any], slow: list[bool]) -> None:
    present = [v for v in values if v is not None]
    if all(type(v) is str for v in present) and _SHA256.fullmatch(
            "".join(v + "\n" for v in present)):
        return
    for i, v in enumerate(values):
        if v is not None and not (type(v) is str and _SHA256.fullmatch(v + "\n")):
            slow[i] = True


def _check_ints(values: list[Any], slow: list[bool], *, optional: bool) -> None:
    for i, v in enumerate(values):
        if type(v) is int:
            if not 0 <= v <= MAX_SAFE_INT:
                slow[i] = True
        elif v is not None or not optional:
            slow[i] = True


def _usd_nanos(value: Any) -> int | None:
    """``usd_to_nanos`` of a float, int or str cost within ``MAX_COST_NANOS``; None when
    it is not that simple (the per-event path then decides, and words any error)."""
    nanos: int | None = None
    if type(value) is float:
        if not math.isfinite(value) or value < 0:
            return None
        text = repr(value)
        if "e" in text:
            try:
                nanos = usd_to_nanos(value)
            except ValueError:
                return None
        else:
            whole, _, frac = text.partition(".")
            frac = frac.rstrip("0")
            if len(frac) <= 9 and len(whole) <= 13:
                nanos = int(whole) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")
    elif type(value) is int or type(value) is str:
        try:
            nanos = usd_to_nanos(value)
        except ValueError:
            return None
    return nanos if nanos is not None and nanos <= MAX_COST_NANOS else None


def _simple_metadata_json(meta: Any) -> str | None:
    """The canonical JSON of a flat metadata object of strings, safe integers, booleans
    and nulls (most metadata); None for anything else (the per-event path decides)."""
    if type(meta) is not dict:
        return None
    if not meta:
        return "{}"
    for key, value in meta.items():
        t = type(value)
        if t is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                return None
        elif t is not str and t is not bool and value is not None:
            return None
        if type(key) is not str:
            return None
    try:
        text = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if len(text) > MAX_METADATA_BYTES or _ASTRAL.search(text.decode()):
        return None
    return text.decode()


def _timestamps_us(values: list[datetime | None], default_us: Sequence[int]) -> list[int]:
    """Microseconds since the epoch of UTC (or naive, taken as UTC) datetimes; None gives
    that event's ``default_us``."""
    given = [v for v in values if v is not None]
    if not given:
        return list(default_us)
    if len(given) < _FEW:
        us = [ts_to_us(v if v.tzinfo is not None else v.replace(tzinfo=UTC)) for v in given]
    else:
        us = pa.array(given, type=_TS_TYPE).cast(pa.int64()).to_pylist()
    it = iter(us)
    return [next(it) if v is not None else d for v, d in zip(values, default_us, strict=True)]


def _format_ts(us: list[int]) -> list[str]:
    """``format_ts`` of many timestamps."""
    if len(us) < _FEW:
        return [format_ts(u) for u in us]
    text = np.datetime_as_string(np.asarray(us, dtype="datetime64[us]"), unit="us")
    return [t + "Z" for t in text.tolist()]


def new_event_ids(ms: Sequence[int]) -> list[str]:
    """``new_event_id`` for many millisecond timestamps."""
    n = len(ms)
    if n < _FEW:
        return [new_event_id(m) for m in ms]
    raw = np.empty((n, 16), dtype=np.uint8)
    stamp = np.asarray(ms, dtype=np.uint64) & np.uint64(0xFFFF_FFFF_FFFF)
    for k in range(6):
        raw[:, k] = (stamp >> np.uint64(8 * (5 - k))) & np.uint64(0xFF)
    raw[:, 6:] = np.frombuffer(os.urandom(10 * n), dtype=np.uint8).reshape(n, 10)
    raw[:, 6] = 0x70 | GENERATED_MARK >> 8
    raw[:, 7] = GENERATED_MARK & 0xFF
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8] = hexed[:, 0:8]
    out[:, 9:13] = hexed[:, 8:12]
    out[:, 14:18] = hexed[:, 12:16]
    out[:, 19:23] = hexed[:, 16:20]
    out[:, 24:36] = hexed[:, 20:32]
    text = out.tobytes().decode("ascii")
    return [text[k:k + 36] for k in range(0, 36 * n, 36)]


class BatchAcks(Sequence[Ack]):
    """The acknowledgements of one batch append, in input order, each made when it is
    read (a batch of 10,000 need not build 10,000 objects nobody looks at)."""

    __slots__ = ("_batch", "_first", "_fixed", "_seq")

    def __init__(self, batch: PreparedBatch, first_seq: int, new: Sequence[int] | None,
                 fixed: dict[int, Ack]) -> None:
        """``new``: positions of the events created, numbered from ``first_seq`` (None:
        all of them); ``fixed``: the acknowledgements of the others (repeats, pairings)."""
        self._batch = batch
        self._first = first_seq
        self._seq = None if new is None else {i: first_seq + k for k, i in enumerate(new)}
        self._fixed = fixed

    def __len__(self) -> int:
        return len(self._batch)

    @overload
    def __getitem__(self, i: int) -> Ack: ...

    @overload
    def __getitem__(self, i: slice) -> list[Ack]: ...

    def __getitem__(self, i: int | slice) -> Ack | list[Ack]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("acknowledgement index out of range")
        found = self._fixed.get(i)
        if found is not None:
            return found
        b = self._batch
        seq = self._first + i if self._seq is None else self._seq[i]
        return Ack(b.event_id[i], b.tenant, seq, b.ts_us[i], b.cost_nanos[i],
                   b.cost_source[i], b.conversation_id[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:  # mutable-looking sequence: not hashable, like a list
        raise TypeError("unhashable type: 'BatchAcks'")

    def __repr__(self) -> str:
        return repr(list(self))

    def summaries(self) -> Iterator[tuple[str, int, str, int, str, str | None, bool]]:
        """``(event_id, seq, ts text, cost_nanos, cost_source, conversation_id, created)``
        of each acknowledgement, without building ``Ack`` objects (for JSON answers)."""
        b = self._batch
        if not self._fixed and self._seq is None:  # every event created, in order
            n = len(b)
            return zip(b.event_id, range(self._first, self._first + n), b.ts_text,
                       b.cost_nanos, b.cost_source, b.conversation_id,
                       itertools.repeat(True, n), strict=True)
        return self._mixed_summaries()

    def _mixed_summaries(self) -> Iterator[tuple[str, int, str, int, str, str | None, bool]]:
        b = self._batch
        fixed = self._fixed
        for i in range(len(b)):
            a = fixed.get(i)
            if a is not None:
                yield (a.event_id, a.seq, a.ts, a.cost_nanos, a.cost_source,
                       a.conversation_id, a.created)
            else:
                seq = self._first + i if self._seq is None else self._seq[i]
                yield (b.event_id[i], seq, b.ts_text[i], b.cost_nanos[i], b.cost_source[i],
                       b.conversation_id[i], True)
