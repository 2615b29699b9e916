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

The columns, the checks and the canonical key order all come from the event schema
table (``ledger.model.schema.FIELDS``). The checks (``_scan``) and the encoding
(``_encode``) run in C when ``ledger.model._native`` was built at install (a C compiler
was there; ``NATIVE``), else in the pure-Python code here (``_scan_python``,
``_encode_python``); the C loops are handed the table's field specifications once, at
import (``_native.configure``), and the results are the same (the tests run both and
compare each with the per-event path). ``LLMRING_PURE_PYTHON=1`` in the environment
turns the C loops off. Prices are looked up per model, not per event
(``PriceBook.price_columns``, and ``OverridePricer.price_columns`` for a project with
price overrides).

The result, a ``PreparedBatch``, is columnar: it turns into the Arrow table of the rows
appended (``table``) and the journal payload of the batch without building a Python
object per event.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import operator
import os
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, overload

import numpy as np
import orjson
import pyarrow as pa

from ledger.model import schema
from ledger.model.event import (
    CANONICAL_VERSION,
    EARLIEST_TS,
    FUTURE_SKEW,
    GENERATED_MARK,
    MAX_METADATA_BYTES,
    MAX_SAFE_INT,
    Ack,
    EventValidationError,
    Prepared,
    Pricer,
    conversation_id_of,
    format_ts,
    new_event_id,
    parse_event,
    prepare,
    ts_to_us,
    us_to_datetime,
)
from ledger.model.money import MAX_COST_NANOS, usd_to_nanos
from ledger.model.native import NATIVE_MODULE as _native  # _scan and _encode in C, when built
from ledger.model.price_overrides import prices_columns
from ledger.model.schema import EVENT_SCHEMA, REQUIRED, ROW_FIELDS, TOKEN_FIELDS

NATIVE = _native is not None
"""Whether batches are prepared by the C loops of ``ledger.model._native``."""

# Keys an event may carry (field names and the ``timestamp`` alias of ``ts``).
EVENT_KEYS = schema.INPUT_KEYS
_BAD_TEXT = schema.UNSAFE_CHARACTER
_BAD_ID = re.compile(_BAD_TEXT.pattern + r"|\s")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_SHA256 = re.compile(r"(?:[0-9a-f]{64}\n)*")
# RFC 3339 with a time zone, as ``datetime.fromisoformat`` and pydantic read it alike.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ONE_BY_ONE = 4  # smaller batches are prepared one event at a time
_FEW = 16  # fewer values than this are converted one by one (no array set-up)

# -- the columns, from the schema table ---------------------------------------------------

# A field held in two forms: ``ts`` in µs and as its canonical text, ``metadata`` as the
# object and as its canonical JSON text (the stored form).
_FORMS = {"ts": ("ts_us", "ts_text"), "metadata": ("metadata", "metadata_json")}
# The column of a row field or a canonical key (``tenant`` is one value for the batch).
_SOURCE = {"ts": "ts_text", "metadata": "metadata_json"}
FIELD_COLUMNS: tuple[str, ...] = tuple(
    column for f in schema.RECORDED if f.given for column in _FORMS.get(f.name, (f.name,)))
"""The columns of the fields a caller gives."""
BATCH_COLUMNS: tuple[str, ...] = (
    *FIELD_COLUMNS, "generated", "ts_given", "cost_given", "canonical", "leaf_hash", "digest")
"""Every column of a ``PreparedBatch``: the given fields', then what preparing found."""

# The fields the column checks handle one rule at a time (``schema.EventField.check``);
# ``ts``, ``cost`` and ``metadata`` have code of their own.
_SIMPLE_CHECKS = ("id", "text", "count", "choice", "sha256")
_SCAN_FIELDS = tuple(f for f in schema.GIVEN if f.check in _SIMPLE_CHECKS)
_TS = next(f for f in schema.GIVEN if f.check == "timestamp")
_COST = next(f for f in schema.GIVEN if f.check == "usd")
_METADATA = next(f for f in schema.GIVEN if f.check == "metadata")
_SCAN_COLUMNS = ("slow", *(f.name for f in _SCAN_FIELDS), "cost_given", "ts_us", "ts_given",
                 "ts_text", "metadata", "metadata_json")
"""What ``_scan`` returns, in this order (``cost_nanos`` and ``cost_source``: resolved)."""
_ENCODINGS = {"str": 0, "str_or_null": 1, "int": 2, "raw": 3}
_DIGEST_RULES = {"same": 0, "if_cost_given": 1, "if_ts_given": 2, "left_out": 3}


def _encoding(key: str) -> str:
    """How the value of canonical ``key`` is written: a JSON string (``str``; or null,
    ``str_or_null``), an integer or null (``int``), or text that is JSON already."""
    if key == schema.VERSION_KEY:
        return "int"
    f = schema.BY_NAME[key]
    if f.check == "metadata":
        return "raw"
    if f.type is int:
        return "int"
    return "str_or_null" if f.nullable else "str"


def _digest_rule(key: str) -> str:
    """What the idempotency digest (``event.comparison_digest``) does with ``key``."""
    if key == schema.VERSION_KEY:
        return "left_out"
    if key in schema.PRICE_FIELDS:
        return "if_cost_given"
    return "if_ts_given" if key == _TS.name else "same"


_CANONICAL = tuple((key, _encoding(key), _digest_rule(key)) for key in schema.CANONICAL_KEYS)


def native_spec() -> dict[str, Any]:
    """What ``_native.configure`` is given: the checks of the simple fields (key, check,
    shortest, longest or largest, default, whether null is allowed, choices), the keys of
    the others (and the ``cost_source`` of a stated cost), where ``cost_nanos`` and
    ``cost_source`` are among the simple fields, the canonical keys in order with
    their encoding and digest rule, and the characters no id, text or metadata key may
    hold (``schema.UNSAFE_RANGES``)."""
    return {
        "keys": frozenset(EVENT_KEYS),
        "fields": tuple(
            (f.name, _SIMPLE_CHECKS.index(f.check), f.min_len, f.max_len,
             None if f.default is REQUIRED else f.default, f.optional, f.choices)
            for f in _SCAN_FIELDS),
        "special": (_TS.name, _TS.alias, _COST.name, _METADATA.name,
                    schema.STATED_COST_SOURCE),
        "cost_columns": tuple(_SCAN_COLUMNS.index(n) - 1 for n in ("cost_nanos",
                                                                     "cost_source")),
        "canonical": tuple((key, _ENCODINGS[enc], _DIGEST_RULES[rule])
                           for key, enc, rule in _CANONICAL),
        "unsafe": schema.UNSAFE_RANGES,
    }


if _native is not None:
    _native.configure(**native_spec())


class PreparedBatch:
    """Validated events ready to append, one list per column of ``BATCH_COLUMNS``
    (``i``-th event at ``[i]``), all of one ``tenant``. ``digest`` is empty for an event
    whose id the ledger generated."""

    __slots__ = ("tenant", *BATCH_COLUMNS)

    def __init__(self, tenant: str, **columns: list[Any]) -> None:
        self.tenant = tenant
        for name in BATCH_COLUMNS:
            setattr(self, name, columns.pop(name))
        if columns:
            raise TypeError(f"not columns of a batch: {', '.join(columns)}")

    @classmethod
    def _of(cls, tenant: str, columns: Iterator[list[Any]] | Sequence[list[Any]]
            ) -> PreparedBatch:
        """A batch of ``columns`` in ``BATCH_COLUMNS`` order (no keywords to match: the
        per-append path slices a batch for every event)."""
        out = object.__new__(cls)
        out.tenant = tenant
        for name, column in zip(BATCH_COLUMNS, columns, strict=True):
            setattr(out, name, column)
        return out

    def __len__(self) -> int:
        return len(self.event_id)

    def column(self, name: str) -> list[Any]:
        """The column ``name`` (one of ``BATCH_COLUMNS``)."""
        return getattr(self, name)

    def extend(self, other: PreparedBatch) -> None:
        """Append the events of ``other`` (of the same tenant) after these."""
        for name in BATCH_COLUMNS:
            getattr(self, name).extend(getattr(other, name))

    def fields(self, i: int) -> dict[str, Any]:
        """The canonical fields of event ``i`` (as ``Prepared.fields``: ``ts`` last)."""
        out = {name: self.tenant if name == "tenant" else getattr(self, name)[i]
               for name in _PREPARED_FIELDS}
        out["ts"] = self.ts_text[i]
        return out

    def prepared(self, i: int) -> Prepared:
        """Event ``i`` as a ``Prepared`` (for the rare per-event decisions)."""
        return Prepared(
            event_id=self.event_id[i], generated_id=self.generated[i], tenant=self.tenant,
            ts_us=self.ts_us[i], ts_given=self.ts_given[i], cost_given=self.cost_given[i],
            fields=self.fields(i), metadata_json=self.metadata_json[i],
            canonical=self.canonical[i], leaf_hash=self.leaf_hash[i], digest=self.digest[i])

    def _row_columns(self, seq: Any, recorded: Any) -> list[Any]:
        """The columns of the stored row (``ROW_FIELDS`` order); ``seq`` and ``recorded``
        stand for those two."""
        columns = list(_STORED_COLUMNS_OF(self))
        for at, value in ((_SEQ_AT, seq), (_RECORDED_AT, recorded)):  # ascending positions
            columns.insert(at, value)
        return columns

    def table(self, seqs: np.ndarray, recorded_us: int,
              positions: Sequence[int] | None = None) -> pa.Table:
        """The rows of the events at ``positions`` (all, in order, when None) as an Arrow
        table of ``EVENT_SCHEMA``; ``seqs``: each row's ``seq``."""
        n = len(self) if positions is None else len(positions)
        seq = np.asarray(seqs, dtype=np.int64)
        recorded = np.full(n, recorded_us, dtype=np.int64)
        columns = self._row_columns(seq, recorded)
        if positions is not None:
            columns = [c if c is seq or c is recorded else [c[i] for i in positions]
                       for c in columns]
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns, EVENT_SCHEMA, strict=True)]
        return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)

    def slice(self, start: int, end: int) -> PreparedBatch:
        """Events ``start`` to ``end`` (exclusive) as a batch of their own."""
        return PreparedBatch._of(self.tenant,
                                 [column[start:end] for column in _BATCH_COLUMNS_OF(self)])

    def rows(self, first_seq: int, recorded_us: int,
             positions: Sequence[int] | None = None) -> list[tuple[Any, ...]]:
        """The rows of the events at ``positions`` (all when None) as tuples in
        ``ROW_FIELDS`` order, numbered from ``first_seq`` (for small appends)."""
        picked = range(len(self)) if positions is None else positions
        seq = range(first_seq, first_seq + len(picked))
        recorded = itertools.repeat(recorded_us, len(picked))
        columns = self._row_columns(seq, recorded)
        if positions is not None:
            columns = [c if c is seq or c is recorded else [c[i] for i in positions]
                       for c in columns]
        return list(zip(*columns, strict=True))

    @classmethod
    def from_prepared(cls, tenant: str, items: Sequence[Prepared]) -> PreparedBatch:
        """Columns of events prepared one by one."""
        columns: dict[str, list[Any]] = {name: [] for name in BATCH_COLUMNS}
        for p in items:
            _put(columns, len(columns["event_id"]), p, append=True)
        return cls(tenant, **columns)


# Column getters of ``PreparedBatch``: every column, and the columns of a stored row
# (``ROW_FIELDS`` order, less ``seq`` and ``recorded_at``, which an append supplies).
_BATCH_COLUMNS_OF = operator.attrgetter(*BATCH_COLUMNS)
_ROW_SOURCES = {"ts": "ts_us", "metadata": "metadata_json"}
_SEQ_AT, _RECORDED_AT = sorted((ROW_FIELDS.index("seq"), ROW_FIELDS.index("recorded_at")))
assert (ROW_FIELDS[_SEQ_AT], ROW_FIELDS[_RECORDED_AT]) == ("seq", "recorded_at")
_STORED_COLUMNS_OF = operator.attrgetter(*(
    _ROW_SOURCES.get(name, name) for name in ROW_FIELDS if name not in ("seq", "recorded_at")))

# ``PreparedBatch.fields``: the canonical fields in table order (``ts`` last).
_PREPARED_FIELDS = tuple(f.name for f in schema.RECORDED if f.canonical and f.name != "ts")


def _put(columns: dict[str, list[Any]], i: int, p: Prepared, *, append: bool = False) -> None:
    """Event ``p`` (prepared one by one) into ``columns`` at ``i`` (or at the end)."""
    f = p.fields
    values = {name: f[name] for name in FIELD_COLUMNS if name in f}
    values.update(
        event_id=p.event_id, ts_us=p.ts_us, ts_text=f["ts"], metadata_json=p.metadata_json,
        generated=p.generated_id, ts_given=p.ts_given, cost_given=p.cost_given,
        canonical=p.canonical, leaf_hash=p.leaf_hash, digest=p.digest)
    for name, value in values.items():
        if append:
            columns[name].append(value)
        else:
            columns[name][i] = value


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
    c = _scan(events, list(received_us))
    slow = c.pop("slow")
    event_id, conversation_id, kind, provider, model, ts_us = (
        c["event_id"], c["conversation_id"], c["kind"], c["provider"], c["model"], c["ts_us"])
    cost_nanos, cost_source, cost_given = c["cost_nanos"], c["cost_source"], c["cost_given"]
    tokens = [c[name] for name in TOKEN_FIELDS]

    # -- the events the column checks did not clear: one by one -------------------------
    fallback: dict[int, Prepared] = {}
    for i, is_slow in enumerate(slow):
        if is_slow:
            fallback[i] = _prepare_one(events[i], i, tenant, received_us[i], pricer)

    # -- defaults: ids and prices --------------------------------------------------------
    generated = [False] * n
    need_ids = [i for i in range(n) if event_id[i] is None and i not in fallback]
    conv_ids = [i for i in range(n) if kind[i] == "conversation"
                and conversation_id[i] is None and i not in fallback]
    fresh = new_event_ids([ts_us[i] // 1000 for i in need_ids])
    for k, i in enumerate(need_ids):
        event_id[i] = fresh[k]
        generated[i] = True
    for i in conv_ids:
        conversation_id[i] = conversation_id_of(event_id[i])
    price_id = c["price_id"]
    unpriced = [i for i in range(n) if not cost_given[i] and i not in fallback]
    if prices_columns(pricer):  # many at a time, the time in µs (no datetime per event)
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
    c["generated"] = generated
    for name in ("canonical", "leaf_hash", "digest"):  # filled in below
        c[name] = [b""] * n

    # -- the events prepared one by one take their place in the columns ----------------
    for i, p in fallback.items():
        _put(c, i, p)

    # -- canonical bytes, leaf hashes, digests -------------------------------------------
    columns = tuple(tenant if key == "tenant" else CANONICAL_VERSION
                    if key == schema.VERSION_KEY else c[_SOURCE.get(key, key)]
                    for key in schema.CANONICAL_KEYS)
    canonical, leaf, digest = _encode(columns, c["ts_given"], cost_given,
                                      [not g for g in generated], slow)
    for i, p in fallback.items():  # the per-event path's bytes (e.g. floats in metadata)
        canonical[i], leaf[i], digest[i] = p.canonical, p.leaf_hash, p.digest
    c["canonical"], c["leaf_hash"], c["digest"] = canonical, leaf, digest
    return PreparedBatch(tenant, **c)


def _scan(events: Sequence[Any], received_us: list[int]) -> dict[str, list[Any]]:
    """The column checks (``_native.scan`` when built, else ``_scan_python``): which events
    are plain (a dict of known keys whose values pass the checks, run once per column)
    and their columns by name (``_SCAN_COLUMNS``). An event marked ``slow`` has
    placeholders in the other columns: the per-event path decides it."""
    if _native is None:
        return _scan_python(events, received_us)
    low = ts_to_us(EARLIEST_TS)
    high = ts_to_us(datetime.now(UTC) + FUTURE_SKEW)
    limits = (MAX_METADATA_BYTES, MAX_SAFE_INT, MAX_COST_NANOS)
    columns = _native.scan(events if type(events) is list else list(events), received_us,
                           low, high, _usd_nanos, limits)
    return dict(zip(_SCAN_COLUMNS, columns, strict=True))


def _scan_python(events: Sequence[Any], received_us: list[int]) -> dict[str, list[Any]]:
    n = len(events)
    slow = [not (type(e) is dict and e.keys() <= EVENT_KEYS and not (
        _TS.name in e and _TS.alias in e)) for e in events]
    get = _Columns(events, slow)
    out: dict[str, list[Any]] = {"slow": slow}

    # -- the fields with one rule each (texts, counts, choices, hashes) -------------------
    for f in _SCAN_FIELDS:
        column = out[f.name] = get(f.name, None if f.default is REQUIRED else f.default)
        if f.check in ("id", "text"):
            _check_texts(column, slow, get.skipped, f.max_len,
                         _BAD_ID if f.check == "id" else _BAD_TEXT, optional=f.optional,
                         min_len=f.min_len)
        elif f.check == "count":
            _check_ints(column, slow, f.max_len, optional=f.optional)
        elif f.check == "choice":
            _check_choices(column, slow, f.choices, optional=f.optional)
        else:
            _check_sha256(column, slow, optional=f.optional)

    # -- cost ----------------------------------------------------------------------------
    cost_in = get(_COST.name)
    cost_nanos_in, cost_source_in = out["cost_nanos"], out["cost_source"]
    cost_nanos: list[Any] = [None] * n
    cost_source: list[Any] = [None] * n
    cost_given = [False] * n
    for i in range(n):
        if slow[i]:
            continue
        c, cn, src = cost_in[i], cost_nanos_in[i], cost_source_in[i]
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
        cost_source[i] = src or schema.STATED_COST_SOURCE
    out.update(cost_nanos=cost_nanos, cost_source=cost_source, cost_given=cost_given)

    # -- timestamps ----------------------------------------------------------------------
    ts_in = get(_TS.name)
    ts_alias = get(_TS.alias)
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
            ts_us[i] = received_us[i]  # a placeholder: the per-event path decides it
    out.update(ts_us=ts_us, ts_given=ts_given, ts_text=_format_ts(ts_us))

    # -- metadata ------------------------------------------------------------------------
    metadata = get(_METADATA.name)
    metadata_json: list[str] = [""] * n
    for i, meta in enumerate(metadata):
        if slow[i]:
            continue
        if meta is None:
            if _METADATA.name in events[i]:
                slow[i] = True
                continue
            meta = metadata[i] = {}
        text = _simple_metadata_json(meta)
        if text is None:
            slow[i] = True
        else:
            metadata_json[i] = text
    out.update(metadata=metadata, metadata_json=metadata_json)
    return {name: out[name] for name in _SCAN_COLUMNS}


def _encode(columns: tuple[Any, ...], ts_given: list[bool], cost_given: list[bool],
            want_digest: list[bool],
            skip: list[bool]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The canonical bytes (RFC 8785) and leaf hash of each event, and the idempotency
    digest of those in ``want_digest`` (``b""`` for the others, and for all three of
    the events in ``skip``). ``columns``: one per key of ``schema.CANONICAL_KEYS``, in
    that order: the events' values (a list; ``ts`` as its canonical text, ``metadata`` as
    its canonical JSON text), or one value for all (``tenant``, ``v``).
    ``_native.encode`` when built, else ``_encode_python``."""
    if _native is None:
        return _encode_python(columns, ts_given, cost_given, want_digest, skip)
    return _native.encode(columns, ts_given, cost_given, want_digest, skip)


def stored_leaf_hashes(table: pa.Table, tenant: str) -> list[bytes]:
    """The leaf hash of every event row of a stored segment ``table``, recomputed in bulk
    (``_encode``): for each row the bytes of ``event.canonical_bytes_of_stored`` (``ts``
    in its canonical text, the stored metadata text spliced in as it is, a missing one
    as ``{}``). ``TypeError`` or ``ValueError`` when a column does not hold the stored
    type (the audit then takes its per-row path, which says what is wrong)."""
    ts = table.column(_TS.name)
    if ts.type != schema.TS_TYPE or ts.null_count:
        raise TypeError(f"{_TS.name} is not a {schema.TS_TYPE} column without nulls")
    for key in schema.CANONICAL_KEYS:  # each encoder is lenient its own way: check here
        if key in schema.EVENT_SCHEMA.names and \
                table.column(key).type != schema.EVENT_SCHEMA.field(key).type:
            raise TypeError(f"{key} is not a {schema.EVENT_SCHEMA.field(key).type} column")
    us = ts.cast(pa.int64()).to_numpy()
    ts_text = [t + "Z" for t in np.datetime_as_string(us.astype("datetime64[us]"),
                                                       unit="us").tolist()]
    metadata = [m or "{}" for m in table.column(_METADATA.name).to_pylist()]
    columns = tuple(tenant if key == "tenant" else CANONICAL_VERSION
                    if key == schema.VERSION_KEY else ts_text if key == _TS.name
                    else metadata if key == _METADATA.name
                    else table.column(key).to_pylist()
                    for key in schema.CANONICAL_KEYS)
    none = [False] * table.num_rows
    return _encode(columns, none, none, none, none)[1]


def _encode_python(columns: tuple[Any, ...], ts_given: list[bool], cost_given: list[bool],
                   want_digest: list[bool],
                   skip: list[bool]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """``_encode`` in Python: each column made JSON text once (see ``_JsonTexts``), then
    one ``%`` template per event, built from the canonical keys (it gives the bytes
    ``orjson.dumps`` gives for the sorted dict; the tests compare both)."""
    texts = _JsonTexts()
    parts: list[str] = []
    digest_parts: list[str] = []
    values: list[Any] = []  # the per-event columns, as JSON text
    cost_slots: list[int] = []  # their places in a row that the digest may null
    ts_slots: list[int] = []
    for (key, encoding, rule), column in zip(_CANONICAL, columns, strict=True):
        if isinstance(column, list):
            slot = "%s"
            if rule == "if_cost_given":
                cost_slots.append(len(values))
            elif rule == "if_ts_given":
                ts_slots.append(len(values))
            if encoding == "str" and rule == "same":  # quoted in the template
                slot = '"%s"'
                values.append(texts.inner(column))
            elif encoding == "str":
                values.append(texts.quoted(column))
            elif encoding == "str_or_null":
                values.append(texts.nullable(column))
            elif encoding == "int" and None in column:
                values.append(["null" if v is None else v for v in column])
            else:
                values.append(column)
        else:  # one value for every event: written into the template
            slot = _json_value(column, encoding).replace("%", "%%")
        part = f"{orjson.dumps(key).decode()}:{slot}"
        parts.append(part)
        if rule != "left_out":
            digest_parts.append(part)
    template = "{" + ",".join(parts) + "}"
    digest_template = "{" + ",".join(digest_parts) + "}"
    sha256 = hashlib.sha256
    canonical: list[bytes] = []
    leaf: list[bytes] = []
    digest: list[bytes] = []
    for i, row in enumerate(zip(*values, strict=True)):
        if skip[i]:
            canonical.append(b"")
            leaf.append(b"")
            digest.append(b"")
            continue
        body = (template % row).encode()
        canonical.append(body)
        leaf.append(sha256(b"\x00" + body).digest())
        if not want_digest[i]:
            digest.append(b"")
            continue
        stated = list(row)
        if not cost_given[i]:
            for k in cost_slots:
                stated[k] = "null"
        if not ts_given[i]:
            for k in ts_slots:
                stated[k] = "null"
        digest.append(sha256((digest_template % tuple(stated)).encode()).digest()[:16])
    return canonical, leaf, digest


def _json_value(value: Any, encoding: str) -> str:
    if value is None:
        return "null"
    if encoding == "raw":
        return value
    return orjson.dumps(value).decode()


class _JsonTexts:
    """Columns of strings as JSON text for the canonical templates. A column is checked
    once (one scan of its joined values): values with nothing to escape are quoted as
    they are; a column with a quote, backslash or control character is escaped by
    ``orjson`` (RFC 8785 escapes exactly those; other characters, astral ones included,
    are written as UTF-8)."""

    _ESCAPE = re.compile(r'["\\\x00-\x1f]')

    def inner(self, column: list[str]) -> list[str]:
        """The escaped text between the quotes, for a column without nulls."""
        if self._ESCAPE.search("".join(column)) is None:
            return column
        dumps = orjson.dumps
        return [dumps(v).decode()[1:-1] for v in column]

    def quoted(self, column: list[str]) -> list[str]:
        """The JSON string of each entry, for a column without nulls."""
        if self._ESCAPE.search("".join(column)) is None:
            return [f'"{v}"' for v in column]
        dumps = orjson.dumps
        return [dumps(v).decode() for v in column]

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


def _check_sha256(values: list[Any], slow: list[bool], *, optional: bool) -> None:
    """Mark as slow the events whose value is not 64 lowercase hex digits."""
    present = [v for v in values if v is not None]
    if (optional or len(present) == len(values)) and all(
            type(v) is str for v in present) and _SHA256.fullmatch(
            "".join(v + "\n" for v in present)):
        return
    for i, v in enumerate(values):
        if v is None:
            slow[i] = slow[i] or not optional
        elif not (type(v) is str and _SHA256.fullmatch(v + "\n")):
            slow[i] = True


def _check_ints(values: list[Any], slow: list[bool], limit: int, *, optional: bool) -> None:
    """Mark as slow the events whose value is not an ``int`` from 0 to ``limit``."""
    for i, v in enumerate(values):
        if type(v) is int:
            if not 0 <= v <= limit:
                slow[i] = True
        elif v is not None or not optional:
            slow[i] = True


def _check_choices(values: list[Any], slow: list[bool], choices: tuple[str, ...], *,
                   optional: bool) -> None:
    """Mark as slow the events whose value is not one of ``choices``."""
    for i, v in enumerate(values):
        if v is None:
            if not optional:
                slow[i] = True
        elif type(v) is not str or v not in choices:
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
        if type(key) is not str or _BAD_TEXT.search(key):
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
        us = pa.array(given, type=schema.TS_TYPE).cast(pa.int64()).to_pylist()
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

    def created(self) -> Iterator[tuple[int, int, int]]:
        """``(seq, ts_us, cost_nanos)`` of each event this append created (repeats and
        pairings left out), without building ``Ack`` objects (for budgets)."""
        b = self._batch
        fixed = self._fixed
        for i in range(len(b)):
            a = fixed.get(i)
            if a is not None:
                if a.created:
                    yield a.seq, a.ts_us, a.cost_nanos
                continue
            seq = self._first + i if self._seq is None else self._seq[i]
            yield seq, int(b.ts_us[i]), int(b.cost_nanos[i])

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
