"""Metadata dimensions: naming a metadata key where a report dimension or a selection
filter is accepted, the one rule that turns a key's value into the text reports group by
and filters compare, and the names of the derived (declared) columns of a segment.

* A dimension is a built-in one (``BUILTIN``), ``meta.<key>`` (any metadata key), or a
  bare ``<key>`` that is not a built-in name (``customer`` is ``meta.customer``; a key
  named like a built-in, e.g. ``model``, is reached as ``meta.model`` only).
* A key is 1 to ``MAX_KEY`` characters with no control, bidirectional-formatting or
  zero-width character (``schema.UNSAFE_RANGES``) and no comma (lists are comma-separated).
* The value of a key (``value_of`` in Python, ``extract_sql`` in DuckDB, the same rule):
  a string is itself; any other JSON value (number, true/false, object, array) is its
  JSON text (``42``, ``true``, ``{"a":1}``); an absent key or JSON ``null`` has no value
  (NULL: its events form the "(none)" group of a report and match no filter).
* Declared dimensions (``ledger.storage.dimensions``) are stored in a project's segments
  as extra string columns named ``meta.<key>``, holding exactly ``extract_sql`` of the
  segment's ``metadata``: a query reads the column instead of parsing the JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from ledger.errors import DimensionNameError
from ledger.model.schema import unsafe_character

__all__ = ["BUILTIN", "DimensionNameError", "check_key", "metadata_key", "parse_where",
           "value_of", "where_sql"]

BUILTIN = ("model", "alias", "provider", "kind", "cost_source", "day", "week", "month")
META_PREFIX = "meta."
MAX_KEY = 128
MAX_DECLARED = 16  # declared dimensions per project
MAX_WHERE = 16  # key=value filters per request
MAX_VALUE = 1024  # characters of a filter's value


def check_key(key: Any, *, what: str = "metadata key") -> str:
    """``key`` if it can name a metadata dimension, else ``DimensionNameError``."""
    if not isinstance(key, str) or not key:
        raise DimensionNameError(f"a {what} must be a non-empty string, not {key!r}")
    if len(key) > MAX_KEY:
        raise DimensionNameError(f"{what} {key[:40]!r}… is {len(key)} characters; at most "
                                 f"{MAX_KEY} allowed")
    unsafe = unsafe_character(key)
    if unsafe is not None:
        raise DimensionNameError(f"{what} {key!r} contains {unsafe}: control, "
                                 "bidirectional-formatting and zero-width characters are "
                                 "not allowed")
    if "," in key:
        raise DimensionNameError(f"{what} {key!r} contains a comma")
    return key


def metadata_key(name: str) -> str | None:
    """The metadata key a dimension ``name`` stands for, None for a built-in dimension;
    ``DimensionNameError`` for a name that is neither."""
    if name in BUILTIN:
        return None
    if isinstance(name, str) and name.startswith(META_PREFIX):
        return check_key(name[len(META_PREFIX):])
    return check_key(name, what="dimension")


def value_of(metadata: dict[str, Any], key: str) -> str | None:
    """The value of ``key`` in ``metadata`` by the module's rule (None: no value)."""
    value = metadata.get(key)
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def column_name(key: str) -> str:
    """The derived column of a declared key in a segment."""
    return META_PREFIX + key


def quote_ident(name: str) -> str:
    """``name`` as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_text(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def json_pointer(key: str) -> str:
    """The RFC 6901 pointer to the top-level member ``key``."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def extract_sql(key: str, column: str = "metadata") -> str:
    """SQL (DuckDB) for the value of ``key`` in the JSON text ``column``."""
    return f"json_extract_string(nullif({column}, ''), {sql_text(json_pointer(key))})"


def parse_where(where: Any, *, name: str = "where") -> dict[str, str]:
    """Validate a metadata filter: a mapping of keys to the string each must equal
    (AND). Values compare with the key's value by the module's rule, so ``{"tier": "3"}``
    matches ``"tier": 3`` and ``"tier": "3"``. ``DimensionNameError`` when malformed."""
    if not isinstance(where, dict):
        raise DimensionNameError(f"{name} must be an object of metadata key to value, not "
                                 f"{type(where).__name__}")
    if not where:
        raise DimensionNameError(f"{name} is empty: name at least one metadata key")
    if len(where) > MAX_WHERE:
        raise DimensionNameError(f"{name}: at most {MAX_WHERE} keys")
    out: dict[str, str] = {}
    for key, value in where.items():
        check_key(key, what=f"{name} key")
        if not isinstance(value, str):
            raise DimensionNameError(f"{name}[{key!r}] must be a string, not {value!r} "
                                     "(numbers and booleans are compared as their JSON "
                                     'text: write "3" or "true")')
        if len(value) > MAX_VALUE:
            raise DimensionNameError(f"{name}[{key!r}] is longer than {MAX_VALUE} characters")
        if "\x00" in value:
            raise DimensionNameError(f"{name}[{key!r}] contains a NUL character")
        out[key] = value
    return dict(sorted(out.items()))


def parse_where_text(items: Any, *, name: str = "--where") -> dict[str, str]:
    """``KEY=VALUE`` texts (repeatable, AND) as a filter for ``parse_where``."""
    where: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DimensionNameError(f"{name} {item!r}: write KEY=VALUE, e.g. "
                                     f"{name} customer=acme")
        if key.startswith(META_PREFIX):
            key = key[len(META_PREFIX):]
        if key in where and where[key] != value:
            raise DimensionNameError(f"{name}: {key!r} is given twice with different values "
                                     "(filters are ANDed: no event could match)")
        where[key] = value
    return parse_where(where, name=name)


def matches(metadata: dict[str, Any], where: dict[str, str]) -> bool:
    """Whether an event's ``metadata`` satisfies the filter ``where``."""
    return all(value_of(metadata, k) == v for k, v in where.items())


def where_sql(where: dict[str, str], columns: dict[str, str] | None = None) -> str:
    """A SQL predicate for the filter ``where`` (``parse_where``'s; values as literals),
    each key read from its expression in ``columns`` (key → SQL) or extracted from the
    ``metadata`` JSON."""
    clauses = [f"{(columns or {}).get(key) or extract_sql(key)} = {sql_text(value)}"
               for key, value in where.items()]
    return " AND ".join(clauses) or "TRUE"
