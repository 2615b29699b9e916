"""Events: the immutable record of one LLM call.

This module owns the pydantic models of an event, ``EventIn`` (what a caller submits)
and ``Event`` (what is read back), both built from the schema table
(``ledger.model.schema.FIELDS``, docs/formats.md), the validation rules of what callers submit,
the event's **canonical bytes** (RFC 8785 / JCS of every field except ``seq`` and
``recorded_at``, with ``ts`` as RFC 3339 UTC microseconds ``Z`` and ``"v": 1``), its
**leaf hash** ``SHA-256(0x00 ‖ canonical bytes)``, and the idempotency digest that decides
whether a repeated ``event_id`` carries the same content.

Canonical bytes are produced by ``orjson`` with sorted keys when every value is of a kind
for which its output is byte-identical to RFC 8785 (strings, integers within ±(2⁵³−1),
booleans, nulls, objects whose keys are all in the Basic Multilingual Plane); anything
else (floats, astral-plane keys) goes through the reference ``rfc8785`` encoder. The test
suite checks the two paths agree on generated events.

Absent optional fields are serialized as ``null``: every canonical event has the same key
set, so a third party can recompute the leaf hash from an exported event alone.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol, Self

import orjson
import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from ledger.errors import EventValidationError
from ledger.errors import IdConflictError as IdConflictError  # re-exported
from ledger.model.dates import RANGE_TEXT, utc_instant
from ledger.model.money import MAX_COST_NANOS, usd_to_nanos
from ledger.model.schema import (
    CANONICAL_FIELDS,
    CANONICAL_VERSION,
    GIVEN,
    ID_FIELDS,
    LEDGER_FIELDS,
    MAX_ID,
    MAX_SAFE_INT,
    MAX_TEXT,
    PRICE_FIELDS,
    RECORDED,
    REQUIRED,
    ROW_FIELDS,
    STATED_COST_SOURCE,
    STORED_FIELDS,
    TEXT_FIELDS,
    VERSION_KEY,
    EventField,
    unsafe_character,
)

MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 16
FUTURE_SKEW = timedelta(hours=24)
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)



_SURROGATE = re.compile("[\ud800-\udfff]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_WHITESPACE = re.compile(r"\s")
UNSAFE_WORDS = ("ids and names may not hold control, bidirectional-formatting or zero-width "
                "characters, nor lone surrogates")


def _check_text(value: str | None, name: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    unsafe = unsafe_character(value)
    if unsafe is not None:
        raise ValueError(f"{name} contains {unsafe}: {UNSAFE_WORDS}")
    return value


def _check_metadata(value: Any, depth: int = 0, *, given: bool = False) -> bool:
    """Validate a metadata value; return True if it needs the reference JCS encoder.
    ``given``: a caller's, whose keys are identifiers (none of ``UNSAFE_RANGES``); a
    stored one is read as it was accepted."""
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise ValueError("metadata integers must be within ±(2^53-1) (RFC 8785 / I-JSON)")
        return False
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("metadata numbers must be finite")
        return True
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise ValueError("metadata strings must not contain lone surrogates")
        return False
    if isinstance(value, list):
        slow = False
        for item in value:
            slow |= _check_metadata(item, depth + 1, given=given)
        return slow
    if isinstance(value, dict):
        slow = False
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("metadata keys must be strings")
            unsafe = unsafe_character(key) if given else None
            if unsafe is not None:
                raise ValueError(f"metadata keys must not contain {unsafe}: {UNSAFE_WORDS}")
            if _SURROGATE.search(key):
                raise ValueError("metadata keys must not contain lone surrogates")
            if _ASTRAL.search(key):
                slow = True
            slow |= _check_metadata(item, depth + 1, given=given)
        return slow
    raise ValueError(f"metadata values must be JSON (got {type(value).__name__})")


class _EventInRules(BaseModel):
    """The validation rules of ``EventIn`` (its fields come from ``schema.FIELDS``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_ledger_fields(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            given = [f for f in LEDGER_FIELDS if f in data]
            if given:
                raise ValueError(
                    f"{', '.join(given)} cannot be set by the caller: the ledger assigns it"
                    " (the tenant comes from the project / API key)"
                )
            if "cost" in data and isinstance(data["cost"], float):
                data = dict(data)
                data["cost"] = repr(data["cost"])
            if isinstance(data.get("latency_ms"), float):
                value = data["latency_ms"]
                if math.isfinite(value):
                    data = dict(data)
                    data["latency_ms"] = round(value)
        return data

    @field_validator(*(f.name for f in GIVEN if f.check == "usd"), mode="before",
                     check_fields=False)
    @classmethod
    def _cost_text(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError("cost must be a number of USD")
        nanos = usd_to_nanos(value)
        if nanos > MAX_COST_NANOS:
            raise ValueError(f"{value} USD is more than one call may cost "
                             f"({MAX_COST_NANOS} nano-USD, about 9 million USD)")
        return Decimal(nanos) / Decimal(1_000_000_000)

    @field_validator(*(f.name for f in GIVEN if f.check == "count"), mode="before",
                     check_fields=False)
    @classmethod
    def _no_bool_counts(cls, value: Any) -> Any:
        if isinstance(value, bool):  # an int to Python, never a count on the wire
            raise ValueError("must be an integer, not a boolean")
        return value

    @field_validator(*ID_FIELDS, check_fields=False)
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        value = _check_text(value, "id", MAX_ID)
        if value is not None and _WHITESPACE.search(value):
            raise ValueError("ids must not contain whitespace")
        return value

    @field_validator(*TEXT_FIELDS, check_fields=False)
    @classmethod
    def _texts(cls, value: str | None) -> str | None:
        return _check_text(value, "text")

    @field_validator(*(f.name for f in GIVEN if f.check == "timestamp"), check_fields=False)
    @classmethod
    def _ts(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        instant = utc_instant(value)
        if instant is None:
            raise ValueError(f"ts is out of range ({RANGE_TEXT})")
        value = instant
        if value < EARLIEST_TS:
            raise ValueError("ts is before 2000-01-01")
        if value > datetime.now(UTC) + FUTURE_SKEW:
            raise ValueError("ts is more than 24 hours in the future")
        return value

    @field_validator(*(f.name for f in GIVEN if f.check == "metadata"), check_fields=False)
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_metadata(value, given=True)
        return value

    @model_validator(mode="after")
    def _cost_consistency(self) -> Self:
        cost, cost_nanos, cost_source = (
            self.cost, self.cost_nanos, self.cost_source)  # type: ignore[attr-defined]
        if cost is not None and cost_nanos is not None and usd_to_nanos(cost) != cost_nanos:
            raise ValueError("cost and cost_nanos disagree; send one of them")
        if cost_source is not None and cost is None and cost_nanos is None:
            raise ValueError(f"cost_source {cost_source!r} needs a cost")
        return self


def _input_field(f: EventField) -> tuple[Any, Any]:
    """The annotation and ``Field`` of ``f`` in ``EventIn``."""
    if f.check == "choice":
        kind: Any = Literal[f.choices]  # type: ignore[valid-type]
    else:
        kind = f.type
    annotation = kind | None if f.optional else kind
    rules: dict[str, Any] = {}
    if isinstance(f.default, dict | list):
        rules["default_factory"] = type(f.default)
    elif f.default is not REQUIRED:  # a required field has neither
        rules["default"] = f.default
    if f.alias is not None:
        rules["alias"] = f.alias
    if f.check in ("id", "text"):
        if f.min_len:
            rules["min_length"] = f.min_len
        rules["max_length"] = f.max_len
    elif f.check == "count":
        rules.update(ge=0, le=f.max_len)
        if f.strict:
            rules["strict"] = True
    elif f.check == "sha256":
        rules["pattern"] = r"^[0-9a-f]{64}$"
    return annotation, Field(**rules)


EventIn = create_model(  # type: ignore[call-overload]
    "EventIn", __base__=_EventInRules, __module__=__name__,
    __doc__="What a caller submits for one call: the event field names, or the usage-log "
            "names of the HTTP API (``timestamp``; ``cost`` in USD). ``event_id`` and ``ts`` "
            "may be omitted. The fields are those of ``schema.FIELDS`` a caller gives.",
    **{f.name: _input_field(f) for f in GIVEN})


def parse_event(data: Mapping[str, Any] | EventIn, *, index: int | None = None) -> EventIn:
    """Validate one submitted event; raise ``EventValidationError`` with readable problems."""
    if isinstance(data, EventIn):
        return data
    if not isinstance(data, Mapping):
        raise EventValidationError([f"an event must be a JSON object, got {type(data).__name__}"],
                                   index=index)
    try:
        return EventIn.model_validate(data)
    except ValidationError as exc:
        raise EventValidationError(_problems(exc), index=index) from None
    except ValueError as exc:
        raise EventValidationError([str(exc)], index=index) from None


def parse_event_json(line: bytes | str, *, index: int | None = None) -> EventIn:
    """Validate one event given as JSON text."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EventValidationError([f"malformed JSON: {exc}"], index=index) from None
    return parse_event(data, index=index)


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known event field"
        out.append(f"{loc}: {msg}")
    return out


def ts_to_us(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def format_ts(us: int) -> str:
    """RFC 3339, UTC, microseconds, ``Z`` suffix (the canonical form)."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_us() -> int:
    return time.time_ns() // 1_000


GENERATED_MARK = 0x1ED  # the 12 ``rand_a`` bits of the ids the ledger generates
_GENERATED_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-71ed-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def new_event_id(ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) for an event that came without an id: the 48-bit Unix time in
    milliseconds of the event's ``ts``, version 7, ``rand_a`` set to ``0x1ed`` (so the
    ledger knows its own ids, see ``is_generated_id``), variant, 62 random bits."""
    ms = time.time_ns() // 1_000_000 if ms is None else ms
    rand = int.from_bytes(os.urandom(8), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | GENERATED_MARK << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_generated_id(event_id: str) -> bool:
    """Whether ``event_id`` has the shape of an id this ledger generates (``new_event_id``).
    A caller may send such an id too (a UUIDv7 with these 12 random bits): only
    ``locates_itself`` tells whether the day the id names is the day of its event."""
    return _GENERATED_ID.fullmatch(event_id) is not None


def locates_itself(event_id: str, ts_us: int) -> bool:
    """Whether an event of ``ts_us`` can be found by the day its id names: the id has the
    generated shape and carries the event's own millisecond, as every id the ledger
    generates does. Any other id must be in the id index to be found."""
    return is_generated_id(event_id) and generated_id_ms(event_id) == ts_us // 1000


def generated_id_ms(event_id: str) -> int:
    """The Unix time in milliseconds a generated id carries (its event's ``ts``)."""
    return int(event_id[:8] + event_id[9:13], 16)


_LAST_US = ts_to_us(datetime.max.replace(tzinfo=UTC))


def generated_id_day(event_id: str) -> str | None:
    """The UTC day (``YYYY-MM-DD``) whose events a generated id can be among: the day of
    the time it carries. None for any other text, and for a generated-shape id whose
    48-bit time lies past year 9999 (no event has such a ``ts``): decoding never raises."""
    if not is_generated_id(event_id):
        return None
    us = generated_id_ms(event_id) * 1000
    return format_ts(us)[:10] if us <= _LAST_US else None


def conversation_id_of(event_id: str) -> str:
    """The conversation id the ledger gives a conversation event sent without one: a
    UUIDv8 (RFC 9562) made of SHA-256 of its event id, so an identical retry names the same
    conversation (and is a repeat, not a conflict)."""
    raw = bytearray(hashlib.sha256(b"llmring-ledger conversation\x00"
                                   + event_id.encode()).digest()[:16])
    raw[6] = 0x80 | raw[6] & 0x0F  # version 8
    raw[8] = 0x80 | raw[8] & 0x3F  # the RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(raw)))


def canonical_json(obj: Any, *, reference: bool = False) -> bytes:
    """RFC 8785 bytes of ``obj``; ``reference`` forces the reference encoder."""
    if reference:
        return rfc8785.dumps(obj)
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def canonical_fields(fields: Mapping[str, Any], ts: str) -> dict[str, Any]:
    """The dict whose JCS serialization is an event's canonical bytes (keys in order)."""
    out = {name: ts if name == "ts" else fields[name] for name in CANONICAL_FIELDS}
    out[VERSION_KEY] = CANONICAL_VERSION
    return out


def leaf_hash_of(canonical: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + canonical).digest()


# ``Prepared.fields``: the canonical fields in table order, ``ts`` (as text) last.
_PREPARED_FIELDS = tuple(f.name for f in RECORDED if f.canonical and f.name != "ts")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated event ready to append: everything but ``seq`` and ``recorded_at``."""

    event_id: str
    generated_id: bool
    tenant: str
    ts_us: int
    ts_given: bool
    cost_given: bool
    fields: dict[str, Any]  # canonical fields (metadata as a dict)
    metadata_json: str  # canonical JSON of metadata alone
    canonical: bytes
    leaf_hash: bytes
    digest: bytes  # idempotency digest (16 bytes), see ``comparison_digest``

    def row(self, seq: int, recorded_at_us: int) -> tuple[Any, ...]:
        """The stored row (``ROW_FIELDS`` order)."""
        return row_of(self.fields, seq=seq, ts_us=self.ts_us, recorded_at_us=recorded_at_us,
                      metadata_json=self.metadata_json, leaf_hash=self.leaf_hash)


def row_of(fields: Mapping[str, Any], **stored: Any) -> tuple[Any, ...]:
    """A stored row (``ROW_FIELDS`` order) from canonical ``fields`` and the stored forms
    in ``stored``: ``seq``, ``ts_us``, ``recorded_at_us``, ``metadata_json``, ``leaf_hash``."""
    values = dict(fields)
    values.update(seq=stored["seq"], ts=stored["ts_us"], recorded_at=stored["recorded_at_us"],
                  metadata=stored["metadata_json"], leaf_hash=stored["leaf_hash"])
    return tuple(values[name] for name in ROW_FIELDS)


def comparison_digest(fields: Mapping[str, Any], *, ts_given: bool, cost_given: bool) -> bytes:
    """Digest of what the caller said: ledger-filled values (a default ``ts``, a computed
    price) are left out, so a blind retry of the same request compares equal."""
    comparable = dict(fields)
    if not ts_given:
        comparable["ts"] = None
    if not cost_given:
        comparable.update(dict.fromkeys(PRICE_FIELDS))
    body = canonical_json(comparable, reference=_needs_reference(comparable))
    return hashlib.sha256(body).digest()[:16]


def _needs_reference(fields: Mapping[str, Any]) -> bool:
    meta = fields.get("metadata")
    return bool(meta) and _check_metadata(meta)


class Pricer(Protocol):
    """What ``prepare`` needs of a price book (``ledger.model.pricing.PriceBook`` satisfies it)."""

    def price(self, provider: str, model: str, input_tokens: int, output_tokens: int,
              cached_input_tokens: int, cache_write_tokens: int, reasoning_tokens: int,
              at: datetime) -> Any: ...


def prepare(
    event: EventIn,
    *,
    tenant: str,
    received_us: int,
    pricer: Pricer | None,
    event_id: str | None = None,
    conversation_id: str | None = None,
) -> Prepared:
    """Resolve defaults and price, and compute canonical bytes, leaf hash and digest."""
    ts_given = event.ts is not None
    ts_us = ts_to_us(event.ts) if event.ts is not None else received_us
    generated_id = event.event_id is None and event_id is None
    eid = event.event_id or event_id or new_event_id(ts_us // 1000)
    conv = event.conversation_id or conversation_id
    if event.kind == "conversation" and conv is None:
        conv = conversation_id_of(eid)

    cost_given = event.cost is not None or event.cost_nanos is not None
    price_id = event.price_id
    if cost_given:
        cost_nanos = event.cost_nanos if event.cost_nanos is not None else usd_to_nanos(event.cost)
        cost_source: str = event.cost_source or STATED_COST_SOURCE
    else:
        priced = None
        if pricer is not None:
            try:
                priced = pricer.price(
                    event.provider, event.model, event.input_tokens, event.output_tokens,
                    event.cached_input_tokens, event.cache_write_tokens,
                    event.reasoning_tokens, us_to_datetime(ts_us),
                )
            except ValueError:
                # Counts the price table cannot apply (e.g. cached > input, as some
                # clients report them): keep the call, marked unpriced, never $0.
                priced = None
        if priced is None:
            cost_nanos, cost_source, price_id = 0, "unpriced", None
        else:
            cost_nanos, cost_source, price_id = priced.cost_nanos, "price_table", priced.price_id

    resolved = {"event_id": eid, "tenant": tenant, "conversation_id": conv,
                "cost_nanos": cost_nanos, "cost_source": cost_source, "price_id": price_id}
    fields: dict[str, Any] = {  # in table order, ``ts`` (as text) last
        name: resolved[name] if name in resolved else getattr(event, name)
        for name in _PREPARED_FIELDS}
    ts = format_ts(ts_us)
    reference = bool(event.metadata) and _check_metadata(event.metadata)
    try:
        canonical = canonical_json(canonical_fields(fields, ts), reference=reference)
        metadata_json = canonical_json(event.metadata, reference=reference).decode()
    except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
        raise EventValidationError([f"metadata: cannot be serialized as JSON ({exc})"]) from None
    if len(metadata_json) > MAX_METADATA_BYTES:
        raise EventValidationError(
            [f"metadata: is {len(metadata_json)} bytes; at most {MAX_METADATA_BYTES} allowed"])
    fields["ts"] = ts
    digest = b"" if generated_id else comparison_digest(
        fields, ts_given=ts_given, cost_given=cost_given)
    return Prepared(
        event_id=eid,
        generated_id=generated_id,
        tenant=tenant,
        ts_us=ts_us,
        ts_given=ts_given,
        cost_given=cost_given,
        fields=fields,
        metadata_json=metadata_json,
        canonical=canonical,
        leaf_hash=leaf_hash_of(canonical),
        digest=digest,
    )


def row_to_fields(row: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """Canonical fields of a stored row (``ts`` in microseconds, metadata as JSON text)."""
    fields = {name: row[name] for name in STORED_FIELDS}
    fields["tenant"] = tenant
    fields["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] else {}
    return fields


def canonical_bytes_of_row(row: Mapping[str, Any], tenant: str) -> bytes:
    """Recompute an event's canonical bytes from a stored row (used by verification)."""
    fields = row_to_fields(row, tenant)
    ts = row["ts"]
    ts_us = ts if isinstance(ts, int) else ts_to_us(ts)
    reference = bool(fields["metadata"]) and _check_metadata(fields["metadata"])
    return canonical_json(canonical_fields(fields, format_ts(ts_us)), reference=reference)


def canonical_bytes_of_stored(values: Mapping[str, Any], tenant: str, ts_text: str,
                              metadata_text: str | None) -> bytes:
    """``canonical_bytes_of_row`` for the audit's bulk path: ``values`` has the stored
    fields (``STORED_FIELDS``), ``ts_text`` is ``ts`` already in the canonical form, and
    the stored metadata text (the RFC 8785 JSON written at append) is spliced in as it is.
    A metadata text that is not the canonical JSON of its object gives other bytes, and
    so another leaf hash: an edited text is still caught."""
    fields = dict(values)
    fields["metadata"] = orjson.Fragment(metadata_text or "{}")
    fields["tenant"] = tenant
    fields["ts"] = ts_text
    fields[VERSION_KEY] = CANONICAL_VERSION
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


class _EventMethods(BaseModel):
    """What a recorded ``Event`` does (its fields come from ``schema.FIELDS``)."""

    model_config = ConfigDict(frozen=True)

    @property
    def cost(self) -> float:
        return self.cost_nanos / 1_000_000_000

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def canonical_bytes(self) -> bytes:
        fields = self.model_dump(exclude={"seq", "recorded_at", "leaf_hash", "ts"})
        reference = bool(self.metadata) and _check_metadata(self.metadata)
        return canonical_json(canonical_fields(fields, format_ts(ts_to_us(self.ts))),
                              reference=reference)

    def to_json_dict(self) -> dict[str, Any]:
        """The exported form: every canonical field plus seq, recorded_at and leaf_hash."""
        data = self.model_dump()
        data["ts"] = format_ts(ts_to_us(self.ts))
        data["recorded_at"] = format_ts(ts_to_us(self.recorded_at))
        return data

    @classmethod
    def from_row(cls, row: Mapping[str, Any], tenant: str) -> Self:
        data = dict(row)
        for key in ("ts", "recorded_at"):
            value = data[key]
            data[key] = us_to_datetime(value) if isinstance(value, int) else value
        data["tenant"] = tenant
        data["metadata"] = orjson.loads(data["metadata"]) if data["metadata"] else {}
        lh = data["leaf_hash"]
        data["leaf_hash"] = lh.hex() if isinstance(lh, bytes | bytearray) else lh
        data.pop("date", None)
        return cls.model_validate(data)


Event = create_model(  # type: ignore[call-overload]
    "Event", __base__=_EventMethods, __module__=__name__,
    __doc__="A recorded event, as read back from the ledger (docs/formats.md): every field of "
            "``schema.FIELDS`` a recorded event has (``leaf_hash`` in hex).",
    **{f.name: (f.type | None if f.nullable else f.type, ...) for f in RECORDED})


@dataclass(frozen=True, slots=True)
class Ack:
    """The acknowledgement of an append: returned again, unchanged, for a repeat."""

    event_id: str
    tenant: str
    seq: int
    ts_us: int
    cost_nanos: int
    cost_source: str
    conversation_id: str | None
    created: bool = True  # False: an identical repeat, or a usage log paired with its call

    @property
    def ts(self) -> str:
        return format_ts(self.ts_us)

    @property
    def cost(self) -> float:
        return self.cost_nanos / 1_000_000_000

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "seq": self.seq,
            "ts": self.ts,
            "cost": self.cost,
            "cost_nanos": self.cost_nanos,
            "cost_source": self.cost_source,
            "conversation_id": self.conversation_id,
            "created": self.created,
        }
