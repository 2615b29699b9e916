"""Read-side endpoints of one project: which project the API key names, its figures,
usage rollups, exports (CSV, JSON lines, Parquet), and the project's log tree: a signed
checkpoint of its current state and consistency proofs between two sizes (so a client
that kept an old checkpoint can check that history was only appended to)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ledger.api import operations as ops
from ledger.server.logs import Tenant, When, json_response, route, service
from ledger.server.schemas import DimensionsIn
from projections.rollups import DIMENSIONS

router = APIRouter(tags=["reports"])
Where = Annotated[list[str] | None, Query(max_length=16, description=(
    "A metadata filter, KEY=VALUE (repeat for AND): only the events whose metadata key "
    "KEY has the value VALUE (numbers and booleans as their JSON text)"))]
MAX_SIZE = 2**53 - 1
MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson",
         "parquet": "application/vnd.apache.parquet", "focus-csv": "text/csv",
         "focus-parquet": "application/vnd.apache.parquet"}


@route(router, ops.WHOAMI)
def whoami(tenant: Tenant, request: Request) -> Response:
    """`{project, origin}`: the project the API key belongs to, and the origin of its
    log (what `llmring --server` names in its output)."""
    return json_response(service(request).project(tenant))


@route(router, ops.ROLLUP)
def usage_rollup(tenant: Tenant, request: Request,
                 by: Annotated[str, Query(max_length=2000, description=(
                     "Comma-separated dimensions: " + ", ".join(DIMENSIONS)
                     + ", or a metadata key: meta.<key> (or a bare key that is not one "
                     "of those)"))] = "model",
                 tz: Annotated[str, Query(max_length=64)] = "UTC",
                 start: When = None, end: When = None, where: Where = None) -> Response:
    """Rollups of the project's calls grouped by any of model, alias, provider, kind,
    cost_source, day, week, month (periods in the IANA zone `tz`) and metadata keys
    (`meta.customer`; events without the key form the row whose key is null);
    start <= ts < end; `where=KEY=VALUE` (repeatable) keeps only matching events."""
    dims = [d.strip() for d in by.split(",") if d.strip()]
    return json_response(service(request).rollup(tenant, by=dims, tz=tz, start=start,
                                                  end=end, where=where))


@route(router, ops.DIMENSIONS)
def dimensions(tenant: Tenant, request: Request) -> Response:
    """`{project, dimensions}`: the metadata keys the project declares as dimensions
    (stored as columns in its segments, so reports by them read no JSON)."""
    return json_response(service(request).dimensions(tenant))


@route(router, ops.SET_DIMENSIONS)
def set_dimensions(body: DimensionsIn, tenant: Tenant, request: Request) -> Response:
    """Declare the project's dimensions (`{"keys": ["customer", "team"]}`; `[]`: none):
    segments written from now on carry a column per key. 400 for a bad key."""
    return json_response(service(request).set_dimensions(tenant, body.keys))


@route(router, ops.EXPORT, response_class=Response,
       responses={200: {"content": {m: {} for m in MEDIA.values()}}})
def export_events(tenant: Tenant, request: Request,
                  format: Literal["csv", "jsonl", "parquet", "focus-csv",
                                  "focus-parquet"] = "jsonl",
                  start: When = None, end: When = None, where: Where = None) -> Response:
    """Every event of the project (in log order, optionally start <= ts < end, optionally
    only those whose metadata matches `where=KEY=VALUE`, repeatable) as CSV,
    JSON lines or Parquet; each row has the event's canonical fields, seq, recorded_at
    and leaf_hash. `focus-csv` / `focus-parquet`: one FOCUS 1.2 cost row per call
    (docs/formats.md). The answer streams, in bounded memory whatever the size of the log."""
    chunks = service(request).export_stream(tenant, format=format, start=start, end=end,
                                            where=where)
    kind, _, ext = format.rpartition("-")
    name = f"{tenant}-{kind or 'events'}.{ext}"
    return StreamingResponse(_closing(chunks), media_type=MEDIA[format],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _closing(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` read in the thread pool (each is a query and an encoding), and closed
    however the response ends: a client that goes away mid-export frees its query."""
    try:
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):  # a disconnect cancels: close all the same
            await run_in_threadpool(chunks.close)  # type: ignore[attr-defined]


@route(router, ops.STATS)
def stats(tenant: Tenant, request: Request) -> Response:
    """The project's figures: `{events, first_ts, last_ts, cost, cost_nanos, unpriced,
    log_size, root, segments, segment_bytes, journal_tail_rows}` (`llmring ledger stats`
    with --server)."""
    return json_response(service(request).stats(tenant))


@route(router, ops.CHECKPOINT)
def log_checkpoint(tenant: Tenant, request: Request) -> Response:
    """A C2SP tlog-checkpoint of the project's log as it is now, signed by the ledger
    (the stored one when the log has not grown): `{origin, size, root, root_b64, note,
    issued_at}`. Keep it: later consistency proofs show the log only grew."""
    return json_response(service(request).checkpoint(tenant))


@route(router, ops.LOG_INCLUSION)
def log_inclusion(log_id: str, tenant: Tenant, request: Request,
                  size: Annotated[int | None, Query(ge=1, le=MAX_SIZE)] = None) -> Response:
    """The log's inclusion at a signed checkpoint (the current one, or the one signed at
    `size`): `{format: "ledger-log-inclusion/v1", checkpoint (signed note), event
    (canonical fields), leaf_index, tree_size, audit_path}`; check it offline with
    `llmring log verify-inclusion FILE`."""
    return json_response(service(request).log_inclusion(tenant, log_id, size))


class CosignedNote(BaseModel):
    """A checkpoint the ledger signed, with witnesses' cosignature lines added."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=64 * 1024)


@route(router, ops.ADD_COSIGNATURES)
def add_cosignatures(body: CosignedNote, tenant: Tenant, request: Request) -> Response:
    """Accept a checkpoint of the project's log that witnesses cosigned (`llmring witness
    cosign`): their C2SP tlog-cosignature lines are stored with the checkpoint, and
    `GET /api/v1/log/checkpoint` serves them in `cosigned_note`. A note the ledger never
    signed is refused (400)."""
    return json_response(service(request).add_cosignatures(tenant, body.note))


@route(router, ops.WITNESSES)
def log_witnesses(tenant: Tenant, request: Request) -> Response:
    """The project's log with each witness of the data directory's `witnesses.policy`:
    `{origin, policy, checkpoint_size, quorum, quorum_met, witnesses: [{name, key, url,
    state, cosigned_size, cosigned_at, cosigned_latest, last_attempt, last_error,
    failures}]}` (docs/http-api.md); `policy` is null when there is none."""
    return json_response(service(request).witnesses(tenant))


@route(router, ops.CONSISTENCY)
def log_consistency(tenant: Tenant, request: Request,
                    first: Annotated[int, Query(ge=0, le=MAX_SIZE)],
                    second: Annotated[int | None, Query(ge=0, le=MAX_SIZE)] = None
                    ) -> Response:
    """RFC 9162 consistency proof from the log at size `first` to size `second` (default:
    the current size), with both roots."""
    return json_response(service(request).consistency(tenant, first, second))
