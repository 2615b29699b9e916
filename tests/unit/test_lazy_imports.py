"""What a started server has not imported yet (``ledger.lazy``): pyarrow's compute
kernels, its Parquet and file-system modules, the OTLP protobuf messages, rich and a
WebSocket protocol are memory an idle server does without; each is imported by its first
use, which then works as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ledger.lazy import LazyModule, lazy

ROOT = Path(__file__).resolve().parents[2]
LAZY = ("pyarrow.compute", "pyarrow._compute", "pyarrow.parquet", "pyarrow.fs",
        "pyarrow._s3fs", "google.protobuf", "opentelemetry.proto", "rich", "wsproto",
        "websockets", "duckdb")

SCRIPT = """
import sys
from pathlib import Path

import uvicorn.config
from fastapi.testclient import TestClient

import ledger.cli.main  # what `llmring serve` runs, as ledger.cli.serve.serve builds it
from ledger.api.apikeys import ApiKeyStore
from ledger.server import ServerConfig, create_app
from ledger.server.app import ServerState
from ledger.server.connections import ConnectionLimits, uvicorn_options
from ledger.server.fastpath import FastPath
from ledger.server.ops import Operations
from ledger.server.receipts import ReceiptLogsFastPath
from ledger.server.tlog import TileFastPath

LAZY = {lazy!r}
TAIL_ONLY = ("pyarrow.acero", "pyarrow.dataset", "pyarrow.parquet", "pyarrow._s3fs", "duckdb")
data = Path({data!r})
config = ServerConfig(data, seal_rows=10**12)
state = ServerState(config)
key = ApiKeyStore(data).create("p")[0]
fastapi = create_app(config, state=state)
asgi = Operations(TileFastPath(ReceiptLogsFastPath(FastPath(fastapi), fastapi), fastapi), fastapi,
                  access_log=True)
options = uvicorn_options(ConnectionLimits(5.0, 10.0, 60.0, None))
uvicorn.config.Config(asgi, **options).load()  # the protocols uvicorn.run would import
headers = {{"X-API-Key": key}}
with TestClient(asgi) as http:
    assert http.get("/health").status_code == 200
    started = sorted(m for m in sys.modules if m.startswith(LAZY))
    print("started:", started)
    assert not started, started
    # first uses: a batch (compute kernels), reads over the tail, a generate
    events = [{{"provider": "openai", "model": "gpt-4o", "input_tokens": i + 1,
                "output_tokens": 2, "timestamp": "2026-01-02T03:04:05Z"}}
              for i in range(50)]
    r = http.post("/api/v1/log/batch", json={{"events": events}}, headers=headers)
    assert r.status_code == 200 and r.json()["created"] == 50, r.text
    r = http.get("/api/v1/receipts/uncertified?limit=10", headers=headers)
    assert r.status_code == 200 and r.json()["total"] == 50, r.text
    r = http.post("/api/v1/receipts/generate", json={{"since_last_receipt": True}},
                  headers=headers)
    assert r.status_code == 200 and r.json()["certified_count"] == 50, r.text
    assert "pyarrow.compute" in sys.modules
    # a tail's group totals run Acero's plan without pyarrow.acero (which imports the
    # dataset, Parquet and file-system modules): none of them for writes and tail reads
    tail_only = sorted(m for m in sys.modules if m.startswith(TAIL_ONLY))
    print("after tail work:", tail_only)
    assert not tail_only, tail_only
"""


def test_a_started_server_has_not_imported_what_only_some_requests_need(tmp_path: Path):
    """In a fresh process, as ``llmring serve`` builds it (the CLI imported, the directory
    opened, the app and its fast paths built, uvicorn's protocols loaded, the app
    started and ``/health`` answered): none of ``LAZY`` is imported; then a batch, an
    uncertified page and a generate work and import what they use, and no more: not the
    dataset, Parquet or file-system modules, nor DuckDB, while every event is in the tail."""
    script = SCRIPT.format(lazy=LAZY, data=str(tmp_path / "d"))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "started: []" in done.stdout


def test_a_lazy_module_is_imported_by_its_first_attribute_and_keeps_what_it_read():
    """The stand-in imports its module on the first attribute read and keeps each name
    read on itself; dunder probes (copy, pickle, inspect) do not import it."""
    colorsys = "colorsys"
    sys.modules.pop(colorsys, None)
    module = lazy(colorsys)
    assert isinstance(module, LazyModule) and colorsys in repr(module)
    with pytest.raises(AttributeError):
        module.__wrapped__  # noqa: B018
    assert colorsys not in sys.modules
    assert module.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert colorsys in sys.modules
    assert "rgb_to_hsv" in vars(module)  # kept: the next read is a plain attribute
    assert module.rgb_to_hsv is sys.modules[colorsys].rgb_to_hsv
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_aggregate_is_pyarrows_group_by():
    """``tailview.aggregate`` gives what ``Table.group_by(keys).aggregate`` gives (the
    same plan): same columns, names, types and groups, nulls in keys and values too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from projections.tailview import aggregate

    table = pa.table({"k": ["a", "b", "a", None, "b"], "d": [1, 1, 1, 2, 1],
                      "v": [1, 2, 3, None, None], "ts": [5, 6, 7, 8, 9]})
    aggregations = [("ts", "count", pc.CountOptions(mode="all")), ("v", "sum"),
                    ("ts", "min"), ("ts", "max")]
    ours = aggregate(table, ["k", "d"], aggregations)
    theirs = table.group_by(["k", "d"]).aggregate(aggregations)
    assert ours.schema == theirs.schema
    assert ours.sort_by([("k", "ascending"), ("d", "ascending")]).equals(
        theirs.sort_by([("k", "ascending"), ("d", "ascending")]))
    assert ours.num_rows == 3


def test_the_otlp_enum_names_are_the_protobufs():
    """``otlp.ENUM_NAMES`` is written out (reading it from the protobuf messages would
    import them with the app, whose OpenAPI schema lists the names): the same names, in
    the protobuf's order."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from ledger.integrations import otlp

    names = {"SpanKind": tuple(Span.SpanKind.keys()),
             "StatusCode": tuple(Status.StatusCode.keys())}
    assert names == otlp.ENUM_NAMES
