"""Receipts (docs/formats.md): signed statements certifying a set of one tenant's events.

This module owns the receipt's content and its life cycle over an open ``Ledger``:

* the request: exactly one of four selection modes (conversation, date range, explicit
  ids, since last), optionally narrowed by a metadata filter (``where``: only the events
  whose metadata keys have the given values, named in the signed ``scope.where``; not with
  explicit ids), validated with clear ``ReceiptRequestError`` messages before anything
  is written;
* ``preview`` (the summary of the selection, nothing written) and ``generate``: select in
  SQL (``projections.receipts``), build the receipt's RFC 9162 tree over the certified
  events' leaf hashes (read packed from the tenant's tree a window at a time and hashed
  chunk by chunk: memory bounded whatever the number of certified events),
  issue a signed checkpoint of the log just before the receipt entry, sign the receipt
  (Ed25519 over RFC 8785 bytes of everything but ``signature``) and append it to the log
  with its membership, durably, under the tenant's issuance lock;
* reads: ``uncertified``, ``list``, ``get``, ``logs`` (paged in SQL), and ``prove``: the
  offline proof bundle of one event in a receipt, with the event's inclusion in the
  tenant's log under the signed checkpoint.

Offline verification of receipts and bundles is ``ledger.receipts.verification``. Storage of receipt
entries is ``ledger.storage.receipt_entries``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ledger.errors import NothingToCertifyError, ReceiptNotFoundError, ReceiptRequestError
from ledger.model.dates import parse_bound
from ledger.model.dimensions import DimensionNameError, parse_where
from ledger.model.event import canonical_json, format_ts, now_us, ts_to_us
from ledger.model.money import nanos_to_decimal
from ledger.model.schema import unsafe_character
from ledger.model.tenant import TenantError, check_tenant
from ledger.storage.durable import private_dir, write_atomic
from ledger.storage.receipt_entries import runs_of, seqs_of
from ledger.tlog.checkpoint import parse_checkpoint, parse_note
from ledger.tlog.merkle import (
    HASH_SIZE,
    MemoryTree,
    fold_right,
    inclusion_proof,
    perfect_subtrees,
    root_from_leaf_hashes,
    tree_levels_from_chunks,
)
from ledger.tlog.signing import PublicKeyInfo, encode_signature
from projections import receipts as pr

BUNDLE_FORMAT = "ledger-proof/v1"
HASH_ALG = "rfc9162-sha256"
LEAF_FORMAT = 1
TILE_HEIGHT = 8
TILE = 1 << TILE_HEIGHT
MAX_LIMIT = 1000
MAX_DESCRIPTION = 2000
MAX_TAGS = 50
MAX_TAG = 100
MAX_LOG_IDS = 1_000_000
TILE_TREES_KEPT = 8
CERTIFIED_KEPT = 8  # receipts whose certified seq runs are kept (``Receipts._certified``)
CERTIFIED_MAX_RUNS = 1 << 16  # …when they are at most this many runs (1 MiB)
MAX_JSON_INT = 2**53 - 1  # RFC 8785 (I-JSON) integers
LEAF_WINDOW = 1 << 14  # seqs of the log tree read at once while hashing a receipt's tree

Progress = Callable[[str], None]


# -- the request ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Selector:
    """A validated selection: ``mode`` and its parameters (dates as aware UTC datetimes,
    ``end`` exclusive)."""

    mode: str
    conversation_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    log_ids: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()  # metadata filter, sorted by key

    def scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {"mode": self.mode}
        if self.mode == "conversation":
            scope["conversation_id"] = self.conversation_id
        elif self.mode == "date_range":
            assert self.start is not None and self.end is not None
            scope["start_date"] = format_ts(ts_to_us(self.start))
            scope["end_date"] = format_ts(ts_to_us(self.end))
        elif self.mode == "log_ids":
            scope["log_ids_sha256"] = log_ids_digest(self.log_ids)
        if self.where:  # absent otherwise: older receipts keep their bytes
            scope["where"] = dict(self.where)
        return scope


def log_ids_digest(log_ids: Sequence[str]) -> str:
    """SHA-256 (hex) of the RFC 8785 JSON of the requested ids, sorted and deduplicated."""
    return hashlib.sha256(canonical_json(sorted(set(log_ids)), reference=True)).hexdigest()


def selector(*, conversation_id: str | None = None, start_date: Any = None,
             end_date: Any = None, log_ids: Sequence[str] | None = None,
             since_last_receipt: bool = False,
             where: dict[str, str] | None = None) -> Selector:
    """Validate a request's selection fields: exactly one mode, and a metadata filter
    (``ledger.model.dimensions.parse_where``) narrowing any mode but explicit ids."""
    from dataclasses import replace

    sel = _selector(conversation_id=conversation_id, start_date=start_date,
                    end_date=end_date, log_ids=log_ids, since_last_receipt=since_last_receipt)
    if not where:
        return sel
    try:
        flt = parse_where(where)
    except DimensionNameError as exc:
        raise ReceiptRequestError(str(exc)) from None
    if sel.mode == "log_ids":
        raise ReceiptRequestError("where cannot narrow explicit log_ids: list only the ids "
                                  "to certify, or filter a date range or since_last_receipt")
    return replace(sel, where=tuple(flt.items()))


def _selector(*, conversation_id: str | None, start_date: Any, end_date: Any,
              log_ids: Sequence[str] | None, since_last_receipt: bool) -> Selector:
    if not isinstance(since_last_receipt, bool):
        raise ReceiptRequestError("since_last_receipt must be true or false")
    modes = []
    if conversation_id is not None:
        modes.append("conversation_id")
    if start_date is not None or end_date is not None:
        modes.append("start_date/end_date")
    if log_ids is not None:
        modes.append("log_ids")
    if since_last_receipt:
        modes.append("since_last_receipt")
    if not modes:
        raise ReceiptRequestError(
            "say which events to certify: give exactly one of conversation_id, "
            "start_date and end_date, log_ids, or since_last_receipt=true")
    if len(modes) > 1:
        raise ReceiptRequestError(
            f"give exactly one selection mode, not {len(modes)} ({', '.join(modes)}): "
            "a receipt certifies one conversation, one date range, a list of ids, or "
            "everything since the last receipt")
    if conversation_id is not None:
        if not isinstance(conversation_id, str) or not conversation_id.strip():
            raise ReceiptRequestError("conversation_id must be a non-empty string")
        return Selector("conversation", conversation_id=conversation_id)
    if modes[0] == "start_date/end_date":
        if start_date is None or end_date is None:
            missing = "start_date" if start_date is None else "end_date"
            raise ReceiptRequestError(f"a date range needs both start_date and end_date; "
                                      f"{missing} is missing")
        start = parse_bound(start_date, name="start_date", error=ReceiptRequestError)
        end = parse_bound(end_date, name="end_date", end=True,
                          error=ReceiptRequestError)
        if start >= end:
            raise ReceiptRequestError(
                f"start_date ({format_ts(ts_to_us(start))}) must be before end_date "
                f"({format_ts(ts_to_us(end))}, exclusive; a date-only end_date includes "
                "that whole day)")
        return Selector("date_range", start=start, end=end)
    if log_ids is not None:
        if isinstance(log_ids, str) or not all(isinstance(i, str) and i for i in log_ids):
            raise ReceiptRequestError("log_ids must be a list of non-empty id strings")
        ids = tuple(dict.fromkeys(log_ids))
        if not ids:
            raise ReceiptRequestError("log_ids is empty: name at least one log id")
        if len(ids) > MAX_LOG_IDS:
            raise ReceiptRequestError(f"at most {MAX_LOG_IDS:,} log_ids per request; use a "
                                      "date range or since_last_receipt for larger sets")
        return Selector("log_ids", log_ids=ids)
    return Selector("since_last")


def _check_paging(limit: int, offset: int) -> None:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:  # no bool, no float
        raise ReceiptRequestError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    if type(offset) is not int or offset < 0:
        raise ReceiptRequestError("offset must be an integer >= 0")


def _check_labels(description: str | None, tags: Sequence[str] | None) -> list[str]:
    if description is not None and (not isinstance(description, str)
                                    or len(description) > MAX_DESCRIPTION):
        raise ReceiptRequestError(f"description must be text of at most {MAX_DESCRIPTION} "
                                  "characters")
    if tags is None:
        return []
    if isinstance(tags, str) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG
                                        for t in tags):
        raise ReceiptRequestError(f"tags must be a list of non-empty strings of at most "
                                  f"{MAX_TAG} characters")
    if len(tags) > MAX_TAGS:
        raise ReceiptRequestError(f"at most {MAX_TAGS} tags per receipt")
    for tag in tags:
        unsafe = unsafe_character(tag)
        if unsafe is not None:
            raise ReceiptRequestError(f"tag {tag!r} contains {unsafe}: tags may not hold "
                                      "control, bidirectional-formatting or zero-width "
                                      "characters, nor lone surrogates")
    return list(dict.fromkeys(tags))


def _check_tenant(tenant: str) -> None:
    try:
        check_tenant(tenant)
    except TenantError as exc:
        raise ReceiptRequestError(str(exc)) from None


def _period_and_breakdowns(s: dict[str, Any]) -> dict[str, Any]:
    """The period and the by_model/alias/provider/date breakdowns of a selection's
    summary, as both preview and a receipt's batch_summary give them."""
    return {"start_date": format_ts(s["first_ts_us"]), "end_date": format_ts(s["last_ts_us"]),
            "by_model": s["by_model"], "by_alias": s["by_alias"],
            "by_provider": s["by_provider"], "by_date": s["by_date"]}


def _money(nanos: int) -> float:
    return nanos / 1e9


# -- the facade ------------------------------------------------------------------------------
class Receipts:
    """Receipts of an open ``Ledger`` (the embedded API; the HTTP server calls these).

    Keys live in ``<data>/keys`` (``ledger.tlog.signing.KeyRing``, named after the ledger
    origin), signed checkpoints in ``<data>/checkpoints``, and per-receipt tile caches
    (derived, rebuilt when missing) in ``<data>/rtree``."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.layout = ledger.layout
        self.notary = ledger.notary  # the directory's one key ring and checkpoint store
        self.origin = self.notary.origin
        self.keyring = self.notary.keyring
        self.checkpoints = self.notary.checkpoints
        self._tile_trees: OrderedDict[tuple[str, str], MemoryTree] = OrderedDict()
        self._certified_runs: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._certified_lock = threading.Lock()

    def log_origin(self, tenant: str) -> str:
        return f"{self.origin}/{tenant}"

    # -- selection ---------------------------------------------------------------------
    def _select(self, tenant: str, sel: Selector, *, allow_empty: bool = False
                ) -> tuple[Any, pr.Selection, dict]:
        """(snapshot, selection, summary); raises for unknown ids, and for an empty set
        (``NothingToCertifyError``) unless ``allow_empty``."""
        resolved: dict[str, Any] = {}
        if sel.mode == "log_ids":
            resolved = self.ledger.resolve(tenant, sel.log_ids)
            unknown = [i for i in sel.log_ids if i not in resolved]
            if unknown:
                shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more"
                                                   if len(unknown) > 10 else "")
                raise ReceiptRequestError(
                    f"{len(unknown)} of the log_ids are not logs of project {tenant!r}: "
                    f"{shown}")
        snapshot = self.ledger.snapshot()
        if sel.mode == "conversation":
            selection = pr.Selection(where="conversation_id = ?",
                                     params=[sel.conversation_id])
        elif sel.mode == "date_range":
            selection = pr.Selection(where="ts >= ? AND ts < ?", params=[sel.start, sel.end],
                                     prune=pr.day_bounds(sel.start, sel.end))
        elif sel.mode == "log_ids":
            seqs = np.unique(np.fromiter((a.seq for a in resolved.values()), np.int64))
            selection = pr.interval_selection(runs_of(seqs))
        else:
            selection = pr.interval_selection(pr.uncertified_intervals(snapshot, tenant))
        selection = selection.filtered(dict(sel.where))
        summary = pr.summary(snapshot, tenant, selection)
        if summary["calls"] == 0 and not allow_empty:
            raise NothingToCertifyError(_empty_message(tenant, sel,
                                                       snapshot.sizes.get(tenant, 0) == 0))
        return snapshot, selection, summary

    # -- preview and generate -------------------------------------------------------------
    def preview(self, tenant: str = "default", *, conversation_id: str | None = None,
                start_date: Any = None, end_date: Any = None,
                log_ids: Sequence[str] | None = None, since_last_receipt: bool = False,
                where: dict[str, str] | None = None) -> dict[str, Any]:
        """What ``generate`` with the same selection would certify; writes nothing. An
        empty selection (a quiet day) is an answer, not an error: zero totals, no
        breakdowns, ``start_date``/``end_date`` null."""
        _check_tenant(tenant)
        sel = selector(conversation_id=conversation_id, start_date=start_date,
                       end_date=end_date, log_ids=log_ids,
                       since_last_receipt=since_last_receipt, where=where)
        _, _, s = self._select(tenant, sel, allow_empty=True)
        period = (_period_and_breakdowns(s) if s["calls"] else
                  {"start_date": None, "end_date": None, "by_model": {}, "by_alias": {},
                   "by_provider": {}, "by_date": {}})
        return {
            "total_logs": s["calls"],
            "total_conversations": s["conversations"],
            "total_tokens": s["input_tokens"] + s["output_tokens"],
            "prompt_tokens": s["input_tokens"],
            "completion_tokens": s["output_tokens"],
            "total_cost": _money(s["cost_nanos"]),
            "total_cost_nanos": s["cost_nanos"],
            "unpriced_logs": s["unpriced"],
            **period,
            "scope": sel.scope(),
        }

    def generate(self, tenant: str = "default", *, conversation_id: str | None = None,
                 start_date: Any = None, end_date: Any = None,
                 log_ids: Sequence[str] | None = None, since_last_receipt: bool = False,
                 description: str | None = None, tags: Sequence[str] | None = None,
                 where: dict[str, str] | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
        """Certify the selected events with a signed receipt appended to the tenant's
        log. Returns ``{"receipt": …, "certified_count": n}`` once it is durable.
        ``progress`` is told each stage's name (select, hash, sign, store)."""
        _check_tenant(tenant)
        sel = selector(conversation_id=conversation_id, start_date=start_date,
                       end_date=end_date, log_ids=log_ids,
                       since_last_receipt=since_last_receipt, where=where)
        labels = _check_labels(description, tags)
        step = progress or (lambda _stage: None)
        with self.ledger.receipt_lock(tenant):
            step("select")
            snapshot, selection, s = self._select(tenant, sel)
            if selection.exact:  # since-last, explicit ids, unfiltered: runs known
                runs = selection.intervals
            else:
                runs = pr.selected_runs(snapshot, tenant, selection)
            if pr.interval_count(runs) != s["calls"]:  # pragma: no cover - a bug
                raise RuntimeError(f"selection found {pr.interval_count(runs)} seqs but "
                                   f"{s['calls']} events")
            step("hash")
            root, tiles = tree_levels_from_chunks(self._leaf_chunks(tenant, runs),
                                                  keep=TILE_HEIGHT)
            body = self._body(tenant, sel, s, root, description, labels)
            step("sign")
            holder: dict[str, Any] = {}

            def build(size: int, log_root: bytes) -> bytes:
                self.checkpoints.issue(self.log_origin(tenant), size, log_root, self.keyring)
                key = self.keyring.current()
                receipt = {**body, "log_checkpoint": {
                    "origin": self.log_origin(tenant), "size": size, "root": log_root.hex()},
                    "key_id": key.info.key_id}
                signature = key.sign(canonical_json(receipt, reference=True))
                receipt["signature"] = encode_signature(signature)
                holder["receipt"] = receipt
                return canonical_json(receipt, reference=True)

            step("store")
            self.ledger.append_receipt(tenant, runs, build)
            receipt = holder["receipt"]
            self._save_tiles(tenant, receipt["receipt_id"], tiles[:(s["calls"] >> TILE_HEIGHT)
                                                               * HASH_SIZE])
        return {"receipt": receipt, "certified_count": s["calls"]}

    def _body(self, tenant: str, sel: Selector, s: dict[str, Any], root: bytes,
              description: str | None, tags: list[str]) -> dict[str, Any]:
        n = s["calls"]
        tokens = s["input_tokens"] + s["output_tokens"]
        if max(s["cost_nanos"], tokens) > MAX_JSON_INT:
            raise ReceiptRequestError(
                "the selection's total cost or tokens exceed the integers JSON carries "
                f"exactly (2^53 - 1; ${MAX_JSON_INT / 1e9:,.0f}): certify a smaller set, "
                "e.g. a shorter date range")
        if n == 1:
            kind = "single"
            alias, provider, model = (next(iter(s[k])) for k in
                                      ("by_alias", "by_provider", "by_model"))
        else:
            kind, alias, provider, model = "batch", "batch", "batch", f"batch:{n} calls"
        summary = {
            "total_calls": n,
            "total_conversations": s["conversations"],
            "total_tokens": tokens,
            "total_cost": _money(s["cost_nanos"]),
            "total_cost_nanos": s["cost_nanos"],
            "unpriced_calls": s["unpriced"],
            **_period_and_breakdowns(s),
        }
        return {
            "receipt_id": "rcpt_" + uuid.UUID(bytes=os.urandom(16)).hex,
            "receipt_type": kind,
            "timestamp": format_ts(now_us()),
            "tenant": tenant,
            "description": description,
            "tags": tags,
            "scope": sel.scope(),
            "certified_count": n,
            "merkle_root": root.hex(),
            "hash_alg": HASH_ALG,
            "leaf_format": LEAF_FORMAT,
            "alias": alias,
            "provider": provider,
            "model": model,
            "profile": "default",
            "lock_digest": "",
            "prompt_tokens": s["input_tokens"],
            "completion_tokens": s["output_tokens"],
            "total_tokens": tokens,
            "input_cost": None,
            "output_cost": None,
            "total_cost": _money(s["cost_nanos"]),
            "total_cost_nanos": s["cost_nanos"],
            "batch_summary": summary,
        }

    # -- leaf hashes and the receipt tree ---------------------------------------------------
    def _leaf_buffer(self, tenant: str, seqs: np.ndarray) -> bytes:
        """The packed log leaf hashes of ``seqs`` (ascending), read from the tree."""
        if len(seqs) == 0:
            return b""
        lo, hi = int(seqs[0]), int(seqs[-1])
        data = self.ledger.leaf_hash_buffer(tenant, lo, hi + 1)
        if hi - lo + 1 == len(seqs):  # one run: already in order
            return data
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, HASH_SIZE)
        return rows[seqs - lo].tobytes()

    def _leaf_chunks(self, tenant: str, runs: np.ndarray) -> Iterator[bytes]:
        """The packed log leaf hashes of the seqs in ``runs`` (inclusive, ascending), in
        pieces read from the tree ``LEAF_WINDOW`` seqs at a time: a long run in slices,
        short runs gathered from one read of the window they lie in (memory stays bounded
        whatever the number of certified events)."""
        i, n = 0, len(runs)
        while i < n:
            lo, hi = int(runs[i, 0]), int(runs[i, 1])
            if hi - lo + 1 >= LEAF_WINDOW:
                for start in range(lo, hi + 1, LEAF_WINDOW):
                    yield self.ledger.leaf_hash_buffer(tenant, start,
                                                       min(hi + 1, start + LEAF_WINDOW))
                i += 1
                continue
            j = i + 1
            while j < n and int(runs[j, 1]) < lo + LEAF_WINDOW:
                j += 1
            if j == i + 1:
                yield self.ledger.leaf_hash_buffer(tenant, lo, hi + 1)
            else:
                yield self._leaf_buffer(tenant, seqs_of(runs[i:j]))
            i = j

    def _tiles_path(self, tenant: str, receipt_id: str) -> Path:
        return self.layout.receipt_tree(tenant, receipt_id)

    def _save_tiles(self, tenant: str, receipt_id: str, tiles: bytes) -> None:
        """Cache the receipt tree's 256-leaf tile hashes (derived data: no fsync; a
        missing or short file is rebuilt by ``prove``)."""
        path = self._tiles_path(tenant, receipt_id)
        write_atomic(private_dir(path.parent) / path.name, tiles, sync=False)

    def _tiles(self, tenant: str, receipt_id: str, runs: np.ndarray, n: int,
               merkle_root: str) -> MemoryTree:
        """The tree over the receipt's complete 256-leaf tiles, checked against the
        receipt's root once and kept for the next proofs (a few receipts at a time)."""
        key = (tenant, receipt_id)
        cached = self._tile_trees.get(key)
        if cached is not None:
            self._tile_trees.move_to_end(key)
            return cached
        tree = self._load_tiles(tenant, receipt_id, runs, n, merkle_root)
        self._tile_trees[key] = tree
        while len(self._tile_trees) > TILE_TREES_KEPT:
            self._tile_trees.popitem(last=False)
        return tree

    def _load_tiles(self, tenant: str, receipt_id: str, runs: np.ndarray, n: int,
                    merkle_root: str) -> MemoryTree:
        path = self._tiles_path(tenant, receipt_id)
        want = (n >> TILE_HEIGHT) * HASH_SIZE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        tiles = MemoryTree([data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
        # A cache of the right length must still give the receipt's root; anything else
        # is rebuilt from the leaves.
        if len(data) != want or _ReceiptTree(self, tenant, runs, n, tiles).subtree_hash(
                0, n).hex() != merkle_root:
            root, built = tree_levels_from_chunks(self._leaf_chunks(tenant, runs),
                                                  keep=TILE_HEIGHT)
            if root.hex() != merkle_root:
                raise RuntimeError(f"receipt {receipt_id}: its events no longer hash to its "
                                   "merkle_root; run `llmring ledger verify`")
            data = built[:want]
            self._save_tiles(tenant, receipt_id, data)
            tiles = MemoryTree([data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
        return tiles

    # -- reads ----------------------------------------------------------------------------
    def uncertified(self, tenant: str = "default", limit: int = 100,
                    offset: int = 0) -> dict[str, Any]:
        """Events no receipt certifies, oldest first: ``{logs, total, limit, offset,
        total_cost, total_cost_nanos, unpriced_logs}``; the totals are over every
        uncertified event, not the page (``total_cost`` an exact decimal string, USD)."""
        _check_paging(limit, offset)
        snapshot = self.ledger.snapshot()
        intervals = pr.uncertified_intervals(snapshot, tenant)
        total = pr.interval_count(intervals)
        logs = pr.logs_in(snapshot, tenant, intervals, offset, limit)
        sums = pr.interval_totals(snapshot, tenant, intervals)
        return {"logs": logs, "total": total, "limit": limit, "offset": offset,
                "total_cost": f"{nanos_to_decimal(sums['cost_nanos']):f}",
                "total_cost_nanos": sums["cost_nanos"], "unpriced_logs": sums["unpriced"]}

    def uncertified_cost(self, tenant: str = "default") -> dict[str, Any]:
        """Totals of the uncertified events (the preview of a since-last receipt: zeros
        when everything is certified)."""
        p = self.preview(tenant, since_last_receipt=True)
        return {k: p[k] for k in ("total_logs", "total_cost", "total_cost_nanos",
                                  "total_tokens")}

    def list(self, tenant: str = "default", limit: int = 100,
             offset: int = 0) -> dict[str, Any]:
        """Full signed receipts, newest first: ``{receipts, total, limit, offset}``."""
        _check_paging(limit, offset)
        snapshot = self.ledger.snapshot()
        texts = pr.receipt_texts(snapshot, tenant, limit=limit, offset=offset)
        return {"receipts": [orjson.loads(t) for t in texts],
                "total": pr.receipt_count(snapshot, tenant), "limit": limit, "offset": offset}

    def get(self, tenant: str, receipt_id: str) -> dict[str, Any]:
        """The full signed receipt; ``ReceiptNotFoundError`` if the tenant has none such."""
        row = pr.receipt_row(self.ledger.snapshot(), tenant, receipt_id)
        if row is None:
            raise ReceiptNotFoundError(f"no receipt {receipt_id!r} in project {tenant!r}")
        return orjson.loads(row["receipt"])

    def logs(self, tenant: str, receipt_id: str, limit: int = 100,
             offset: int = 0) -> dict[str, Any]:
        """The events a receipt certifies, in leaf order: ``{receipt_id, logs, total, …}``."""
        _check_paging(limit, offset)
        snapshot = self.ledger.snapshot()
        runs = self._certified(snapshot, tenant, receipt_id)
        return {"receipt_id": receipt_id,
                "logs": pr.logs_in(snapshot, tenant, runs, offset, limit),
                "total": pr.interval_count(runs), "limit": limit, "offset": offset}

    def logs_json(self, tenant: str, receipt_id: str, limit: int = 100,
                  offset: int = 0) -> bytes:
        """``logs``'s answer as JSON text, byte for byte ``orjson.dumps`` of it, with the
        page built column by column rather than as dicts (what the server sends)."""
        _check_paging(limit, offset)
        snapshot = self.ledger.snapshot()
        runs = self._certified(snapshot, tenant, receipt_id)
        return b"".join((b'{"receipt_id":', orjson.dumps(receipt_id), b',"logs":',
                         pr.logs_json_in(snapshot, tenant, runs, offset, limit),
                         b',"total":%d,"limit":%d,"offset":%d}' % (
                             pr.interval_count(runs), limit, offset)))

    def _certified(self, snapshot: Any, tenant: str, receipt_id: str) -> np.ndarray:
        """The seq runs a receipt of ``tenant`` certifies, in leaf order;
        ``ReceiptNotFoundError`` if the tenant has no such receipt. A receipt's runs never
        change once it is written, so the last few receipts' are kept (bounded: see
        ``CERTIFIED_KEPT``): paging through one reads them once, not once a page."""
        key = (tenant, receipt_id)
        with self._certified_lock:
            runs = self._certified_runs.get(key)
            if runs is not None:
                self._certified_runs.move_to_end(key)
                return runs
        if pr.receipt_row(snapshot, tenant, receipt_id) is None:
            raise ReceiptNotFoundError(f"no receipt {receipt_id!r} in project {tenant!r}")
        runs = pr.membership_runs(snapshot, tenant, receipt_id)
        if len(runs) <= CERTIFIED_MAX_RUNS:
            runs.setflags(write=False)
            with self._certified_lock:
                self._certified_runs[key] = runs
                while len(self._certified_runs) > CERTIFIED_KEPT:
                    self._certified_runs.popitem(last=False)
        return runs

    def public_keys(self) -> list[PublicKeyInfo]:
        """Every signing key, current and retired (what offline verifiers need)."""
        return self.keyring.keys()

    # -- proofs ---------------------------------------------------------------------------
    def prove(self, tenant: str, receipt_id: str, event_id: str) -> dict[str, Any]:
        """The offline proof bundle (docs/formats.md) that ``event_id`` is certified by the
        receipt, plus the event's inclusion in the tenant's log at the receipt's signed
        checkpoint."""
        snapshot = self.ledger.snapshot()
        row = pr.receipt_row(snapshot, tenant, receipt_id)
        if row is None:
            raise ReceiptNotFoundError(f"no receipt {receipt_id!r} in project {tenant!r}")
        receipt = orjson.loads(row["receipt"])
        ack = self.ledger.resolve(tenant, [event_id]).get(event_id)
        if ack is None:
            raise ReceiptNotFoundError(f"no log {event_id!r} in project {tenant!r}")
        runs = pr.membership_runs(snapshot, tenant, receipt_id)
        lengths = runs[:, 1] - runs[:, 0] + 1
        i = int(np.searchsorted(runs[:, 0], ack.seq, side="right")) - 1
        if i < 0 or ack.seq > runs[i, 1]:
            raise ReceiptNotFoundError(f"log {event_id!r} is not certified by receipt "
                                       f"{receipt_id!r}")
        index = int(lengths[:i].sum()) + ack.seq - int(runs[i, 0])
        n = int(receipt["certified_count"])
        tiles = self._tiles(tenant, receipt_id, runs, n, receipt["merkle_root"])
        source = _ReceiptTree(self, tenant, runs, n, tiles)
        path = inclusion_proof(source, index, n)
        event = self.ledger.event_of(ack)
        if event is None:  # pragma: no cover - index and log disagree
            raise RuntimeError(f"log {event_id!r} is indexed but not in the log")
        canonical = event.canonical_bytes()
        bundle: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "receipt": receipt,
            "event": orjson.loads(canonical),
            "leaf_hash": event.leaf_hash,
            "leaf_index": index,
            "tree_size": n,
            "audit_path": [h.hex() for h in path],
        }
        cp = receipt["log_checkpoint"]
        signed = self.checkpoints.at_size(cp["origin"], int(cp["size"]))
        if signed is not None:
            log_path = self.ledger.tree(tenant).inclusion_proof(ack.seq, int(cp["size"]))
            bundle["log_proof"] = {"checkpoint": self.notary.cosigned_note(signed),
                                   "leaf_index": ack.seq,
                                   "tree_size": int(cp["size"]),
                                   "audit_path": [h.hex() for h in log_path]}
            witnessed = self.notary.latest_cosigned_from(cp["origin"], int(cp["size"]) + 1)
            if witnessed is not None:  # a later cosigned checkpoint, linked by consistency
                later = parse_checkpoint(parse_note(witnessed).text).size
                link = self.ledger.tree(tenant).consistency_proof(int(cp["size"]), later)
                bundle["log_proof"]["witnessed"] = {"checkpoint": witnessed,
                                                    "consistency": [h.hex() for h in link]}
        return bundle


class _ReceiptTree:
    """A receipt's tree as a ``merkle.HashSource``: subtrees of complete 256-leaf tiles
    from the tree over the tile cache, smaller ones from the leaves (read from the
    tenant's log tree)."""

    def __init__(self, owner: Receipts, tenant: str, runs: np.ndarray, size: int,
                 tiles: MemoryTree) -> None:
        self.owner, self.tenant, self.runs, self.size, self.tiles = (
            owner, tenant, runs, size, tiles)

    def _leaves(self, start: int, end: int) -> list[bytes]:
        seqs = seqs_of(pr.slice_intervals(self.runs, start, end - start))
        data = self.owner._leaf_buffer(self.tenant, seqs)
        return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]

    def subtree_hash(self, start: int, end: int) -> bytes:
        parts = []
        for s, e in perfect_subtrees(start, end):
            if e - s >= TILE and s % TILE == 0:
                parts.append(self.tiles.subtree_hash(s // TILE, e // TILE))
            else:
                parts.append(root_from_leaf_hashes(self._leaves(s, e)))
        return fold_right(parts)


def _empty_message(tenant: str, sel: Selector, no_logs: bool = False) -> str:
    if sel.where and not no_logs:
        plain = _empty_message(tenant, Selector(sel.mode, sel.conversation_id, sel.start,
                                                sel.end, sel.log_ids))
        shown = ", ".join(f"{k}={v}" for k, v in sel.where)
        return f"{plain} (among the logs whose metadata matches {shown})"
    if no_logs:
        return (f"nothing to certify: project {tenant!r} has no logs (is the project name "
                "right?)")
    if sel.mode == "conversation":
        return (f"nothing to certify: project {tenant!r} has no logs in conversation "
                f"{sel.conversation_id!r}")
    if sel.mode == "date_range":
        assert sel.start is not None and sel.end is not None
        return (f"nothing to certify: project {tenant!r} has no logs from "
                f"{format_ts(ts_to_us(sel.start))} to {format_ts(ts_to_us(sel.end))} "
                "(end exclusive)")
    if sel.mode == "since_last":
        return (f"nothing to certify: every log of project {tenant!r} is already certified "
                "by a receipt")
    return f"nothing to certify: none of the log_ids is a log of project {tenant!r}"


__all__ = ["BUNDLE_FORMAT", "ReceiptNotFoundError", "ReceiptRequestError", "Receipts",
           "Selector", "log_ids_digest", "selector"]
