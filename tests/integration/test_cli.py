"""The `llmring` command line: ingest, record, ledger stats/verify/compact/flush, usage
report and demo, run with click's CliRunner on temporary data directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger import Ledger
from ledger.cli import cli, main
from tests.support.paths import SAMPLES


def llmring(data: Path, *args: str, input: str | None = None, project: str | None = None
            ) -> Result:
    """Run `llmring --data DATA [--project P] ARGS…` isolated from the environment."""
    runner = CliRunner(env={"LLMRING_LEDGER_DIR": None, "LLMRING_PROJECT": None})
    head = ["--data", str(data)] + (["--project", project] if project else [])
    return runner.invoke(cli, [*head, *args], input=input, catch_exceptions=False)


def call(n: int, **overrides: Any) -> dict[str, Any]:
    """A usage event with a provider-reported cost (so no price lookup decides it)."""
    event: dict[str, Any] = {
        "event_id": f"call-{n}",
        "ts": f"2025-06-02T{8 + n % 10:02d}:{n % 60:02d}:00Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "alias": "fast",
        "input_tokens": 1000 + n,
        "output_tokens": 200 + n,
        "cost": "0.0005",
    }
    event.update(overrides)
    return event


def jsonl(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                            for x in lines))
    return path


def as_json(result: Result) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def events_in(data: Path, project: str = "default") -> list[Any]:
    with Ledger(data, pricer=None) as led:
        return led.events(project, limit=1000)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def three_calls(tmp_path: Path) -> Path:
    return jsonl(tmp_path / "calls.jsonl", call(1), "", call(2), call(3, model="gpt-4o"))


# -- ingest ------------------------------------------------------------------------------
def test_ingest_appends_every_line_and_reports_the_counts(data: Path, three_calls: Path
                                                          ) -> None:
    result = llmring(data, "ingest", str(three_calls), "--json")
    assert result.exit_code == 0, result.stderr
    out = as_json(result)
    assert (out["read"], out["created"], out["repeats"], out["paired"]) == (3, 3, 0, 0)
    assert out["cost_nanos"] == 3 * 500_000
    assert [e.event_id for e in events_in(data)] == ["call-1", "call-2", "call-3"]


def test_ingest_table_output_shows_the_counts(data: Path, three_calls: Path) -> None:
    result = llmring(data, "ingest", str(three_calls))
    assert result.exit_code == 0
    assert "events created" in result.stdout and "3" in result.stdout


def test_ingest_with_a_bad_line_names_it_exits_2_and_appends_nothing(data: Path,
                                                                     tmp_path: Path) -> None:
    bad = {k: v for k, v in call(2).items() if k != "model"}
    path = jsonl(tmp_path / "bad.jsonl", call(1), "", bad, call(3), "{not json")
    result = llmring(data, "ingest", str(path))
    assert result.exit_code == 2
    assert "line 3: model: is required" in result.stderr
    assert "line 5: malformed JSON" in result.stderr
    assert "2 of 4 lines are invalid; nothing was appended" in result.stderr
    assert "Traceback" not in result.output
    assert not data.exists() or events_in(data) == []


def test_ingest_bad_lines_as_json_list_each_line(data: Path, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "bad.jsonl", call(1), call(2, input_tokens=-1))
    result = llmring(data, "ingest", str(path), "--json")
    assert result.exit_code == 2
    out = as_json(result)
    assert out["created"] == 0 and out["invalid"] == 1
    assert out["errors"][0]["line"] == 2


def test_ingesting_the_same_file_twice_creates_nothing_new(data: Path, three_calls: Path
                                                           ) -> None:
    llmring(data, "ingest", str(three_calls))
    again = as_json(llmring(data, "ingest", str(three_calls), "--json"))
    assert (again["created"], again["repeats"], again["cost_nanos"]) == (0, 3, 0)
    assert len(events_in(data)) == 3


def test_ingest_reads_stdin_when_file_is_a_dash(data: Path, three_calls: Path) -> None:
    result = llmring(data, "ingest", "-", "--json", input=three_calls.read_text())
    assert result.exit_code == 0
    assert as_json(result)["created"] == 3


def test_ingest_of_a_missing_file_is_a_one_line_usage_error(data: Path, tmp_path: Path
                                                            ) -> None:
    result = llmring(data, "ingest", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot read {tmp_path / 'nope.jsonl'}: no such file"]


def test_ingest_refuses_an_event_id_reused_with_different_content_in_the_file(
        data: Path, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "dup.jsonl", call(1), call(1, input_tokens=5))
    result = llmring(data, "ingest", str(path))
    assert result.exit_code == 2
    assert "line 2: event_id 'call-1' is also on line 1" in result.stderr
    assert not data.exists() or events_in(data) == []


def test_ingest_pairs_a_usage_log_with_its_conversation_event(data: Path, tmp_path: Path
                                                              ) -> None:
    conv = "0197301c-5a2e-7c41-9f0e-3b6d2a8c1e55"
    path = jsonl(tmp_path / "conv.jsonl",
                 call(1, kind="conversation", conversation_id=conv),
                 call(2, id_at_origin=conv, metadata={"conversation_id": conv}))
    out = as_json(llmring(data, "ingest", str(path), "--json"))
    assert (out["created"], out["paired"]) == (1, 1)
    assert [e.kind for e in events_in(data)] == ["conversation"]


def test_ingest_converts_usage_log_cost_in_usd_exactly(data: Path, tmp_path: Path) -> None:
    line = {"model": "gpt-4o-mini", "provider": "openai", "input_tokens": 1200,
            "output_tokens": 300, "cost": 0.00036, "timestamp": "2025-06-04T09:12:03Z"}
    llmring(data, "ingest", str(jsonl(tmp_path / "log.jsonl", line)))
    (event,) = events_in(data)
    assert (event.cost_nanos, event.cost_source) == (360_000, "client")


def test_sample_files_ingest_cleanly_and_the_bad_sample_is_refused(data: Path) -> None:
    for name in ("usage.jsonl", "usage-log.jsonl"):
        result = llmring(data, "ingest", str(SAMPLES / name))
        assert result.exit_code == 0, result.stderr
    bad = llmring(data, "ingest", str(SAMPLES / "bad-lines.jsonl"))
    assert bad.exit_code == 2 and "line 2:" in bad.stderr


# -- record and stats --------------------------------------------------------------------
def test_record_then_stats_json_shows_the_event(data: Path) -> None:
    ack = as_json(llmring(data, "record", "--provider", "openai", "--model", "gpt-4o-mini",
                          "--alias", "fast", "--input-tokens", "1000", "--output-tokens", "200",
                          "--cost", "0.00042", "--event-id", "r-1",
                          "--ts", "2025-06-02T10:00:00", "--tz", "UTC",
                          "--metadata", '{"feature": "chat"}', "--json"))
    assert (ack["event_id"], ack["seq"], ack["cost_nanos"]) == ("r-1", 0, 420_000)
    assert ack["ts"] == "2025-06-02T10:00:00.000000Z"  # a wall-clock time in --tz UTC
    stats = as_json(llmring(data, "ledger", "stats", "--json"))
    project = stats["projects"]["default"]
    assert (project["events"], project["log_size"], project["cost_nanos"]) == (1, 1, 420_000)
    assert project["first_ts"] == project["last_ts"] == "2025-06-02T10:00:00.000000Z"
    assert len(bytes.fromhex(project["root"])) == 32
    assert stats["segments"] >= 1 and stats["journal_tail_rows"] == 0


def test_record_prices_a_call_without_cost_from_the_price_table(data: Path) -> None:
    ack = as_json(llmring(data, "record", "--provider", "openai", "--model", "gpt-4o-mini",
                          "--input-tokens", "1000", "--output-tokens", "200", "--json"))
    assert ack["cost_source"] == "price_table" and ack["cost_nanos"] > 0


def test_record_with_invalid_metadata_is_a_usage_error(data: Path) -> None:
    result = llmring(data, "record", "--provider", "openai", "--model", "m",
                     "--metadata", "[1, 2]")
    assert result.exit_code == 2
    assert "--metadata must be a JSON object" in result.stderr


def test_stats_of_a_directory_without_a_ledger_is_a_usage_error(data: Path) -> None:
    result = llmring(data, "ledger", "stats")
    assert result.exit_code == 2 and "no ledger in" in result.stderr
    assert not data.exists()


def test_a_directory_in_use_by_another_writer_is_a_usage_error(data: Path) -> None:
    with Ledger(data, pricer=None):
        result = llmring(data, "ledger", "stats")
    assert result.exit_code == 2
    assert "in use by another process" in result.stderr


# -- usage report ------------------------------------------------------------------------
def test_usage_report_json_sums_calls_tokens_and_cost(data: Path, three_calls: Path) -> None:
    llmring(data, "ingest", str(three_calls))
    out = as_json(llmring(data, "usage", "report", "--by", "model", "--json"))
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["gpt-4o-mini"]["calls"] == 2
    assert rows["gpt-4o-mini"]["input_tokens"] == 1001 + 1002
    assert rows["gpt-4o"]["cost_nanos"] == 500_000
    assert out["total"]["calls"] == 3
    assert out["total"]["cost_nanos"] == 1_500_000
    assert out["total"]["output_tokens"] == 201 + 202 + 203


def test_usage_report_csv_has_a_header_and_exact_costs(data: Path, three_calls: Path) -> None:
    llmring(data, "ingest", str(three_calls))
    result = llmring(data, "usage", "report", "--by", "alias", "--csv")
    assert result.stdout.splitlines() == [
        "alias,calls,input_tokens,output_tokens,total_tokens,cost,unpriced_calls",
        "fast,3,3006,606,3612,0.001500000,0",
    ]


def test_usage_report_date_only_end_includes_the_whole_end_day(data: Path, tmp_path: Path
                                                               ) -> None:
    path = jsonl(tmp_path / "days.jsonl", call(1, ts="2025-06-01T23:59:59Z"),
                 call(2, ts="2025-06-02T00:00:00Z"), call(3, ts="2025-06-02T23:59:59.999999Z"),
                 call(4, ts="2025-06-03T00:00:00Z"))
    llmring(data, "ingest", str(path))
    out = as_json(llmring(data, "usage", "report", "--start", "2025-06-02", "--end",
                          "2025-06-02", "--tz", "UTC", "--json"))
    assert out["total"]["calls"] == 2
    assert (out["start"], out["end"]) == ("2025-06-02T00:00:00.000000Z",
                                          "2025-06-03T00:00:00.000000Z")


def test_usage_report_groups_days_in_the_given_time_zone(data: Path, tmp_path: Path) -> None:
    # 22:30 UTC on 1 June is 00:30 on 2 June in Madrid (UTC+2 in summer).
    llmring(data, "ingest", str(jsonl(tmp_path / "tz.jsonl", call(1, ts="2025-06-01T22:30:00Z"))))
    out = as_json(llmring(data, "usage", "report", "--by", "day", "--tz", "Europe/Madrid",
                          "--json"))
    assert [r["day"] for r in out["rows"]] == ["2025-06-02"]


def test_unknown_time_zone_exits_2_with_a_clear_message(data: Path, three_calls: Path) -> None:
    llmring(data, "ingest", str(three_calls))
    result = llmring(data, "usage", "report", "--tz", "Mars/Olympus_Mons")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --tz: unknown time zone 'Mars/Olympus_Mons': use "
                                     "an IANA name such as 'UTC' or 'Europe/Madrid'")


@pytest.mark.parametrize("option", ["--start", "--end"])
def test_a_bad_date_exits_2_naming_the_option(data: Path, three_calls: Path, option: str
                                              ) -> None:
    llmring(data, "ingest", str(three_calls))
    result = llmring(data, "usage", "report", option, "June 2nd")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {option}: 'June 2nd' is not a date")


def test_a_bad_grouping_exits_2_listing_the_choices(data: Path, three_calls: Path) -> None:
    """A bare unknown name is a metadata key (its calls group under (none) here); a name
    that cannot be a key is refused."""
    llmring(data, "ingest", str(three_calls))
    result = llmring(data, "usage", "report", "--by", "model,colour")
    assert result.exit_code == 0 and "(none)" in result.stdout
    result = llmring(data, "usage", "report", "--by", "model,meta.")
    assert result.exit_code == 2
    assert "cannot group by 'meta.'" in result.stderr
    assert "choose from model, alias" in result.stderr


# -- demo, verify, compact, flush --------------------------------------------------------
def test_demo_fills_three_projects_and_verify_then_exits_0(data: Path) -> None:
    demo = llmring(data, "demo", "--events", "200", "--days", "5")
    assert demo.exit_code == 0, demo.stderr
    assert "llmring --data" in demo.stdout and "ledger verify" in demo.stdout
    verify = llmring(data, "ledger", "verify")
    assert verify.exit_code == 0, verify.stdout
    assert verify.stdout.startswith("OK: ")


def test_demo_data_has_pairs_provider_costs_and_an_unpriced_model(data: Path) -> None:
    out = as_json(llmring(data, "demo", "--events", "200", "--days", "5", "--json"))
    assert set(out["projects"]) == {"acme-support", "acme-search", "default"}
    assert sum(p["events"] for p in out["projects"].values()) == 200
    assert out["created"] == 200 and out["paired"] > 0
    assert sum(p["unpriced"] for p in out["projects"].values()) >= 1
    sources = as_json(llmring(data, "usage", "report", "--by", "cost_source", "--json",
                              project="acme-support"))
    assert {"provider", "price_table"} <= {r["cost_source"] for r in sources["rows"]}


def test_running_the_demo_again_creates_nothing_new(data: Path) -> None:
    llmring(data, "demo", "--events", "100", "--days", "3")
    again = as_json(llmring(data, "demo", "--events", "100", "--days", "3", "--json"))
    assert again["created"] == 0 and again["repeats"] == 100


def test_verify_reports_an_altered_segment_and_exits_1(data: Path, three_calls: Path) -> None:
    llmring(data, "ingest", str(three_calls))
    segment = next((data / "events").rglob("*.parquet"))
    segment.write_bytes(segment.read_bytes() + b"tampered")
    result = llmring(data, "ledger", "verify")
    assert result.exit_code == 1
    assert result.stdout.startswith("FAILED: ")
    assert str(segment.relative_to(data)) in result.stdout


def test_verify_json_of_an_altered_directory_says_not_ok(data: Path, three_calls: Path
                                                         ) -> None:
    llmring(data, "ingest", str(three_calls))
    segment = next((data / "events").rglob("*.parquet"))
    segment.write_bytes(segment.read_bytes() + b"tampered")
    result = llmring(data, "ledger", "verify", "--json")
    assert result.exit_code == 1
    out = as_json(result)
    assert out["ok"] is False and out["problems"]


def test_compact_merges_the_segments_of_one_day(data: Path, tmp_path: Path) -> None:
    for n in range(3):  # each ingest seals its own segment for 2 June
        llmring(data, "ingest", str(jsonl(tmp_path / f"{n}.jsonl", call(n))))
    out = as_json(llmring(data, "ledger", "compact", "--json"))
    assert (out["merged"], out["written"]) == (3, 1)
    assert [e.event_id for e in events_in(data)] == ["call-0", "call-1", "call-2"]


# -- every command's --json parses -------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["ingest", "{calls}"],
    ["record", "--provider", "openai", "--model", "gpt-4o-mini", "--input-tokens", "10"],
    ["ledger", "stats"],
    ["ledger", "verify"],
    ["ledger", "compact"],
    ["ledger", "flush"],
    ["usage", "report", "--by", "model,alias,day"],
    ["demo", "--events", "20", "--days", "2"],
], ids=lambda a: " ".join(a[:2]))
def test_json_output_of_each_command_parses(data: Path, three_calls: Path, args: list[str]
                                            ) -> None:
    llmring(data, "ingest", str(three_calls))
    args = [str(three_calls) if a == "{calls}" else a for a in args]
    result = llmring(data, *args, "--json")
    assert result.exit_code == 0, result.stderr
    assert isinstance(as_json(result), dict)


def test_main_is_the_console_script_entry_point() -> None:
    assert callable(main)
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "record", "ledger", "usage", "demo"):
        assert command in result.stdout


def test_verify_of_a_directory_without_a_ledger_is_a_usage_error(tmp_path: Path) -> None:
    result = llmring(tmp_path, "ledger", "verify")
    assert result.exit_code == 2 and "no ledger in" in result.stderr
