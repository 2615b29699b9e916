"""Read-side endpoints of one project: usage rollups, exports (CSV, JSON lines, Parquet),
and the project's log tree: a signed checkpoint of its current state and consistency
proofs between two sizes (so a client that kept an old checkpoint can check that history
was only appended to)."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Literal

import orjson
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, HTTPException, Query, Request, Response

from ledger.server.logs import Tenant, _aware, json_response, state
from projections.exports import export_table
from projections.rollups import DIMENSIONS, rollup

router = APIRouter(tags=["reports"])
MAX_SIZE = 2**53 - 1


def _window(start: datetime | None, end: datetime | None
            ) -> tuple[datetime | None, datetime | None]:
    start, end = _aware(start), _aware(end)
    if start is not None and end is not None and start >= end:
        raise HTTPException(400, "start must be before end")
    return start, end


@router.get("/api/v1/usage/rollup", summary="Calls, tokens and cost grouped")
def usage_rollup(tenant: Tenant, request: Request,
                 by: Annotated[str, Query(max_length=200, description=(
                     "Comma-separated dimensions: " + ", ".join(DIMENSIONS)))] = "model",
                 tz: Annotated[str, Query(max_length=64)] = "UTC",
                 start: datetime | None = None, end: datetime | None = None) -> Response:
    """Rollups of the project's calls grouped by any of model, alias, provider, kind,
    cost_source, day, week, month (periods in the IANA zone `tz`); start <= ts < end."""
    dims = [d.strip() for d in by.split(",") if d.strip()]
    if len(set(dims)) != len(dims):
        raise HTTPException(400, "by: each dimension may be named once")
    start, end = _window(start, end)
    rows = rollup(state(request).ledger.snapshot(), tenant, dims, tz=tz, start=start, end=end)
    return json_response({"by": dims, "tz": tz, "rows": [r.as_dict() for r in rows]})


MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson",
         "parquet": "application/vnd.apache.parquet"}


@router.get("/api/v1/exports/events", summary="Export the project's events",
            response_class=Response,
            responses={200: {"content": {m: {} for m in MEDIA.values()}}})
def export_events(tenant: Tenant, request: Request,
                  format: Literal["csv", "jsonl", "parquet"] = "jsonl",
                  start: datetime | None = None, end: datetime | None = None) -> Response:
    """Every event of the project (in log order, optionally start <= ts < end) as CSV,
    JSON lines or Parquet; each row has the event's canonical fields, seq, recorded_at
    and leaf_hash."""
    start, end = _window(start, end)
    table = export_table(state(request).ledger.snapshot(), tenant, start=start, end=end)
    name = f"{tenant}-events.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return Response(sink.getvalue(), media_type=MEDIA[format], headers=headers)
    if format == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return Response(sink.getvalue(), media_type=MEDIA[format], headers=headers)
    lines = []
    for row in table.to_pylist():
        for key in ("ts", "recorded_at"):
            if row[key] is not None:
                row[key] = row[key].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines.append(orjson.dumps(row))
    body = b"\n".join(lines) + (b"\n" if lines else b"")
    return Response(body, media_type=MEDIA[format], headers=headers)


@router.get("/api/v1/log/checkpoint", summary="Sign the project's log now")
def log_checkpoint(tenant: Tenant, request: Request) -> Response:
    """A C2SP tlog-checkpoint of the project's log as it is now, signed by the ledger
    (the stored one when the log has not grown): `{origin, size, root, root_b64, note,
    issued_at}`. Keep it: later consistency proofs show the log only grew."""
    s = state(request)
    with s.tenant_lock(tenant):
        size = s.ledger.size(tenant)
        root = s.ledger.tree(tenant).root(size)
        signed = s.checkpoints.issue(f"{s.origin}/{tenant}", size, root, s.keyring)
    return json_response(signed.to_json())


@router.get("/api/v1/log/consistency", summary="Consistency proof between two sizes")
def log_consistency(tenant: Tenant, request: Request,
                    first: Annotated[int, Query(ge=0, le=MAX_SIZE)],
                    second: Annotated[int | None, Query(ge=0, le=MAX_SIZE)] = None
                    ) -> Response:
    """RFC 9162 consistency proof from the log at size `first` to size `second` (default:
    the current size), with both roots."""
    tree = state(request).ledger.tree(tenant)
    size = state(request).ledger.size(tenant)
    second = size if second is None else second
    if second > size:
        raise HTTPException(400, f"second ({second}) is larger than the log ({size} entries)")
    if first > second:
        raise HTTPException(400, f"first ({first}) must not be larger than second ({second})")
    proof = tree.consistency_proof(first, second) if 0 < first < second else []
    return json_response({"first": first, "second": second,
                          "first_root": tree.root(first).hex(),
                          "second_root": tree.root(second).hex(),
                          "proof": [h.hex() for h in proof]})
