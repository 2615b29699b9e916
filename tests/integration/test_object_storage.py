"""Segments on S3-compatible object storage, against a real server (SeaweedFS, started by
``tests.support.seaweed``): a data directory given ``--storage s3://bucket/prefix`` keeps
every segment file (events, pairs, receipts, membership) in the bucket and none locally,
and ingestion (embedded and through a real ``llmring serve``), sealing, compaction,
receipts, inclusion proofs, ``ledger verify``, rollups and exports all work on them,
giving what the same data gives on local disk; the Iceberg table ``ledger.events`` lists
the segments in the bucket, and DuckDB (through pyiceberg) and Spark (through S3A) read it
by name and reproduce the rollup exactly. A bad storage URI, an unreachable store
or a changed URI is a clear error that writes nothing; ``--data s3://…`` is refused."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from ledger import Ledger
from ledger.api.service import LedgerService
from ledger.core.audit import verify_directory
from ledger.errors import OWNER_HEADER, ManifestForkError, ObjectStoreError, StorageUriError
from ledger.storage.iceberg import IDENTIFIER, catalog_properties, read_published
from ledger.storage.layout import SEGMENT_KINDS, DataDir
from ledger.storage.manifest import read_lines
from tests.support import iceberg_spark, serverproc
from tests.support.cli import as_json, llmring
from tests.support.seaweed import (  # noqa: F401 (fixture)
    ACCESS_KEY,
    BUCKET,
    REGION,
    SECRET_KEY,
    S3Server,
    s3_server,
)

PROJECTS = ("alpha", "beta")
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:  # noqa: F811
    """The server, with the AWS variables pointing this process and its children at it."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("LLMRING_STORAGE", raising=False)
    return s3_server


def calls(batch: int, n: int = 40) -> list[dict[str, Any]]:
    """``n`` priced calls spread over ``DAYS`` and three models (batch ``batch``)."""
    return [{"provider": "openai", "model": ("gpt-4o-mini", "gpt-4o", "o3")[i % 3],
             "input_tokens": 100 + i, "output_tokens": 10 + batch,
             "cost": f"0.00{i % 7 + 1}", "ts": f"{DAYS[i % len(DAYS)]}T{i % 24:02d}:00:00Z",
             "metadata": {"customer": f"c{i % 4}"}}
            for i in range(n)]


def converse(service: LedgerService, led: Ledger) -> None:
    """A conversation of project alpha, then the usage log that completes it."""
    service.log_conversation(
        "alpha", messages=[{"role": "user", "content": "hi"}], response={"content": "hey"},
        conversation_id="conv-1", metadata={"provider": "openai", "model": "gpt-4o",
                                            "ts": f"{DAYS[0]}T05:00:00Z"})
    led.append({"provider": "openai", "model": "gpt-4o", "input_tokens": 5,
                "output_tokens": 2, "cost": "0.001", "ts": f"{DAYS[0]}T05:00:01Z",
                "metadata": {"conversation_id": "conv-1"}}, tenant="alpha")


def manifest_objects(s3: S3Server, base: str, project: str) -> list[bytes]:
    """The objects holding ``project``'s manifest records, in record order."""
    fs, folder = s3.filesystem(), f"{base}/projects/{project}/manifest"
    names = [f for f in s3.files(folder)]
    assert names == [f"{n:012d}.json" for n in range(len(names))]
    out = []
    for name in names:
        with fs.open_input_stream(f"{folder}/{name}") as f:
            out.append(f.read())
    return out


def local_segment_files(data: Path) -> list[Path]:
    return [p for kind in SEGMENT_KINDS if (data / kind).exists()
            for p in (data / kind).rglob("*") if p.is_file()]


def exported(service: LedgerService) -> list[tuple[Any, ...]]:
    """Project beta's events as exported (JSON lines), without their generated ids."""
    lines = b"".join(service.export_stream("beta", format="jsonl")).splitlines()
    return [(e["seq"], e["model"], e["ts"], e["input_tokens"], e["cost"])
            for e in map(json.loads, lines)]


def rollups(service: LedgerService) -> dict[str, Any]:
    return {p: service.rollup(p, by=["model", "day", "customer"])["rows"] for p in PROJECTS}


def test_an_embedded_ledger_keeps_every_segment_in_the_bucket(s3: S3Server,
                                                              tmp_path: Path) -> None:
    """Sealed and compacted segments, receipts and their membership are objects under
    the prefix (none in the data directory); reports, exports, receipts, proofs and the
    audit read them there and agree with the same data on local disk; files the manifest
    retired are removed once no snapshot holds them (or at the next open), and no object
    the ledger did not write."""
    uri = f"s3://{BUCKET}/{tmp_path.name}/embedded"
    base = uri.removeprefix("s3://")
    remote_dir, local_dir = tmp_path / "remote", tmp_path / "local"
    remote = Ledger(remote_dir, storage=uri, pricer=None, checkpoint_interval=None,
                    iceberg=True)
    local = Ledger(local_dir, pricer=None, checkpoint_interval=None)
    r_service, l_service = LedgerService(remote_dir, ledger=remote), \
        LedgerService(local_dir, ledger=local)
    try:
        for batch in range(4):  # four seals: several small segments per project and day
            for led, service in ((remote, r_service), (local, l_service)):
                for project in PROJECTS:
                    led.append_many(calls(batch), tenant=project)
                if batch == 0:  # a conversation and its usage log: a pairing
                    converse(service, led)
                led.flush()
        receipts = {}
        for led, service in ((remote, r_service), (local, l_service)):
            receipts[led] = service.generate_receipt("alpha", start_date="2026-11-01",
                                                     end_date="2026-11-02")
            led.flush()
            assert led.compact().merged >= 3
        receipt = receipts[remote]
        assert receipt["certified_count"] == receipts[local]["certified_count"] > 0
        live = {s.path: s for s in remote.live_segments()}  # every project's unit
        assert {s.kind for s in live.values()} == set(SEGMENT_KINDS)
        assert set(live) <= set(s3.files(base))
        assert local_segment_files(remote_dir) == []

        assert rollups(r_service) == rollups(l_service)
        exports = [exported(service) for service in (r_service, l_service)]
        assert exports[0] == exports[1] and len(exports[0]) == 4 * 40
        log_id = r_service.receipt_logs("alpha", receipt["receipt"]["receipt_id"],
                                        limit=1)["logs"][0]["id"]
        assert r_service.get_log("alpha", log_id)["event_id"] == log_id
        listed = [service.list_logs("beta", limit=50, offset=20)["logs"]
                  for service in (r_service, l_service)]
        assert [(e["seq"], e["model"], e["ts"]) for e in listed[0]] == \
            [(e["seq"], e["model"], e["ts"]) for e in listed[1]] != []
        bundle = r_service.prove("alpha", receipt["receipt"]["receipt_id"], log_id)
        assert r_service.verify_receipt(bundle)["valid"] is True
        report = rollups(r_service)
        retired = {d["path"] for u in remote.units() for r in u.manifest.state.records
                   for d in r["remove"]}
    finally:
        remote.close()
        local.close()

    foreign = [f"{base}/events/tenant=alpha/date={DAYS[0]}/seg-other.parquet",
               f"{base}/events/tenant=alpha/date={DAYS[0]}/_staging.parquet"]
    # replaced by compaction: removed from the bucket once no snapshot of the ledger held them
    assert retired and retired.isdisjoint(s3.files(base))
    fs = s3.filesystem()
    for path in foreign:  # written by someone else: never removed
        with fs.open_output_stream(path) as out:
            out.write(b"not ours")
    reopened = Ledger(remote_dir, pricer=None, checkpoint_interval=None)  # URI from config
    try:
        assert rollups(LedgerService(remote_dir, ledger=reopened)) == report
        segment_files = [f for f in s3.files(base) if not f.startswith("projects/")]
        assert segment_files == sorted([*(s.path for s in reopened.live_segments()),
                                        *(p[len(base) + 1:] for p in foreign)])
        for project in PROJECTS:  # each manifest record is an object too, the same bytes
            assert manifest_objects(s3, base, project) == \
                read_lines(DataDir(remote_dir).project(project).manifest)[0]
    finally:
        reopened.close()
    audit = verify_directory(remote_dir)  # the Iceberg table's check included
    assert audit.ok, audit.problems
    assert audit.segments_checked == len(live)
    published = read_published(DataDir(remote_dir))
    assert published is not None and published.files == {
        f"s3://{base}/{s.path}" for s in live.values() if s.kind == "events"}


ROLLUP_SQL = {  # each project's calls by model and UTC day, as ``usage/rollup`` gives them
    "duckdb": """SELECT model, strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d') AS day, count(*),
                 sum(input_tokens), sum(output_tokens), sum(cost_nanos)
                 FROM events WHERE tenant = 'alpha' GROUP BY ALL ORDER BY model, day""",
    "spark": """SELECT model, date_format(ts, 'yyyy-MM-dd') AS day, count(*),
                sum(input_tokens), sum(output_tokens), sum(cost_nanos)
                FROM ledger.ledger.events WHERE tenant = 'alpha'
                GROUP BY 1, 2 ORDER BY 1, 2""",
}


def rollup_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["model"], r["day"], r["calls"], r["input_tokens"], r["output_tokens"],
             r["cost_nanos"]] for r in rows]


def test_a_served_ledger_writes_segments_to_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    """``llmring serve --storage`` (a real process) seals into the bucket; its receipts
    and proofs verify, its rollup equals the same calls on local disk, and afterwards
    ``llmring ledger verify`` and ``usage report`` read the segments there."""
    uri = f"s3://{BUCKET}/{tmp_path.name}/served"
    data = tmp_path / "data"
    server = serverproc.start(data, projects=("alpha",), extra=("--storage", uri, "--iceberg"))
    try:
        alpha = httpx.Client(base_url=server.url, headers=server.headers("alpha"), timeout=30)
        for batch in range(3):
            r = alpha.post("/api/v1/log/batch", json={"events": calls(batch)})
            assert r.status_code == 200, r.text
        r = alpha.post("/api/v1/receipts/generate", json={"since_last_receipt": True})
        assert r.status_code == 200, r.text
        rid = r.json()["receipt"]["receipt_id"]
        log_id = alpha.get(f"/api/v1/receipts/{rid}/logs").json()["logs"][0]["id"]
        bundle = alpha.get(f"/api/v1/receipts/{rid}/proof/{log_id}").json()
        assert alpha.post("/api/v1/receipts/verify", json=bundle).json()["valid"] is True
        served = alpha.get("/api/v1/usage/rollup", params={"by": "model,day"}).json()["rows"]
    finally:
        assert server.stop() == 0  # a graceful stop seals the journal into the bucket
    base = uri.removeprefix("s3://")
    assert any(f.startswith("events/tenant=alpha/") for f in s3.files(base))
    assert any(f.startswith("receipts/tenant=alpha/") for f in s3.files(base))
    assert local_segment_files(data) == []

    with Ledger(tmp_path / "twin", pricer=None) as twin:
        for batch in range(3):
            twin.append_many(calls(batch), tenant="alpha")
        expected = LedgerService(tmp_path / "twin", ledger=twin).rollup(
            "alpha", by=["model", "day"])["rows"]
    assert served == expected
    verified = llmring(data, "ledger", "verify", "--json")
    assert as_json(verified)["ok"] is True
    report = as_json(llmring(data, "--project", "alpha", "usage", "report", "--by",
                             "model,day", "--tz", "UTC", "--json"))
    assert sum(row["calls"] for row in report["rows"]) == 3 * 40

    # The Iceberg table the server published lists the segments in the bucket: read by
    # name, through pyiceberg into DuckDB and through Spark's S3A, it gives the rollup.
    published = read_published(DataDir(data))
    assert published is not None and published.files and all(
        f.startswith(f"s3://{base}/events/tenant=alpha/") for f in published.files)
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("ledger", **catalog_properties(DataDir(data)), **{
        "s3.endpoint": s3.endpoint, "s3.access-key-id": ACCESS_KEY,
        "s3.secret-access-key": SECRET_KEY, "s3.region": REGION})
    con = duckdb.connect()
    con.register("events", catalog.load_table(IDENTIFIER).scan().to_arrow())
    assert [list(r) for r in con.execute(ROLLUP_SQL["duckdb"]).fetchall()] == \
        rollup_rows(served)
    if (reason := iceberg_spark.missing()) is not None:
        pytest.skip(f"Spark: {reason}")
    spark_rows = iceberg_spark.run_sql(data, tmp_path, ROLLUP_SQL["spark"], s3={
        "endpoint": s3.endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    assert spark_rows == rollup_rows(served)


def test_tampering_with_an_object_in_the_bucket_fails_the_audit(s3: S3Server,
                                                                tmp_path: Path) -> None:
    """``ledger verify`` reads the segments in the bucket: one rewritten object is
    reported as altered, one deleted object as missing (exit 1); a manifest record's
    object that differs from the local record is reported too."""
    uri = f"s3://{BUCKET}/{tmp_path.name}/tamper"
    data = tmp_path / "data"
    with Ledger(data, storage=uri, pricer=None) as led:
        for batch in range(2):
            led.append_many(calls(batch), tenant="alpha")
            led.flush()
        victims = [s.path for s in led.unit("alpha").manifest.state.segments("alpha")][:2]
    assert verify_directory(data).ok
    fs, base = s3.filesystem(), uri.removeprefix("s3://")
    with fs.open_input_stream(f"{base}/{victims[0]}") as f:
        good = f.read()
    with fs.open_output_stream(f"{base}/{victims[0]}") as out:  # one byte flipped
        out.write(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    fs.delete_file(f"{base}/{victims[1]}")
    result = llmring(data, "ledger", "verify", "--json")
    assert result.exit_code == 1
    problems = {(p["kind"], p["where"]) for p in json.loads(result.output)["problems"]}
    assert ("segment-hash", victims[0]) in problems
    assert ("segment-missing", victims[1]) in problems

    record = f"{base}/projects/alpha/manifest/000000000001.json"  # a record rewritten
    with fs.open_input_stream(record) as f:
        line = f.read()
    with fs.open_output_stream(record) as out:
        out.write(line.replace(b'"op":"seal"', b'"op":"seal" '))
    result = llmring(data, "ledger", "verify", "--json")
    assert result.exit_code == 1
    problems = {(p["kind"], p["where"]) for p in json.loads(result.output)["problems"]}
    assert ("manifest-objects", f"s3://{record}") in problems


def nothing_written(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


def test_bad_storage_uris_are_clear_errors_that_write_nothing(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad scheme, a bad bucket name, a bucket that does not exist and an endpoint
    that does not answer are refused (exit 2, one line), and no data directory is made."""
    cases = {"gs://bucket/prefix": "unsupported scheme",
             "s3://Bad_Bucket/p": "is not a bucket name",
             "s3://no-such-bucket/p": "does not exist",
             f"s3://{BUCKET}/p?endpoint_override=x": "give only s3://bucket/prefix"}
    ingest = tmp_path / "calls.jsonl"
    ingest.write_text("".join(json.dumps(c) + "\n" for c in calls(0, 3)))
    for uri, message in cases.items():
        data = tmp_path / "d"
        result = llmring(data, "--storage", uri, "ingest", str(ingest))
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert nothing_written(data)
        with pytest.raises(StorageUriError if "exist" not in message else ObjectStoreError):
            Ledger(data, storage=uri)
        assert nothing_written(data)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{serverproc.free_port()}")
    result = llmring(tmp_path / "d", "--storage", f"s3://{BUCKET}/p", "ingest", str(ingest))
    assert result.exit_code == 2 and "cannot reach" in result.output, result.output
    assert nothing_written(tmp_path / "d")


def test_the_storage_of_a_directory_is_fixed_when_first_used(s3: S3Server,
                                                              tmp_path: Path) -> None:
    """Another URI on a directory with segments in the bucket, or any URI on a directory
    keeping its segments locally, is refused and changes nothing."""
    uri = f"s3://{BUCKET}/{tmp_path.name}/fixed"
    data, plain = tmp_path / "data", tmp_path / "plain"
    with Ledger(data, storage=uri + "/", pricer=None) as led:  # the same URI, canonical
        led.append({"model": "m", "provider": "p", "input_tokens": 1}, tenant="alpha")
    config = (data / "config.json").read_bytes()
    assert f'"storage": "{uri}"' in config.decode()
    for other in (f"s3://{BUCKET}/elsewhere", f"s3://{BUCKET}"):
        result = llmring(data, "--storage", other, "ledger", "flush")
        assert result.exit_code == 2 and f"keeps its segments in {uri}" in result.output
        assert llmring(data, "--storage", other, "ledger", "verify").exit_code == 2
    assert (data / "config.json").read_bytes() == config
    assert llmring(data, "--storage", uri, "ledger", "flush").exit_code == 0
    with Ledger(plain, pricer=None) as led:
        led.append({"model": "m", "provider": "p", "input_tokens": 1}, tenant="alpha")
    before = (plain / "config.json").read_bytes()
    result = llmring(plain, "--storage", uri, "ledger", "flush")
    assert result.exit_code == 2 and "in the directory itself" in result.output
    assert (plain / "config.json").read_bytes() == before


@pytest.mark.parametrize("value", ["s3://ledger/prefix", "s3:", "file:///tmp/x"])
def test_a_uri_as_data_directory_points_to_storage(value: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--data s3://…`` (any URI) is refused with a pointer to ``--storage``, and no
    local ``s3:`` folder appears."""
    monkeypatch.chdir(tmp_path)
    from click.testing import CliRunner

    from ledger.cli import cli

    result = CliRunner().invoke(cli, ["--data", value, "ledger", "flush"])
    assert result.exit_code == 2
    assert "--storage" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []



def test_two_directories_writing_one_project_through_one_bucket_cannot_fork_it(
        s3: S3Server, tmp_path: Path) -> None:
    """Each manifest record is an object written with a conditional put, before the local
    line: of two processes (separate data directories, one bucket) that both write
    project alpha, the second to seal is refused (``ManifestForkError``, the two records
    as evidence) and nothing of its seal stays in the bucket; the first goes on and
    verifies. A record whose local line a crash lost is taken back from the bucket on
    open."""
    uri = f"s3://{BUCKET}/{tmp_path.name}/fork"
    base = uri.removeprefix("s3://")
    first = Ledger(tmp_path / "a", storage=uri, pricer=None, checkpoint_interval=None)
    second = Ledger(tmp_path / "b", storage=uri, pricer=None, checkpoint_interval=None)
    try:
        first.append_many(calls(0), tenant="alpha")
        second.append_many(calls(1), tenant="alpha")
        first.flush()
        before = s3.files(base)
        with pytest.raises(ManifestForkError) as refused:
            second.flush()
        assert refused.value.where.endswith("/projects/alpha/manifest/000000000000.json")
        assert refused.value.theirs is not None and refused.value.ours != refused.value.theirs
        assert s3.files(base) == before  # its segments were removed, no record written
        first.append_many(calls(2), tenant="alpha")
        first.flush()
    finally:
        first.close()
        with contextlib.suppress(ManifestForkError):
            second.close()
    local = DataDir(tmp_path / "a").project("alpha").manifest
    lines = read_lines(local)[0]
    assert manifest_objects(s3, base, "alpha") == lines and len(lines) == 2
    assert verify_directory(tmp_path / "a").ok

    local.write_bytes(b"".join(line + b"\n" for line in lines[:-1]))  # a crash after the put
    with Ledger(tmp_path / "a", pricer=None, checkpoint_interval=None) as reopened:
        assert reopened.count("alpha") == 2 * 40
    assert read_lines(local)[0] == lines
    assert verify_directory(tmp_path / "a").ok


def test_servers_of_separate_directories_share_the_ownership_map_in_the_bucket(
        s3: S3Server, tmp_path: Path) -> None:
    """With segments on object storage the ownership map is the bucket's object
    ``owners.json``: two real servers with data directories of their own (two machines)
    on one bucket each record their project there, a write to the other's project is
    refused with 421 naming the owner found there, and a stop removes its records."""
    uri = f"s3://{BUCKET}/{tmp_path.name}/owners"
    base = uri.removeprefix("s3://")
    ports = {"alpha": serverproc.free_port(), "beta": serverproc.free_port()}
    urls = {p: f"http://127.0.0.1:{port}" for p, port in ports.items()}
    servers = {p: serverproc.start(tmp_path / p, projects=PROJECTS, port=ports[p], extra=(
        "--storage", uri, "--owns", p, "--url", urls[p])) for p in PROJECTS}
    try:
        with s3.filesystem().open_input_stream(f"{base}/owners.json") as f:
            recorded = json.loads(f.read())["projects"]
        assert {p: v["url"] for p, v in recorded.items()} == urls
        for mine, theirs in (("alpha", "beta"), ("beta", "alpha")):
            server = servers[mine]
            r = httpx.post(f"{server.url}/api/v1/log", json=calls(0, 1)[0],
                           headers=server.headers(theirs), timeout=30)
            assert r.status_code == 421, r.text
            assert r.headers[OWNER_HEADER] == urls[theirs] == r.json()["owner"]
            r = httpx.post(f"{server.url}/api/v1/log", json=calls(0, 1)[0],
                           headers=server.headers(mine), timeout=30)
            assert r.status_code == 200, r.text
    finally:
        for server in servers.values():
            assert server.stop() == 0
    with s3.filesystem().open_input_stream(f"{base}/owners.json") as f:
        assert json.loads(f.read())["projects"] == {}
