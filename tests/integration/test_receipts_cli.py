"""`llmring receipts …`: the guide's commands end to end, JSON and table output, clear
usage errors, proofs written to files and verified offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ledger import Ledger
from tests.conftest import usage
from tests.support.cli import as_json, llmring
from tests.support.terminal import run_on_tty, visible


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    with Ledger(path, pricer=None) as led:
        led.append_many([usage(ts=f"2025-10-{d:02d}T12:00:00Z", conversation_id=f"conv-{d % 3}",
                               model=("gpt-4o", "gpt-4o-mini")[d % 2], cost="0.5")
                         for d in range(1, 32)])
        led.append(usage(ts="2025-11-01T00:00:00Z"))
    return path


def test_generate_for_one_conversation(data: Path):
    out = as_json(llmring(data, "receipts", "generate", "--conversation", "conv-1", "--json"))
    assert out["certified_count"] == 11
    assert out["receipt"]["scope"]["conversation_id"] == "conv-1"


def test_daily_since_last_batch(data: Path):
    out = as_json(llmring(data, "receipts", "generate", "--since-last", "--description",
                          "Daily certification", "--json"))
    assert out["certified_count"] == 32
    assert out["receipt"]["description"] == "Daily certification"
    again = llmring(data, "receipts", "generate", "--since-last")
    assert again.exit_code == 0, again.output
    assert again.output.strip().splitlines() == [
        "nothing new to certify: every log of project 'default' is already certified by "
        "a receipt"]
    strict = llmring(data, "receipts", "generate", "--since-last", "--strict")
    assert strict.exit_code == 2 and "already certified" in strict.output
    quiet = as_json(llmring(data, "receipts", "generate", "--since-last", "--json"))
    assert quiet["receipt"] is None and quiet["code"] == "nothing_to_certify"
    assert as_json(llmring(data, "receipts", "list", "--json"))["total"] == 1


def test_a_quiet_day_previews_as_zero(data: Path):
    """After everything is certified, preview --since-last answers zeros, exit 0."""
    llmring(data, "receipts", "generate", "--since-last")
    out = as_json(llmring(data, "receipts", "preview", "--since-last", "--json"))
    assert (out["total_logs"], out["total_cost_nanos"]) == (0, 0)
    table = llmring(data, "receipts", "preview", "--since-last")
    assert table.exit_code == 0 and "0 calls" in table.output


def test_a_mistyped_project_is_named_as_having_no_logs(data: Path):
    """--project with no logs: the message says the project has no logs (not that
    everything is certified); a strict run is an error."""
    result = llmring(data, "--project", "nosuchproject", "receipts", "generate",
                     "--since-last", "--strict")
    assert result.exit_code == 2
    assert "project 'nosuchproject' has no logs" in result.output
    assert "already certified" not in result.output
    quiet = llmring(data, "--project", "nosuchproject", "receipts", "generate",
                    "--since-last")
    assert quiet.exit_code == 0 and "has no logs" in quiet.output


def test_monthly_date_range_with_by_model_and_repeated_tags(data: Path):
    out = as_json(llmring(data, "receipts", "generate", "--start", "2025-10-01", "--end",
                          "2025-10-31", "--description", "October billing", "--tags",
                          "billing", "--tags", "monthly", "--json"))
    r = out["receipt"]
    assert out["certified_count"] == 31
    assert r["tags"] == ["billing", "monthly"]
    assert r["batch_summary"]["by_model"]["gpt-4o"]["calls"] == 15
    assert r["total_cost"] == 15.5


def test_explicit_log_ids_are_repeatable(data: Path):
    ids = [log["id"] for log in as_json(llmring(data, "receipts", "uncertified", "--limit",
                                                "3", "--json"))["logs"]]
    args = [a for i in ids for a in ("--log-id", i)]
    assert as_json(llmring(data, "receipts", "generate", *args, "--json"))[
        "certified_count"] == 3


def test_preview_writes_nothing(data: Path):
    out = as_json(llmring(data, "receipts", "preview", "--start", "2025-10-01", "--end",
                          "2025-10-31", "--json"))
    assert out["total_logs"] == 31 and out["total_cost"] == 15.5
    assert out["by_model"]["gpt-4o-mini"]["calls"] == 16
    assert as_json(llmring(data, "receipts", "list", "--json"))["total"] == 0


def test_preview_table_shows_the_breakdowns(data: Path):
    result = llmring(data, "receipts", "preview", "--since-last")
    assert result.exit_code == 0
    assert "would certify" in result.output and "By model" in result.output


def test_uncertified_shows_the_calls_and_their_cost(data: Path):
    page = as_json(llmring(data, "receipts", "uncertified", "--limit", "20", "--json"))
    assert page["total"] == 32 and len(page["logs"]) == 20
    assert page["total_cost"] == "15.500360000" and page["total_cost_nanos"] == 15_500_360_000
    table = llmring(data, "receipts", "uncertified", "--limit", "2")
    assert "rows 1-2 of 32" in table.output and "$15.50036" in table.output


@pytest.mark.parametrize(("args", "message"), [
    ((), "give exactly one of"),
    (("--since-last", "--conversation", "conv-1"), "exactly one selection mode"),
    (("--start", "2025-10-31", "--end", "2025-10-01"), "must be before end_date"),
    (("--log-id", "missing-id"), "missing-id"),
    (("--conversation", "nobody"), "nothing to certify"),
])
def test_bad_requests_exit_2_with_a_clear_message_and_write_nothing(data: Path, args, message):
    result = llmring(data, "receipts", "generate", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert as_json(llmring(data, "receipts", "list", "--json"))["total"] == 0


def test_list_get_and_logs(data: Path):
    rid = as_json(llmring(data, "receipts", "generate", "--since-last", "--json"))[
        "receipt"]["receipt_id"]
    listed = as_json(llmring(data, "receipts", "list", "--json"))
    assert [r["receipt_id"] for r in listed["receipts"]] == [rid]
    assert as_json(llmring(data, "receipts", "get", rid, "--json"))["receipt_id"] == rid
    logs = as_json(llmring(data, "receipts", "logs", rid, "--limit", "5", "--offset", "30",
                           "--json"))
    assert logs["total"] == 32 and len(logs["logs"]) == 2
    assert rid in llmring(data, "receipts", "list").output
    assert "merkle root" in llmring(data, "receipts", "get", rid).output


def test_prove_then_verify_offline_with_a_pem_key(data: Path, tmp_path: Path):
    out = as_json(llmring(data, "receipts", "generate", "--since-last", "--json"))
    rid = out["receipt"]["receipt_id"]
    log_id = as_json(llmring(data, "receipts", "logs", rid, "--json"))["logs"][7]["id"]
    bundle = tmp_path / "proof.json"
    assert llmring(data, "receipts", "prove", rid, "--log", log_id, "-o",
                   str(bundle)).exit_code == 0
    from ledger.tlog.signing import load_public_keys

    pem = tmp_path / "ledger.pem"
    pem.write_text(load_public_keys(data / "keys" / "keys.json")[0].pem())
    elsewhere = tmp_path / "no-such-dir"
    ok = llmring(elsewhere, "receipts", "verify", str(bundle), "--public-key", str(pem))
    assert ok.exit_code == 0 and "OK" in ok.output
    assert not elsewhere.exists()
    doc = json.loads(bundle.read_text())
    doc["event"]["output_tokens"] += 1
    bundle.write_text(json.dumps(doc))
    bad = llmring(elsewhere, "receipts", "verify", str(bundle), "--public-key", str(pem),
                  "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.output)["failed"] == "leaf"


def test_verify_a_receipt_with_the_data_directorys_keys(data: Path, tmp_path: Path):
    out = as_json(llmring(data, "receipts", "generate", "--since-last", "--json"))
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(out))
    assert llmring(data, "receipts", "verify", str(receipt)).exit_code == 0
    out["receipt"]["total_cost"] = 0.01
    receipt.write_text(json.dumps(out["receipt"]))
    bad = llmring(data, "receipts", "verify", str(receipt))
    assert bad.exit_code == 1 and "signature" in bad.output


def test_verify_without_keys_tells_the_user_to_pass_public_key(tmp_path: Path):
    doc = tmp_path / "r.json"
    doc.write_text("{}")
    result = llmring(tmp_path / "nothing-here", "receipts", "verify", str(doc))
    assert result.exit_code == 2 and "--public-key" in result.output


# -- tables as a person sees them ------------------------------------------------------------
def _on_tty(data: Path, columns: int, *args: str) -> str:
    code, out = run_on_tty([sys.executable, "-c", "from ledger.cli.main import main; main()",
                            "--data", str(data), *args], columns=columns,
                           env={"LLMRING_LEDGER_DIR": "", "LLMRING_PROJECT": "default"})
    assert code == 0, out
    return out


def _whole_on_one_line(ident: str, out: str) -> bool:
    return any(ident in line for line in out.splitlines())


@pytest.mark.parametrize("columns", [80, 120])
def test_ids_stay_whole_in_tables_on_a_narrow_terminal(tmp_path: Path, columns: int):
    data = tmp_path / "data"
    with Ledger(data, pricer=None) as led:
        led.append_many([usage(conversation_id="c1", event_id=f"evt-{i:04d}-{'x' * 30}",
                               model="a-model-with-a-long-name-" * 2) for i in range(3)])
    made = as_json(llmring(data, "receipts", "generate", "--log-id", "evt-0000-" + "x" * 30,
                           "--description", "a rather long description of the receipt",
                           "--tags", "monthly", "--tags", "billing", "--json"))
    rid = made["receipt"]["receipt_id"]

    listed = _on_tty(data, columns, "receipts", "list")
    assert _whole_on_one_line(rid, listed), listed
    row = next(line for line in listed.splitlines() if rid in line)
    copied = row.split()[0]  # what a person copies from the table into `get`
    assert copied == rid
    assert as_json(llmring(data, "receipts", "get", copied, "--json"))["receipt_id"] == rid

    shown = _on_tty(data, columns, "receipts", "get", rid)
    assert all(_whole_on_one_line(made["receipt"][k], shown)
               for k in ("receipt_id", "key_id", "merkle_root")), shown
    for args in (("receipts", "uncertified"), ("receipts", "logs", rid)):
        out = _on_tty(data, columns, *args)
        ids = [log["id"] for log in as_json(llmring(data, *args, "--json"))["logs"]]
        assert ids and all(_whole_on_one_line(i, out) for i in ids), out
    keys = _on_tty(data, columns, "signing-keys", "list")
    assert _whole_on_one_line(made["receipt"]["key_id"], keys), keys


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_fit_the_terminal_with_names_and_numbers_whole(tmp_path: Path,
                                                              columns: int):
    """Listings fit an 80-column terminal: ids, model names, numbers and costs stay
    whole; free text wraps; columns that do not fit are left out with a note naming them
    (``--json`` has every field)."""
    data = tmp_path / "data"
    uuid_id = "0193c1c5-8f4e-7a3b-9c2d-1e2f3a4b5c6d"
    with Ledger(data, pricer=None) as led:
        led.append_many([usage(conversation_id="c1", event_id=uuid_id,
                               model="claude-sonnet-4-5", cost="0.000152775"),
                         usage(conversation_id="c1", model="gpt-4o-mini", cost="12.5")])
    made = as_json(llmring(data, "receipts", "generate", "--since-last", "--description",
                           "the whole of a rather long month of calls", "--tags", "monthly",
                           "--json"))
    rid = made["receipt"]["receipt_id"]
    outputs = [visible(_on_tty(data, columns, *args)) for args in (
        ("receipts", "list"), ("receipts", "logs", rid), ("usage", "report", "--by",
                                                          "model,day"),
        ("ledger", "stats"), ("signing-keys", "list"))]
    for out in outputs:
        assert all(len(line.rstrip()) <= columns for line in out.splitlines()), out
    listed, logs, report = outputs[:3]
    assert _whole_on_one_line(rid, listed) and _whole_on_one_line("$12.500152775", listed)
    assert all(_whole_on_one_line(s, logs) for s in (uuid_id, "claude-sonnet-4-5",
                                                      "$0.000152775")), logs
    assert _whole_on_one_line("claude-sonnet-4-5", report), report
    if columns == 80:
        assert "left out at this width: tags, description" in listed, listed
    else:
        assert "monthly" in listed and "left out" not in listed, listed


def test_a_small_receipt_shows_its_cost_and_one_call(tmp_path: Path):
    data = tmp_path / "data"
    with Ledger(data, pricer=None) as led:
        led.append(usage(conversation_id="only", cost="0.0000075"))
    preview = llmring(data, "receipts", "preview", "--since-last")
    assert "1 call in 1 conversation" in preview.output
    assert "1 calls" not in preview.output and "conversations" not in preview.output
    assert "$0.0000075" in preview.output and "$0.0000 " not in preview.output
    made = llmring(data, "receipts", "generate", "--since-last")
    assert made.exit_code == 0, made.output
    assert "1 call in 1 conversation" in made.output and "$0.0000075" in made.output
    listed = llmring(data, "receipts", "list")
    assert "$0.0000075" in listed.output
