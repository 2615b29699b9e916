"""Receipt projections: which events a receipt request selects, their summary statistics,
the uncertified set, receipt listings and the logs a receipt certifies (docs/formats.md).

Everything runs over a ``Snapshot`` (the manifest's files plus the unsealed tail), in
DuckDB, and pages in SQL. Membership is stored as runs of event seqs
(``ledger.storage.receipt_entries``), so the certified set of a tenant is a short list of intervals:
the uncertified set is their complement in the log, minus
the receipt entries' own seqs, computed on intervals rather than on millions of rows, and
a page of it is a seq range that DuckDB reads with file and row-group pruning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ledger.lazy import lazy
from ledger.model.dates import utc_days
from ledger.model.dimensions import column_name, quote_ident, where_sql
from projections.logjson import log_array_json
from projections.snapshot import (
    Scans,
    Snapshot,
    cursor,
    names_leaf_hash,
    source_sql,
    tenant_tail,
)
from projections.tailview import TailView, pylist

pc = lazy("pyarrow.compute")

INLINE_INTERVALS = 64  # selections with more seq runs than this go through a joined table

LOG_COLUMNS = ("event_id, kind, conversation_id, alias, provider, model, input_tokens, "
               "output_tokens, cached_input_tokens, reasoning_tokens, cost_nanos, "
               "cost_source, epoch_us(ts) AS ts_us, seq")


@dataclass
class Selection:
    """A set of one tenant's events, as a SQL predicate over the events source.

    ``intervals`` (inclusive seq runs) is set when the set is known as runs already
    (since-last, explicit ids); ``where``/``params`` otherwise (conversation, date range).
    ``prune`` narrows the files read (first_day/last_day/seq_lo/seq_hi). ``metadata``:
    a filter on metadata keys (``ledger.model.dimensions.parse_where``) ANDed with the
    rest; the intervals are then the candidates it is applied to."""

    where: str = "TRUE"
    params: list[Any] = field(default_factory=list)
    prune: dict[str, Any] = field(default_factory=dict)
    intervals: np.ndarray | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def filtered(self, metadata: dict[str, str]) -> Selection:
        """This selection narrowed to events whose metadata matches ``metadata``."""
        if not metadata:
            return self
        columns = {k: quote_ident(column_name(k)) for k in metadata}
        return Selection(where=f"({self.where}) AND {where_sql(metadata, columns)}",
                         params=self.params, prune=self.prune, intervals=self.intervals,
                         metadata=metadata)

    @property
    def exact(self) -> bool:
        """Whether ``intervals`` are exactly the selected seqs (no metadata filter)."""
        return self.intervals is not None and not self.metadata


def interval_selection(intervals: np.ndarray) -> Selection:
    intervals = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    if len(intervals) == 0:
        return Selection(where="FALSE", intervals=intervals)
    prune = {"seq_lo": int(intervals[0, 0]), "seq_hi": int(intervals[-1, 1])}
    if len(intervals) <= INLINE_INTERVALS:
        where = " OR ".join(f"seq BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in intervals)
        return Selection(where=f"({where})", prune=prune, intervals=intervals)
    # Many runs: a semi-join with the runs' seqs (registered as ``ledger_sel``).
    return Selection(where="seq IN (SELECT seq FROM ledger_sel)", prune=prune,
                     intervals=intervals)


# -- running SQL over events, receipts and membership -----------------------------------
def _tail_for(table: pa.Table | None, tenant: str) -> pa.Table | None:
    """The tenant's rows of a small tail table (receipt entries, membership)."""
    if table is None or table.num_rows == 0:
        return None
    filtered = table.filter(pc.equal(table.column("tenant"), tenant))
    return filtered if filtered.num_rows else None


def _union(files: list[str], tail_name: str | None, scan: Scans) -> str:
    return source_sql(files, tail_name, scan=scan)


def query(snapshot: Snapshot, tenant: str, sql: str, params: list | None = None, *,
          selection: Selection | None = None, events: bool = True,
          arrow: bool = False) -> Any:
    """Run ``sql`` over the snapshot. ``{src}`` stands for the tenant's events (pruned by
    ``selection.prune``), ``{receipts}`` and ``{members}`` for its receipt entries and
    membership runs. Returns rows, or an Arrow table with ``arrow``."""
    cur = cursor()
    registered: list[str] = []
    names: dict[str, str] = {}
    scan = Scans(cur, snapshot.filesystem)
    try:
        if "{src}" in sql:
            prune = selection.prune if selection is not None else {}
            files = snapshot.files(tenant, **prune) if events else []
            tail = tenant_tail(snapshot, tenant, seq_lo=prune.get("seq_lo"),
                               seq_hi=prune.get("seq_hi"),
                               leaves=names_leaf_hash(sql)) if events else None
            if tail is not None:
                cur.register("ledger_tail", tail)
                registered.append("ledger_tail")
            keys = tuple(selection.metadata) if selection is not None else ()
            empty = "".join(f", NULL::VARCHAR AS {quote_ident(column_name(k))}" for k in keys)
            names["src"] = source_sql(
                files, "ledger_tail" if tail is not None else None, keys=keys,
                mixed=tenant in snapshot.dimensioned, scan=scan) or \
                f"SELECT *{empty} FROM ledger_empty_events"
            if not files and tail is None:
                from ledger.model.schema import EVENT_SCHEMA

                cur.register("ledger_empty_events", EVENT_SCHEMA.empty_table())
                registered.append("ledger_empty_events")
        for key, files, table, schema_name in (
                ("receipts", snapshot.receipt_files.get(tenant, []), snapshot.receipt_tail,
                 "RECEIPT_SCHEMA"),
                ("members", snapshot.membership_files.get(tenant, []),
                 snapshot.membership_tail, "MEMBERSHIP_SCHEMA")):
            if "{" + key + "}" not in sql:
                continue
            tail = _tail_for(table, tenant)
            tail_name = f"ledger_{key}_tail"
            if tail is not None:
                cur.register(tail_name, tail)
                registered.append(tail_name)
            src = _union(files, tail_name if tail is not None else None, scan)
            if not src:
                from ledger.storage import receipt_entries as receipt_log

                empty = f"ledger_{key}_empty"
                cur.register(empty, getattr(receipt_log, schema_name).empty_table())
                registered.append(empty)
                src = f"SELECT * FROM {empty}"
            names[key] = src
        if selection is not None and "ledger_sel" in selection.where:
            assert selection.intervals is not None
            seqs = _seqs_of(selection.intervals)
            cur.register("ledger_sel", pa.table({"seq": pa.array(seqs, pa.int64())}))
            registered.append("ledger_sel")
        text = sql.format(**{k: f"({v})" for k, v in names.items()})
        if arrow:
            return cur.sql(text, params=params or None).to_arrow_table()
        return cur.execute(text, params or []).fetchall()
    finally:
        for name in registered:
            cur.unregister(name)
        scan.close()


def _seqs_of(intervals: np.ndarray) -> np.ndarray:
    from ledger.storage.receipt_entries import seqs_of

    return seqs_of(intervals)


# -- intervals ---------------------------------------------------------------------------
def merge_intervals(intervals: np.ndarray) -> np.ndarray:
    """Sorted, disjoint, non-adjacent union of inclusive intervals."""
    iv = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    if len(iv) == 0:
        return iv
    iv = iv[np.lexsort((iv[:, 1], iv[:, 0]))]
    reach = np.maximum.accumulate(iv[:, 1])
    starts = np.concatenate(([True], iv[1:, 0] > reach[:-1] + 1))
    group = np.cumsum(starts) - 1
    lo = iv[starts, 0]
    hi = np.zeros(len(lo), dtype=np.int64)
    np.maximum.at(hi, group, iv[:, 1])
    return np.stack((lo, hi), axis=1)


def complement(intervals: np.ndarray, size: int) -> np.ndarray:
    """[0, size) minus merged inclusive ``intervals``, as inclusive intervals."""
    iv = merge_intervals(intervals)
    iv = iv[(iv[:, 1] >= 0) & (iv[:, 0] < size)] if len(iv) else iv
    edges_lo = np.concatenate(([0], iv[:, 1] + 1)) if len(iv) else np.array([0])
    edges_hi = np.concatenate((iv[:, 0] - 1, [size - 1])) if len(iv) else np.array([size - 1])
    keep = edges_lo <= edges_hi
    return np.stack((edges_lo[keep], edges_hi[keep]), axis=1).astype(np.int64)


def interval_count(intervals: np.ndarray) -> int:
    iv = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    return int((iv[:, 1] - iv[:, 0] + 1).sum()) if len(iv) else 0


def slice_intervals(intervals: np.ndarray, offset: int, limit: int) -> np.ndarray:
    """The runs covering positions [offset, offset + limit) of the seqs in ``intervals``."""
    iv = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    if len(iv) == 0 or limit <= 0:
        return np.empty((0, 2), dtype=np.int64)
    lengths = iv[:, 1] - iv[:, 0] + 1
    ends = np.cumsum(lengths)  # position after each run
    starts = ends - lengths
    first = int(np.searchsorted(ends, offset, side="right"))
    last = int(np.searchsorted(starts, offset + limit, side="left"))  # exclusive
    out = iv[first:last].copy()
    if len(out) == 0:
        return out
    out[0, 0] += offset - int(starts[first])
    overshoot = int(ends[last - 1]) - (offset + limit)
    if overshoot > 0:
        out[-1, 1] -= overshoot
    return out


def membership_runs(snapshot: Snapshot, tenant: str,
                    receipt_id: str | None = None) -> np.ndarray:
    """Inclusive event-seq runs certified by one receipt (in leaf order), or by any."""
    if not snapshot.membership_files.get(tenant):  # all in the tail: no SQL needed
        table = _tail_for(snapshot.membership_tail, tenant)
        if table is not None and receipt_id:
            table = table.filter(pc.equal(table.column("receipt_id"), receipt_id))
        if table is None or table.num_rows == 0:
            return np.empty((0, 2), dtype=np.int64)
        runs = np.stack((table.column("seq_lo").to_numpy(),
                         table.column("seq_hi").to_numpy()), axis=1).astype(np.int64)
        return runs[np.argsort(runs[:, 0], kind="stable")]
    where, params = ("WHERE receipt_id = ?", [receipt_id]) if receipt_id else ("", [])
    table = query(snapshot, tenant, f"SELECT seq_lo, seq_hi FROM {{members}} {where} "
                  "ORDER BY seq_lo", params, arrow=True)
    if table.num_rows == 0:
        return np.empty((0, 2), dtype=np.int64)
    return np.stack((table.column("seq_lo").to_numpy(), table.column("seq_hi").to_numpy()),
                    axis=1).astype(np.int64)


def uncertified_intervals(snapshot: Snapshot, tenant: str) -> np.ndarray:
    """Runs of the tenant's event seqs that no receipt certifies."""
    covered = membership_runs(snapshot, tenant)
    rseqs = np.asarray(snapshot.receipt_seqs.get(tenant, []), dtype=np.int64)
    receipt_runs = np.stack((rseqs, rseqs), axis=1) if len(rseqs) else np.empty((0, 2),
                                                                                  np.int64)
    return complement(np.concatenate((covered, receipt_runs)),
                      snapshot.sizes.get(tenant, 0))


# -- the selected events ------------------------------------------------------------------
def selected_seqs(snapshot: Snapshot, tenant: str, selection: Selection) -> np.ndarray:
    """The seqs of the selected events, ascending."""
    if selection.exact:
        return _seqs_of(selection.intervals)
    table = query(snapshot, tenant, f"SELECT seq FROM {{src}} WHERE {selection.where} "
                  "ORDER BY seq", selection.params, selection=selection, arrow=True)
    return table.column("seq").to_numpy().astype(np.int64)


def selected_runs(snapshot: Snapshot, tenant: str, selection: Selection) -> np.ndarray:
    """The selected events' seqs as runs ``[[lo, hi], …]`` (inclusive, ascending), found in
    SQL (gaps and islands), so no array of every seq is built."""
    if selection.exact:
        return selection.intervals
    table = query(snapshot, tenant, (
        "SELECT min(seq) AS lo, max(seq) AS hi FROM (SELECT seq, seq - row_number() OVER "
        f"(ORDER BY seq) AS island FROM {{src}} WHERE {selection.where}) GROUP BY island "
        "ORDER BY lo"), selection.params, selection=selection, arrow=True)
    if table.num_rows == 0:
        return np.empty((0, 2), dtype=np.int64)
    return np.column_stack([table.column("lo").to_numpy().astype(np.int64),
                            table.column("hi").to_numpy().astype(np.int64)])


def summary(snapshot: Snapshot, tenant: str, selection: Selection) -> dict[str, Any]:
    """Counts, tokens, cost and the by-model/alias/provider/date (UTC) breakdowns of the
    selected events. One scan groups by (model, alias, provider, day) — a few hundred
    groups — and the breakdowns are folded from those groups; a second counts distinct
    conversations. Costs are exact nano-USD integers."""
    tail_part = _tail_summary(snapshot, tenant, selection)
    conversations: pa.ChunkedArray | None = None
    if tail_part is not None:  # the tail's share from its stored totals; SQL for the rest
        selection, rows, conversations = tail_part
    else:
        rows = []
    if selection.where != "FALSE":
        rows = rows + (_group_rows(snapshot, tenant, selection) or [])
    out: dict[str, Any] = {"calls": 0, "input_tokens": 0, "output_tokens": 0,
                           "cost_nanos": 0, "unpriced": 0, "conversations": 0,
                           "first_ts_us": None, "last_ts_us": None}
    groups: dict[str, dict[str, list[int]]] = {
        "by_model": {}, "by_alias": {}, "by_provider": {}, "by_date": {}}
    epoch = date(1970, 1, 1).toordinal()
    for model, alias, provider, day, calls, inp, outp, cost, unp, t0, t1 in rows:
        inp, outp, cost, unp = int(inp or 0), int(outp or 0), int(cost or 0), int(unp or 0)
        out["calls"] += calls
        out["input_tokens"] += inp
        out["output_tokens"] += outp
        out["cost_nanos"] += cost
        out["unpriced"] += unp
        out["first_ts_us"] = t0 if out["first_ts_us"] is None else min(out["first_ts_us"], t0)
        out["last_ts_us"] = t1 if out["last_ts_us"] is None else max(out["last_ts_us"], t1)
        keys = (("by_model", model), ("by_alias", alias), ("by_provider", provider),
                ("by_date", date.fromordinal(epoch + int(day)).isoformat()))
        for name, key in keys:
            acc = groups[name].setdefault(str(key), [0, 0, 0, 0])
            acc[0] += calls
            acc[1] += inp + outp
            acc[2] += cost
            acc[3] += unp
    for name, items in groups.items():
        out[name] = {k: {"calls": c, "tokens": t, "cost": n / 1e9, "cost_nanos": n,
                         "unpriced_calls": u} for k, (c, t, n, u) in sorted(items.items())}
    if out["calls"] and conversations is None:
        distinct = query(snapshot, tenant, "SELECT count(DISTINCT conversation_id) FROM "
                         f"{{src}} WHERE {selection.where}", selection.params,
                         selection=selection)
        out["conversations"] = int(distinct[0][0]) if distinct else 0
    elif out["calls"]:
        assert conversations is not None
        if selection.where != "FALSE":
            sealed = query(snapshot, tenant, "SELECT DISTINCT conversation_id FROM {src} "
                           f"WHERE {selection.where} AND conversation_id IS NOT NULL",
                           selection.params, selection=selection, arrow=True)
            conversations = pa.chunked_array(
                [*conversations.chunks,
                 *sealed.column("conversation_id").cast(pa.string()).chunks], pa.string())
        out["conversations"] = pc.count_distinct(conversations).as_py()
    return out


def _group_rows(snapshot: Snapshot, tenant: str, selection: Selection) -> list[tuple]:
    """The selected events' totals by (model, alias, provider, day), in SQL."""
    day_us = 86_400_000_000
    return query(snapshot, tenant, (
        f"SELECT model, alias, provider, epoch_us(ts) // {day_us} AS d, count(*), "
        "sum(input_tokens), sum(output_tokens), sum(cost_nanos), "
        "count(*) FILTER (WHERE cost_source = 'unpriced'), min(epoch_us(ts)), "
        f"max(epoch_us(ts)) FROM {{src}} WHERE {selection.where} GROUP BY ALL"),
        selection.params, selection=selection) or []


def _split_at_tail(snapshot: Snapshot, tenant: str, intervals: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, TailView | None]:
    """``intervals`` cut where the tenant's unsealed tail (a suffix of its log) begins:
    (the sealed runs, the tail's runs, the tail's view)."""
    intervals = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    view = snapshot.tails.get(tenant)
    bounds = view.seq_bounds() if view is not None else None
    if bounds is None or not len(intervals):
        return intervals, intervals[:0], None
    first = bounds[0]
    in_tail = intervals[intervals[:, 1] >= first].copy()
    in_tail[:, 0] = np.maximum(in_tail[:, 0], first)
    sealed = intervals[intervals[:, 0] < first].copy()
    sealed[:, 1] = np.minimum(sealed[:, 1], first - 1)
    return sealed, in_tail, view


def _tail_summary(snapshot: Snapshot, tenant: str, selection: Selection
                  ) -> tuple[Selection, list[tuple], pa.ChunkedArray] | None:
    """For a selection known as seq runs: the group rows and distinct conversation ids
    of its events in the tail (``TailView.summary``), and the selection of the rest."""
    if not selection.exact:
        return None
    assert selection.intervals is not None
    sealed, in_tail, view = _split_at_tail(snapshot, tenant, selection.intervals)
    if view is None or not len(in_tail):
        return None
    found = view.summary(in_tail)
    if found is None:
        return None
    rows, conversations = found
    return interval_selection(sealed), rows, conversations


def interval_totals(snapshot: Snapshot, tenant: str, intervals: np.ndarray
                    ) -> dict[str, int]:
    """Exact totals of the events in ``intervals`` (all of them, not a page):
    ``{cost_nanos, unpriced}``. The part of the runs in the unsealed tail (a suffix of
    the log) comes from the tail's running totals; only the sealed part is read."""
    sealed, in_tail, view = _split_at_tail(snapshot, tenant, intervals)
    cost, unpriced, _ = view.totals(in_tail) if view is not None else (0, 0, 0)
    selection = interval_selection(sealed)
    if selection.where != "FALSE":
        rows = query(snapshot, tenant, "SELECT sum(cost_nanos), count(*) FILTER (WHERE "
                     f"cost_source = 'unpriced') FROM {{src}} WHERE {selection.where}",
                     selection=selection) or []
        c, u = rows[0] if rows else (0, 0)
        cost, unpriced = cost + int(c or 0), unpriced + int(u or 0)
    return {"cost_nanos": int(cost), "unpriced": int(unpriced)}


def _log_dicts(table: pa.Table) -> list[dict[str, Any]]:
    """The API's log dicts of a table of ``LOG_COLUMNS`` (``ts_us`` as µs or as a
    timestamp), column by column: the timestamps are formatted by numpy (RFC 3339, UTC,
    microseconds, ``Z``: ``format_ts``'s text for every ``ts`` an event can have)."""
    ts = table.column("ts_us")
    if pa.types.is_timestamp(ts.type):
        ts = ts.cast(pa.int64())
    micros = ts.to_numpy().astype("datetime64[us]")
    stamps = np.datetime_as_string(micros, unit="us").tolist()
    (event_id, kind, conv, alias, provider, model, inp, outp, cached, reasoning, cost,
     source) = (pylist(table.column(name)) for name in _LOG_FIELDS[:12])
    seq = table.column("seq").to_pylist()
    return [{"id": e, "type": k, "conversation_id": c, "alias": a, "provider": p,
             "model": m, "input_tokens": i, "output_tokens": o, "cached_input_tokens": ca,
             "reasoning_tokens": r, "cost": n / 1e9, "cost_nanos": n, "cost_source": so,
             "timestamp": t + "Z", "seq": q}
            for e, k, c, a, p, m, i, o, ca, r, n, so, t, q in zip(
                event_id, kind, conv, alias, provider, model, inp, outp, cached, reasoning,
                cost, source, stamps, seq, strict=True)]


def logs_in(snapshot: Snapshot, tenant: str, intervals: np.ndarray, offset: int,
            limit: int) -> list[dict[str, Any]]:
    """Page [offset, offset + limit) of the events in ``intervals``, in seq order."""
    table = _page_table(snapshot, tenant, intervals, offset, limit)
    return [] if table is None else _log_dicts(table)


def logs_json_in(snapshot: Snapshot, tenant: str, intervals: np.ndarray, offset: int,
                 limit: int) -> bytes:
    """``logs_in``'s page as its JSON text (``orjson.dumps`` of it, byte for byte), built
    column by column (``projections.logjson``)."""
    table = _page_table(snapshot, tenant, intervals, offset, limit)
    return b"[]" if table is None else log_array_json(table)


def _page_table(snapshot: Snapshot, tenant: str, intervals: np.ndarray, offset: int,
                limit: int) -> pa.Table | None:
    """The ``LOG_COLUMNS`` rows of page [offset, offset + limit) of the events in
    ``intervals``, in seq order (None: the page is empty)."""
    page = slice_intervals(intervals, offset, limit)
    if len(page) == 0:
        return None
    view = snapshot.tails.get(tenant)
    bounds = view.seq_bounds() if view is not None else None
    if view is not None and bounds is not None and page[0, 0] >= bounds[0]:
        return _tail_rows(view, page)
    selection = interval_selection(page)
    return query(snapshot, tenant, f"SELECT {LOG_COLUMNS} FROM {{src}} WHERE "
                 f"{selection.where} ORDER BY seq", selection=selection, arrow=True)


_LOG_FIELDS = [c.split(" AS ")[-1].strip() for c in LOG_COLUMNS.split(",")]


def _tail_rows(view: TailView, page: np.ndarray) -> pa.Table | None:
    """The events of ``page`` (seq runs wholly in the tail) read from the tail's seq
    index, with no SQL: the same rows as ``_page_table``'s query gives (the counts
    int32 where the tail keeps them so: the page's readers take any integer type)."""
    rows = view.between(int(page[0, 0]), int(page[-1, 1]), ordered=True,
                        columns=[*_LOG_FIELDS[:12], "ts", "seq"], int64=False)
    if rows is None:
        return None
    seqs = rows.column("seq").to_numpy()
    run = np.searchsorted(page[:, 0], seqs, side="right") - 1
    keep = (run >= 0) & (seqs <= page[np.maximum(run, 0), 1])
    if not keep.all():
        rows = rows.filter(pa.array(keep))
    return rows.rename_columns(_LOG_FIELDS)


# -- receipts ---------------------------------------------------------------------------
def receipt_count(snapshot: Snapshot, tenant: str) -> int:
    return len(snapshot.receipt_seqs.get(tenant, []))


def receipt_texts(snapshot: Snapshot, tenant: str, *, limit: int, offset: int,
                  newest_first: bool = True) -> list[str]:
    """A page of the tenant's receipts (canonical JSON text), newest first by default."""
    order = "DESC" if newest_first else "ASC"
    rows = query(snapshot, tenant, f"SELECT receipt FROM {{receipts}} ORDER BY seq {order} "
                 f"LIMIT {int(limit)} OFFSET {int(offset)}")
    return [r[0] for r in rows or []]


def receipt_row(snapshot: Snapshot, tenant: str, receipt_id: str) -> dict[str, Any] | None:
    """One receipt entry: ``receipt`` (canonical JSON text), ``seq``, ``leaf_hash``."""
    if not snapshot.receipt_files.get(tenant):  # all in the tail: no SQL needed
        table = _tail_for(snapshot.receipt_tail, tenant)
        if table is not None:
            table = table.filter(pc.equal(table.column("receipt_id"), receipt_id))
        if table is None or table.num_rows == 0:
            return None
        found = table.slice(0, 1).to_pylist()[0]
        return {"receipt": found["receipt"], "seq": int(found["seq"]),
                "leaf_hash": bytes(found["leaf_hash"])}
    rows = query(snapshot, tenant, "SELECT receipt, seq, leaf_hash FROM {receipts} "
                 "WHERE receipt_id = ?", [receipt_id])
    if not rows:
        return None
    text, seq, leaf = rows[0]
    return {"receipt": text, "seq": int(seq), "leaf_hash": bytes(leaf)}


# -- dates --------------------------------------------------------------------------------
def day_bounds(start: datetime | None, end: datetime | None) -> dict[str, date | None]:
    """File pruning for start <= ts < end (segment files are per UTC day)."""
    first_day, last_day = utc_days(start, end)
    return {"first_day": first_day, "last_day": last_day}
