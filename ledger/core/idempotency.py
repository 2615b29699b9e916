"""Idempotency and conversation pairing (docs/decisions.md): which events of an append are new,
which repeat an id already stored (same request: its acknowledgement again; different
request: ``IdConflictError``), and which usage logs complete a conversation event.

``Idempotency`` owns the id index (``index.sqlite``): it indexes appended events,
pairings, replayed parts and sealed segments, looks ids up (ids the ledger generated for
usage events are not indexed: they are found in the tail and in the segments of the day
the id names; every other id is, a caller's id in the generated shape included, whatever
its ``ts``) and compares a repeated request with the stored event field by field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ledger.core.tail import Tail, TailPart
from ledger.errors import LedgerError
from ledger.lazy import lazy
from ledger.model.batch import PreparedBatch
from ledger.model.event import (
    Ack,
    Event,
    IdConflictError,
    Prepared,
    format_ts,
    generated_id_day,
    is_generated_id,
    locates_itself,
    ts_to_us,
)
from ledger.model.schema import LEDGER_FIELDS, PRICE_FIELDS
from ledger.storage.index import IdEntry, Index
from ledger.storage.manifest import Manifest, Segment
from ledger.storage.segments import SegmentStore

pc = lazy("pyarrow.compute")

INDEXED = ("event_id", "seq", "ts", "cost_nanos", "cost_source", "conversation_id", "kind")

StoredEvent = Callable[[str, str], Event | None]  # (tenant, event id) → the stored event


@dataclass(slots=True)
class Plan:
    """What an append does with each event of its batch: ``fixed`` maps positions of
    events not created now to their acknowledgement (a repeat, or a usage log paired with
    its conversation: filled in later), ``new`` lists the positions to create (None: all),
    ``pairs`` the usage logs that complete a conversation event (its id, or the position
    in ``new`` of one created by this batch)."""

    fixed: dict[int, Ack]
    new: list[int] | None
    pairs: list[tuple[int, str | int]]


class Idempotency:
    """Id lookups, pairing and the id index of one open directory. Callers hold the write
    lock for everything but ``repeats`` and ``pairing_candidates``."""

    def __init__(self, index: Index, manifest: Manifest, store: SegmentStore, tail: Tail,
                 stored_event: StoredEvent) -> None:
        self.index = index
        self.manifest = manifest
        self.store = store
        self.tail = tail
        self.stored_event = stored_event

    # -- planning an append --------------------------------------------------------------
    @staticmethod
    def repeats(batch: PreparedBatch) -> dict[int, int]:
        """Repeats of a client id inside the batch (position → its first position):
        identical requests are stored once; different ones raise ``IdConflictError``."""
        ids = batch.event_id
        first: dict[str, int] = {}
        repeat_of: dict[int, int] = {}
        for i, generated in enumerate(batch.generated):
            if generated:
                continue
            j = first.setdefault(ids[i], i)
            if j == i:
                continue
            if batch.digest[i] != batch.digest[j]:
                diffs = differences(batch.fields(j), batch.prepared(i))
                if diffs:
                    raise IdConflictError(ids[i], diffs)
            repeat_of[i] = j
        return repeat_of

    @staticmethod
    def pairing_candidates(batch: PreparedBatch) -> set[int]:
        """Usage logs that may complete a conversation event (they name a conversation)."""
        if any(batch.id_at_origin) or '"conversation_id"' in "".join(batch.metadata_json):
            return {i for i in range(len(batch)) if batch.kind[i] == "usage" and (
                batch.id_at_origin[i] or "conversation_id" in batch.metadata[i])}
        return set()

    def plan(self, tenant: str, batch: PreparedBatch, repeat_of: Mapping[int, int],
             candidates: set[int]) -> Plan:
        ids = batch.event_id
        lookup = [ids[i] for i, g in enumerate(batch.generated)
                  if not g and i not in repeat_of]
        known = self.lookup(tenant, lookup) if lookup else {}
        fixed: dict[int, Ack] = {}
        new: list[int] | None = None
        pairs: list[tuple[int, str | int]] = []
        if known or candidates or repeat_of:
            new = []
            local_convs: dict[str, list[int]] = {}  # conversation id → unpaired new
            paired_now: set[str] = set()
            for i in range(len(batch)):
                if i in repeat_of:
                    continue
                entry = None if batch.generated[i] else known.get(ids[i])
                if entry is not None:
                    if entry.digest is None or entry.digest != batch.digest[i]:
                        self.compare_with_stored(tenant, batch.prepared(i), entry.ack.event_id,
                                                 paired=entry.target is not None,
                                                 digest=entry.digest)
                    fixed[i] = entry.ack
                    continue
                if i in candidates:
                    target = self.pair_target(tenant, batch.metadata[i],
                                              batch.id_at_origin[i], paired_now, local_convs)
                    if target is not None:
                        pairs.append((i, target))
                        continue
                if batch.kind[i] == "conversation":
                    local_convs.setdefault(batch.conversation_id[i], []).append(len(new))
                new.append(i)
        return Plan(fixed, new, pairs)

    def pair_target(self, tenant: str, metadata: Mapping[str, Any], id_at_origin: str | None,
                    paired_now: set[str], local_convs: dict[str, list[int]]
                    ) -> str | int | None:
        """The conversation event a usage log completes (docs/decisions.md): the oldest event of
        the conversation it names that has no partner yet; None if it is a new call."""
        meta_conv = metadata.get("conversation_id")
        names = [c for c in (meta_conv, id_at_origin) if isinstance(c, str) and c]
        for conv in dict.fromkeys(names):
            found = self.index.unpaired_conversation(tenant, conv, exclude=paired_now)
            if found is not None:
                paired_now.add(found[1])
                return found[1]
            waiting = local_convs.get(conv)
            if waiting:
                return waiting.pop(0)
        return None

    def compare_with_stored(self, tenant: str, p: Prepared, stored_id: str, *, paired: bool,
                            digest: bytes | None) -> None:
        """A repeated id whose digest differs (or is unknown): compare field by field."""
        if paired:  # a usage log joined to a conversation: only its digest was kept
            if digest is not None:
                raise IdConflictError(p.event_id)
            return
        stored = self.stored_event(tenant, stored_id)
        if stored is None:  # pragma: no cover - index and log disagree
            raise LedgerError(f"event {stored_id!r} is indexed but not in the log")
        diffs = differences(stored.to_json_dict(), p)
        if diffs:
            raise IdConflictError(p.event_id, diffs)

    # -- lookups -------------------------------------------------------------------------
    def lookup(self, tenant: str, event_ids: Sequence[str]) -> dict[str, IdEntry]:
        """The index entries of ``event_ids``; ids the ledger generated for usage events
        are found in the log itself."""
        found = self.index.lookup(tenant, event_ids)
        rest = [e for e in event_ids if e not in found and is_generated_id(e)]
        if rest:
            found.update(self.find_generated(tenant, rest))
        return found

    def ack_of(self, tenant: str, event_id: str) -> Ack:
        return self.lookup(tenant, [event_id])[event_id].ack

    def find_generated(self, tenant: str, event_ids: Sequence[str]) -> dict[str, IdEntry]:
        """Events with generated ids, looked up in the unsealed tail and in the segments
        of the days the ids name (a generated id carries its event's ``ts``)."""
        want = set(event_ids)
        columns = ["event_id", "seq", "ts", "cost_nanos", "cost_source", "conversation_id"]
        tables = []
        needle = pa.array(sorted(want), pa.string())
        for chunk in self.tail.chunks():
            for part in chunk.parts:
                if part.tenant == tenant:
                    mask = pc.is_in(part.table.column("event_id"), value_set=needle)
                    if pc.any(mask).as_py():
                        tables.append(part.table.filter(mask).select(columns))
        dates = {generated_id_day(e) for e in want} - {None}
        for seg in self.manifest.state.segments(tenant):
            if seg.date in dates:
                t = self.store.read(seg, columns,
                                    filters=pc.field("event_id").isin(needle))
                if t.num_rows:
                    tables.append(t)
        out: dict[str, IdEntry] = {}
        for t in tables:
            for r in t.to_pylist():
                ack = Ack(r["event_id"], tenant, r["seq"], ts_to_us(r["ts"]), r["cost_nanos"],
                          r["cost_source"], r["conversation_id"], created=False)
                out[r["event_id"]] = IdEntry(ack, None, None)
        return out

    # -- indexing ------------------------------------------------------------------------
    def index_segment(self, seg: Segment) -> None:
        if seg.kind == "events":
            table = self.store.read(seg, list(INDEXED))
            self.index_table(seg.tenant, table, [None] * table.num_rows, replace=True)
        elif seg.kind == "pairs":
            t = self.store.read(seg).to_pylist()
            for p in t:
                self.index_pair({"tenant": seg.tenant, "event_id": p["event_id"],
                                 "usage_id": p["usage_id"], "digest": p["digest"]})

    def index_part(self, part: TailPart, *, replace: bool = False) -> None:
        self.index_table(part.tenant, part.table, part.digest_list(), replace=replace)

    def index_table(self, tenant: str, table: pa.Table, digests: Sequence[bytes | None], *,
                    replace: bool) -> None:
        """Index the events of a segment or a replayed tail part (``digests`` in its row
        order; None where unknown or the id was generated)."""
        d = table.select(list(INDEXED)).to_pydict()
        self.index_columns(tenant, d["event_id"], d["seq"], [ts_to_us(t) for t in d["ts"]],
                           d["cost_nanos"], d["cost_source"], d["conversation_id"],
                           d["kind"], digests, replace=replace)

    def index_columns(self, tenant: str, ids: Sequence[str], seqs: Sequence[int],
                      ts_us: Sequence[int], costs: Sequence[int], sources: Sequence[str],
                      convs: Sequence[str | None], kinds: Sequence[str],
                      digests: Sequence[bytes | None], *, replace: bool = False,
                      generated: Sequence[bool] | None = None) -> None:
        """Index appended events. A usage event whose id the ledger generated is left out
        (``generated``; when not known, as for a sealed segment: no digest and an id that
        ``locates_itself``): nobody can have sent that id before, and a later lookup finds
        it by the day the id names (``find_generated``). A caller's id in the generated
        shape with another ``ts`` is indexed, or a rebuilt index would lose it and a
        repeat would be appended again. Conversation events are always indexed, for
        pairing."""
        if generated is None:
            generated = [d is None and locates_itself(e, t)
                         for e, d, t in zip(ids, digests, ts_us, strict=True)]
        kept = [r for r, g in zip(zip(ids, seqs, digests, ts_us, costs, sources, convs,
                                      kinds, strict=True), generated, strict=True)
                if not g or r[7] == "conversation"]
        if kept:  # (event_id, seq, digest, ts, cost, source, conversation, target)
            self.index.add_ids(tenant, [(*r[:7], None) for r in kept], replace=replace)
        conversations = [(r[6], r[1], r[0]) for r in kept if r[7] == "conversation"]
        if conversations:
            self.index.add_conversations(tenant, conversations)

    def index_pair(self, pair: Mapping[str, Any]) -> None:
        tenant = pair["tenant"]
        self.index.mark_paired(tenant, [pair["event_id"]])
        if pair.get("usage_id"):
            target = self.lookup(tenant, [pair["event_id"]]).get(pair["event_id"])
            if target is not None:
                a = target.ack
                digest = pair.get("digest")
                if isinstance(digest, str):
                    digest = bytes.fromhex(digest)
                self.index.add_ids(tenant, [(pair["usage_id"], a.seq, digest, a.ts_us,
                                             a.cost_nanos, a.cost_source, a.conversation_id,
                                             pair["event_id"])], replace=True)


def differences(stored: Mapping[str, Any], p: Prepared) -> list[str]:
    """Fields in which request ``p`` disagrees with a stored event (ledger-filled values
    the request left out are not compared)."""
    skip = {*LEDGER_FIELDS, "event_id"}
    if not p.ts_given:
        skip.add("ts")
    if not p.cost_given:
        skip.update(PRICE_FIELDS)
    out = []
    for name, value in p.fields.items():
        if name in skip:
            continue
        other = stored.get(name)
        if name == "ts" and isinstance(other, datetime):
            other = format_ts(ts_to_us(other.astimezone(UTC)))
        if other != value:
            out.append(name)
    return out


__all__ = ["INDEXED", "Idempotency", "Plan", "differences"]
