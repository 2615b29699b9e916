"""The event schema: one table, one row per field of an event (docs/formats.md).

``FIELDS`` is the only place where an event field is spelled out. Everything else is
derived from it: the pydantic models ``EventIn`` (what a caller submits) and ``Event``
(what is read back) in ``ledger.model.event``, the canonical key order of the hashed
bytes, the stored row (``ROW_FIELDS``) and its Arrow/Parquet schema (``EVENT_SCHEMA``),
the columns of a ``PreparedBatch`` and the field specifications handed to the C loops
of ``ledger.model._native`` at import (``ledger.model.batch``). Adding a field means a
row here (and, for a new kind of ``check``, its validation rule).

The order of the rows is the order of ``Event``'s fields (and so of exported JSON) and
of the stored row; the canonical bytes sort their keys (RFC 8785). The stored format is
fixed: Arrow columns are all declared nullable and typed as below, whatever a field's
``nullable`` says (that is the value's meaning, used by the models and the encoders).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa

MAX_SAFE_INT = 2**53 - 1  # RFC 8785 / I-JSON integers
MAX_TEXT = 256
MAX_ID = 200
TS_TYPE = pa.timestamp("us", tz="UTC")
CANONICAL_VERSION = 1
VERSION_KEY = "v"  # the canonical bytes' format version, not a field


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""``default`` of a field a caller must give."""

# Characters no identifier-like text may hold (every ``id`` and ``text`` field, the keys
# of ``metadata``, receipt tags), as inclusive code point ranges: the C0 controls, DEL
# and the C1 controls, the bidirectional marks, embeddings, overrides and isolates
# (U+061C, U+200E/F, U+202A..E, U+2066..9), the zero-width characters (U+200B..D,
# U+2060, U+FEFF) and lone surrogates. Such text looks like other text, or reorders what
# is shown around it. Free text (metadata values, conversation content) is kept verbatim.
UNSAFE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x061C, 0x061C), (0x200B, 0x200F),
    (0x202A, 0x202E), (0x2060, 0x2060), (0x2066, 0x2069), (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF))
UNSAFE_CHARACTER: re.Pattern[str] = re.compile(
    "[" + "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in UNSAFE_RANGES) + "]")


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` an identifier may not hold, as ``U+XXXX``; None
    when there is none."""
    found = UNSAFE_CHARACTER.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


# What ``check`` a caller's value goes through (the rule lives in ``ledger.model.event``,
# with its column counterpart in ``ledger.model.batch`` and ``_native.c``):
#   id         a str of min_len..MAX_ID characters, none of UNSAFE_RANGES, no white space
#   text       a str of min_len..MAX_TEXT characters, none of UNSAFE_RANGES
#   count      an int (never a bool) from 0 to MAX_SAFE_INT (``strict``: no lax conversion)
#   choice     one of ``choices``
#   sha256     64 lowercase hex digits
#   timestamp  an aware or naive (= UTC) datetime or RFC 3339 text, 2000-01-01 .. now+24h
#   usd        a number of USD (turned into ``cost_nanos``)
#   metadata   a JSON object, size- and depth-limited, keys without UNSAFE_RANGES
# None: the ledger sets the field; a caller may not.


@dataclass(frozen=True, slots=True)
class EventField:
    """One field of an event."""

    name: str
    type: Any  # the Python type of the recorded value (``Event``); ``cost``: the input's
    arrow: pa.DataType | None  # its stored column; None: not stored in a row
    nullable: bool = False  # the recorded value may be null
    canonical: bool = True  # in the canonical bytes, i.e. hashed into the leaf
    check: str | None = None  # see above; None: set by the ledger
    default: Any = REQUIRED  # when a caller leaves it out (None: optional)
    alias: str | None = None  # another name a caller may use on the wire
    min_len: int = 0
    max_len: int = 0
    strict: bool = True  # counts: only ints (False: pydantic's lax reading too)
    choices: tuple[str, ...] = ()  # for ``check="choice"``: what a caller may send
    dictionary: bool = False  # dictionary-encoded in Parquet
    doc: str = ""

    @property
    def given(self) -> bool:
        """Whether a caller submits this field (``EventIn`` has it)."""
        return self.check is not None

    @property
    def stored(self) -> bool:
        """Whether it is a column of the stored row."""
        return self.arrow is not None

    @property
    def recorded(self) -> bool:
        """Whether a recorded event (``Event``) has it."""
        return self.stored or self.canonical

    @property
    def optional(self) -> bool:
        """Whether a caller may send null (or leave it out, and the ledger fills it in)."""
        return self.default is None


def _tokens(name: str, doc: str) -> EventField:
    return EventField(name, int, pa.int64(), check="count", default=0,
                      max_len=MAX_SAFE_INT, doc=doc)


FIELDS: tuple[EventField, ...] = (
    EventField("event_id", str, pa.string(), check="id", default=None, min_len=1,
               max_len=MAX_ID, doc="the caller's idempotency key, or a UUIDv7 the ledger "
               "generates"),
    EventField("tenant", str, None, doc="the project, from the API key; lives in the path"),
    EventField("seq", int, pa.int64(), canonical=False,
               doc="position in the tenant's log, 0-based, gap-free"),
    EventField("ts", datetime, TS_TYPE, check="timestamp", default=None, alias="timestamp",
               doc="when the call happened (UTC, µs); default: when it was received"),
    EventField("recorded_at", datetime, TS_TYPE, canonical=False,
               doc="when the ledger accepted it"),
    EventField("kind", str, pa.string(), check="choice", default="usage",
               choices=("usage", "conversation"), dictionary=True,
               doc="conversation = usage + stored messages"),
    EventField("conversation_id", str, pa.string(), nullable=True, check="id", default=None,
               min_len=1, max_len=MAX_ID),
    EventField("provider", str, pa.string(), check="text", min_len=1, max_len=MAX_TEXT,
               dictionary=True),
    EventField("model", str, pa.string(), check="text", min_len=1, max_len=MAX_TEXT,
               dictionary=True, doc="the resolved model"),
    EventField("alias", str, pa.string(), check="text", default="", max_len=MAX_TEXT,
               dictionary=True, doc="what the caller asked for"),
    EventField("profile", str, pa.string(), check="text", default="default",
               max_len=MAX_TEXT, dictionary=True),
    _tokens("input_tokens", "prompt tokens"),
    _tokens("output_tokens", "completion tokens"),
    _tokens("cached_input_tokens", "prompt tokens read from a cache"),
    _tokens("cache_write_tokens", "prompt tokens written to a cache"),
    _tokens("reasoning_tokens", "reasoning tokens"),
    EventField("cost", Decimal, None, nullable=True, canonical=False, check="usd",
               default=None, doc="the cost in USD as a caller states it (becomes cost_nanos)"),
    EventField("cost_nanos", int, pa.int64(), check="count", default=None,
               max_len=MAX_SAFE_INT, doc="USD × 10⁹, exact"),
    EventField("cost_source", str, pa.string(), check="choice", default=None,
               choices=("provider", "client"), dictionary=True,
               doc="provider | client (stated) or price_table | unpriced (the ledger's)"),
    EventField("price_id", str, pa.string(), nullable=True, check="text", default=None,
               max_len=MAX_TEXT, dictionary=True, doc="the price-table row used"),
    EventField("latency_ms", int, pa.int64(), nullable=True, check="count", default=None,
               max_len=MAX_SAFE_INT, strict=False),
    EventField("origin", str, pa.string(), nullable=True, check="text", default=None,
               max_len=MAX_TEXT, dictionary=True),
    EventField("id_at_origin", str, pa.string(), nullable=True, check="id", default=None,
               max_len=MAX_ID),
    EventField("metadata", dict[str, Any], pa.string(), check="metadata", default={},
               doc="a JSON object; stored as its canonical JSON text"),
    EventField("content_sha256", str, pa.string(), nullable=True, check="sha256",
               default=None, doc="SHA-256 of the canonical messages + response"),
    EventField("leaf_hash", str, pa.binary(32), canonical=False,
               doc="SHA-256(0x00 ‖ canonical bytes); hex in Event, 32 bytes stored"),
)

BY_NAME: dict[str, EventField] = {f.name: f for f in FIELDS}
GIVEN: tuple[EventField, ...] = tuple(f for f in FIELDS if f.given)
RECORDED: tuple[EventField, ...] = tuple(f for f in FIELDS if f.recorded)

# Fields a caller may never set: they come from the ledger or the API key.
LEDGER_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if not f.given)
# Keys an event may carry: field names and their wire aliases.
INPUT_KEYS: frozenset[str] = frozenset(
    [f.name for f in GIVEN] + [f.alias for f in GIVEN if f.alias])
TOKEN_FIELDS: tuple[str, ...] = tuple(
    f.name for f in FIELDS if f.check == "count" and f.name.endswith("_tokens"))
ID_FIELDS: tuple[str, ...] = tuple(f.name for f in GIVEN if f.check == "id")
TEXT_FIELDS: tuple[str, ...] = tuple(f.name for f in GIVEN if f.check == "text")

# The stored row: column order of segments, the journal tail and projections.
ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored)
ROW_INDEX: dict[str, int] = {name: i for i, name in enumerate(ROW_FIELDS)}
EVENT_SCHEMA: pa.Schema = pa.schema([(f.name, f.arrow) for f in FIELDS if f.stored])
DICTIONARY_COLUMNS: list[str] = [f.name for f in FIELDS if f.stored and f.dictionary]

# The canonical bytes: these keys, sorted (RFC 8785 sorts by UTF-16 code units; the names
# are ASCII), ``ts`` as RFC 3339 text, plus ``"v": CANONICAL_VERSION``.
CANONICAL_FIELDS: tuple[str, ...] = tuple(sorted(f.name for f in FIELDS if f.canonical))
CANONICAL_KEYS: tuple[str, ...] = tuple(sorted((*CANONICAL_FIELDS, VERSION_KEY)))
# Canonical fields as they sit in a stored row (``ts`` and ``metadata`` need converting;
# ``tenant`` lives in the path).
STORED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in FIELDS if f.stored and f.canonical and f.name not in ("ts", "metadata"))
# ``cost_source`` of a cost a caller states without saying whose it is.
STATED_COST_SOURCE = "client"
# Fields whose value a repeated ``event_id`` may leave to the ledger (a default ``ts``, a
# computed price): the idempotency digest compares them only when the caller gave them.
PRICE_FIELDS: tuple[str, ...] = ("cost_nanos", "cost_source", "price_id")
