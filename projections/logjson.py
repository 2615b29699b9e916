"""A page of the API's log objects as JSON text, built column by column.

``log_array_json(table)`` turns a table of ``projections.receipts.LOG_COLUMNS`` into the
bytes ``orjson.dumps`` gives of the list of log dicts ``projections.receipts`` makes of
the same table (``{"id", "type", "conversation_id", …, "timestamp", "seq"}`` in that
order), without a Python object per row: every column becomes an Arrow array of its
values' JSON texts (integers by Arrow's cast, the cost floats and any text needing an
escape by orjson itself, a dictionary-encoded column through its dictionary) and one
element-wise join puts each row's object together. A receipt's 1,000-log page costs a
fraction of a millisecond this way, against milliseconds for the dicts and their dump.

With the C loops built (``ledger.model._native.json_rows``) the rows are written in C
from the columns' buffers (the texts escaped as orjson escapes them, the integers and
timestamps formatted there, the floats' texts still orjson's); ``_arrow_rows`` is the
same in Arrow compute, used without them (the tests compare the two byte for byte).
"""

from __future__ import annotations

import contextlib

import numpy as np
import orjson
import pyarrow as pa

from ledger.lazy import lazy
from ledger.model.native import NATIVE_MODULE

pc = lazy("pyarrow.compute")  # imported by the first page, not with the server

# (key in the log object, column of LOG_COLUMNS) in the object's key order; "cost" is
# cost_nanos / 1e9 and "timestamp" the RFC 3339 text of ts_us.
_KEYS = (("id", "event_id"), ("type", "kind"), ("conversation_id", "conversation_id"),
         ("alias", "alias"), ("provider", "provider"), ("model", "model"),
         ("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
         ("cached_input_tokens", "cached_input_tokens"),
         ("reasoning_tokens", "reasoning_tokens"), ("cost", None),
         ("cost_nanos", "cost_nanos"), ("cost_source", "cost_source"),
         ("timestamp", None), ("seq", "seq"))
# Text that orjson writes escaped: the quote, the backslash and the C0 controls.
_ESCAPED = r'["\\\x00-\x1f]'


def log_array_json(table: pa.Table, *, native: bool = True) -> bytes:
    """``orjson.dumps`` of the log dicts of ``table`` (``LOG_COLUMNS``; ``ts_us`` as µs
    or as a timestamp), byte for byte (``native=False``: in Arrow compute even when the
    C loops are built)."""
    if table.num_rows == 0:
        return b"[]"
    if native and NATIVE_MODULE is not None:
        # a timestamp outside years 1 to 9999 is a ValueError: numpy writes those
        with contextlib.suppress(ValueError):
            return b"".join((b"[", _native_rows(table), b"]"))
    return _arrow_rows(table)


_NATIVE_KEYS = tuple(("{" if k == 0 else ",").encode() + f'"{key}":'.encode()
                     for k, (key, _) in enumerate(_KEYS))


def _native_rows(table: pa.Table) -> bytes:
    """The rows, comma-separated, written by ``_native.json_rows``."""
    columns: list[tuple] = []
    for key, name in _KEYS:
        if key == "cost":
            costs = (_int64(table.column("cost_nanos")) / 1e9).tolist()
            columns.append(("c", orjson.dumps(costs)[1:-1]))
        elif key == "timestamp":
            columns.append(("t", _int64(table.column("ts_us"))))
        else:
            column = table.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            valid = (None if column.null_count == 0
                     else pc.is_valid(column).to_numpy(zero_copy_only=False))
            if pa.types.is_integer(column.type):
                columns.append(("i", _int64(column), valid))
            else:
                if not pa.types.is_string(column.type):
                    column = column.cast(pa.string())
                offsets = np.frombuffer(column.buffers()[1], np.int32, len(column) + 1,
                                        column.offset * 4).astype(np.int64)
                data = column.buffers()[2]
                columns.append(("s", offsets, data if data is not None else b"", valid))
    return NATIVE_MODULE.json_rows(table.num_rows, _NATIVE_KEYS,  # type: ignore[union-attr]
                                   tuple(columns))  # type: ignore[no-any-return]


def _int64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An integer or timestamp column's values as int64 (nulls as 0: masked apart)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    if column.null_count:
        column = pc.fill_null(column, 0)
    return np.ascontiguousarray(column.to_numpy(), dtype=np.int64)


def _arrow_rows(table: pa.Table) -> bytes:
    """``log_array_json`` in Arrow compute."""
    parts: list[pa.Array | pa.Scalar] = []
    for k, (key, column) in enumerate(_KEYS):
        parts.append(pa.scalar(("{" if k == 0 else ",") + f'"{key}":'))
        if key == "cost":
            parts.append(_floats(table.column("cost_nanos")))
        elif key == "timestamp":
            parts.append(_stamps(table.column("ts_us")))
        else:
            parts.append(_values(table.column(column)))
    parts.append(pa.scalar("},"))
    rows = pc.binary_join_element_wise(*parts, "")  # one string array: "{…},{…},…"
    offsets = np.frombuffer(rows.buffers()[1], np.int32, len(rows) + 1, rows.offset * 4)
    text = memoryview(rows.buffers()[2])[offsets[0]:offsets[-1] - 1]  # no last comma
    return b"".join((b"[", text, b"]"))


def _values(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The JSON text of each value of an integer or text column (``null`` for a null)."""
    if isinstance(column, pa.ChunkedArray):  # chunks may have dictionaries of their own
        if column.num_chunks == 1:
            return _values(column.chunk(0))
        return pa.concat_arrays([_values(chunk) for chunk in column.chunks]
                                or [pa.array([], pa.string())])
    if pa.types.is_dictionary(column.type):
        texts = _values(column.dictionary)
        return pc.fill_null(texts.take(column.indices), "null")
    if pa.types.is_integer(column.type):
        return pc.fill_null(column.cast(pa.string()), "null")
    column = column.cast(pa.string())
    if pc.any(pc.match_substring_regex(column, _ESCAPED)).as_py():
        return pa.array([orjson.dumps(v).decode() for v in column.to_pylist()], pa.string())
    return pc.fill_null(pc.binary_join_element_wise('"', column, '"', ""), "null")


def _floats(nanos: pa.ChunkedArray) -> pa.Array:
    """``cost``: each ``cost_nanos / 1e9`` as orjson writes the float."""
    costs = (nanos.to_numpy() / 1e9).tolist()
    return pa.array(orjson.dumps(costs)[1:-1].decode().split(","), pa.string())


def _stamps(ts: pa.ChunkedArray) -> pa.Array:
    """``timestamp``: RFC 3339 text, UTC, microseconds, ``Z`` (numpy's formatting, as
    the log dicts have it)."""
    if pa.types.is_timestamp(ts.type):
        ts = ts.cast(pa.int64())
    micros = ts.to_numpy().astype("datetime64[us]")
    stamps = pa.array(np.datetime_as_string(micros, unit="us"), pa.string())
    return pc.binary_join_element_wise('"', stamps, 'Z"', "")
